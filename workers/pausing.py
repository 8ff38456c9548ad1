"""The jobs behind pausing (relay/destination_state.py): probing a paused destination with one
waiting delivery, and announcing pauses and resumptions to operations.announce_to.
"""

import json
import logging
from datetime import datetime, timedelta, timezone

from rq import Queue, get_current_job
from rq.serializers import JSONSerializer

from relay import destination_state, keys
from relay.inbox import FAILED_JOB_TTL, JOB_TIMEOUT, QUEUE_NAME
from workers import runtime
from workers.delivery import dispatch, read_envelope

log = logging.getLogger(__name__)


def probe(name: str) -> None:
    """RQ job: while `name` is paused automatically, send it the oldest waiting delivery, then probe again later."""
    redis = get_current_job().connection
    state = destination_state.get(redis, name)
    config = runtime.current().config.destinations.get(name)
    if state.paused is None or state.paused_by != "auto" or config is None:
        return
    entry = redis.lpop(keys.parked_key(name))
    if entry is not None:
        event_id, number, deferrals = json.loads(entry)
        text = redis.get(keys.event_key(event_id))
        if text is None:
            log.error("probe of %s: event %s is no longer stored; skipped", name, event_id)
        else:
            envelope = json.loads(text)
            log.info("probing paused destination %s with %s (attempt %d)", name, event_id, number)
            # Its success resumes the destination (workers/delivery.py); a failure retries it as usual.
            dispatch(redis, envelope, read_envelope(envelope), name, number, fresh=False, deferrals=deferrals,
                     probe=True)
    queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
    job = queue.create_job(destination_state.PROBE_JOB, args=[name], timeout=JOB_TIMEOUT, result_ttl=0,
                           failure_ttl=FAILED_JOB_TTL, description=f"probe paused destination {name}")
    queue.schedule_job(job, datetime.now(timezone.utc) + timedelta(seconds=config.pause.probe_every))


def announce(text: str) -> None:
    """RQ job: tell operations.announce_to (a Slack or email destination), once; a failure is only logged."""
    rt = runtime.current()
    target = rt.config.operations.announce_to
    if target is None or target not in rt.adapters:
        return
    outcome = rt.adapters[target].notify(text)
    if not outcome.ok:
        log.error("could not announce to %s: %s %s", target, outcome.status, outcome.detail)
