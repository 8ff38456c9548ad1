"""The jobs behind pausing (relay/destination_state.py): probing a paused destination with its
oldest waiting delivery, and announcing pauses and resumptions to operations.announce_to.
"""

import json
import logging

from redis.exceptions import WatchError
from rq import get_current_job

from relay import destination_state, jobs, keys
from relay.destination_state import Parked
from workers import runtime
from workers.delivery import dispatch, read_envelope

log = logging.getLogger(__name__)


def probe(name: str) -> None:
    """RQ job: while `name` is paused automatically, send it the oldest waiting delivery.

    The next probe is scheduled first, so an error here cannot end the probing. The delivery stays
    parked while it is tried: a success takes it off and resumes the destination, a failure leaves
    it first in line (workers/delivery.py).
    """
    job = get_current_job()
    redis = job.connection
    key = keys.destination_key(name)
    config = runtime.current().config.destinations.get(name)
    if config is None or not _take_turn(redis, key, job.id, name, config.pause.probe_every):
        return  # not paused by us any more, or another probe chain took over
    entry = redis.lindex(keys.parked_key(name), 0)
    if entry is None:
        return
    parked = Parked.from_json(entry)
    pipe = redis.pipeline(transaction=True)
    destination_state.restore(pipe, name, parked, runtime.current().config.state_ttl)
    pipe.execute()
    envelope = json.loads(parked.envelope_json)
    log.info("probing paused destination %s with %s (attempt %d)", name, parked.event_id, parked.number)
    dispatch(redis, envelope, read_envelope(envelope), name, parked.number, fresh=False,
             deferrals=parked.deferrals, probe_entry=entry)


def _take_turn(redis, key: str, my_id: str, name: str, every: float) -> bool:
    """Schedule the next probe if this job is the destination's current probe; False otherwise."""
    with redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            paused_by, current = pipe.hmget(key, "paused_by", "probe_job")
            if paused_by != b"auto" or current != my_id.encode():
                return False
            pipe.multi()
            following = jobs.make(redis, jobs.PROBE, [name], f"probe paused destination {name}")
            pipe.hset(key, "probe_job", following.id)
            jobs.schedule(redis, following, every, pipe)
            pipe.execute()
            return True
        except WatchError:
            return False


def announce(text: str) -> None:
    """RQ job: tell operations.announce_to (a Slack or email destination), once; a failure is only logged."""
    rt = runtime.current()
    target = rt.config.operations.announce_to
    if target is None or target not in rt.adapters:
        return
    outcome = rt.adapters[target].notify(text)
    if not outcome.ok:
        log.error("could not announce to %s: %s %s", target, outcome.status, outcome.detail)
