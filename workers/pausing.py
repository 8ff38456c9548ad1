"""The jobs behind pausing (relay/store/destination_state.py): probing a paused destination with
its oldest waiting delivery, and announcing pauses and resumptions to operations.announce_to.
"""

import json
import logging

from redis.exceptions import WatchError

from relay.store import destination_state, jobs, keys, replies
from relay.store.destination_state import Parked
from workers import runtime
from workers.delivery import Attempt, dispatch, read_envelope
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def probe_once(rt: Runtime, name: str, job_id: str) -> None:
    """While `name` is paused automatically, send it the oldest waiting delivery.

    The next probe is scheduled first, so an error here cannot end the probing. The delivery stays
    parked while it is tried: a success takes it off and resumes the destination, a failure leaves
    it first in line (relay/domain/next_state.py).
    """
    config = rt.config.destinations.get(name)
    if config is None or not _take_turn(rt, name, job_id, config.pause.probe_every):
        return  # not paused by us any more, or another probe chain took over
    entry = replies.optional_bytes(rt.redis.lindex(keys.parked_key(name), 0))
    if entry is None:
        return
    parked = Parked.from_json(entry)
    pipe = rt.redis.pipeline(transaction=True)
    destination_state.restore(pipe, name, parked, rt.config.state_ttl)
    pipe.execute()
    envelope = json.loads(parked.envelope_json)
    log.info("probing paused destination %s with %s (attempt %d)", name, parked.event_id, parked.number)
    dispatch(
        rt,
        Attempt(
            envelope,
            read_envelope(envelope),
            name,
            parked.number,
            fresh=False,
            deferrals=parked.deferrals,
            probe_entry=entry,
        ),
    )


def probe(name: str) -> None:
    """RQ entry point (jobs.PROBE): probe_once with this process's runtime."""
    probe_once(runtime.current(), name, runtime.current_job_id())


def _take_turn(rt: Runtime, name: str, my_id: str, every: float) -> bool:
    """Schedule the next probe if this job is the destination's current probe; False otherwise."""
    key = keys.destination_key(name)
    with rt.redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            paused_by, current = pipe.hmget(key, "paused_by", "probe_job")
            if paused_by != b"auto" or current != my_id.encode():
                return False
            pipe.multi()
            following = destination_state.probe_job(rt.redis, name)
            pipe.hset(key, "probe_job", following.id)
            jobs.schedule(rt.redis, following, every, pipe)
            pipe.execute()
            return True
        except WatchError:
            return False


def announce_to_operations(rt: Runtime, text: str) -> None:
    """Tell operations.announce_to (a Slack or email destination), once; a failure is only logged."""
    target = rt.config.operations.announce_to
    if target is None or target not in rt.adapters:
        return
    outcome = rt.adapters[target].notify(text)
    if not outcome.ok:
        log.error("could not announce to %s: %s %s", target, outcome.status, outcome.detail)


def announce(text: str) -> None:
    """RQ entry point (jobs.ANNOUNCE): announce_to_operations with this process's runtime."""
    announce_to_operations(runtime.current(), text)
