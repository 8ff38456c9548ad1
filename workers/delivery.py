"""One delivery attempt to one destination: skip if done, send, record, then retry or give up.

At most once per (destination, event id) in normal operation: a destination that has the event
is marked in relay:delivered:<event id> and never sent it again, however often a job runs. A
worker that dies between sending and marking sends again when the job is retried: at least once.
"""

import logging
import time
from datetime import datetime, timedelta, timezone

from redis import Redis
from rq import Queue, get_current_job
from rq.serializers import JSONSerializer

from relay import keys
from relay.event import Event, parse_event
from relay.inbox import FAILED_JOB_TTL, JOB_TIMEOUT, QUEUE_NAME
from workers import runtime
from workers.attempts import record_attempt, record_dead_letter
from workers.destinations.base import Outcome
from workers.retry import next_delay

log = logging.getLogger(__name__)
RETRY_JOB = "workers.delivery.retry"


def read_envelope(envelope: dict) -> Event:
    """The event a queued envelope holds, checked against the id it was queued under."""
    event = parse_event(envelope["source"], envelope["body"].encode("utf-8"))
    if event.id != envelope["id"]:
        raise ValueError(f"envelope id {envelope['id']!r} does not match its body's event id {event.id!r}")
    return event


def attempt(redis: Redis, envelope: dict, event: Event, destination: str, number: int) -> Outcome | None:
    """Attempt `number` (1 is the first) of delivering `event` to `destination`; None if it already has it."""
    if redis.hexists(keys.delivered_key(event.id), destination):
        log.info("%s already delivered to %s; not sending again", event.id, destination)
        return None
    rt = runtime.current()
    adapter = rt.adapters.get(destination)
    started = time.monotonic()
    if adapter is None:
        outcome = Outcome("permanent", "not configured", f"destination {destination!r} is no longer configured")
    else:
        outcome = adapter.deliver(event, envelope["body"].encode("utf-8"))
    duration = time.monotonic() - started
    delay = next_delay(number, outcome.retry_after) if outcome.kind == "transient" else None

    pipe = redis.pipeline(transaction=True)
    record_attempt(pipe, event.id, destination, number, outcome, duration, delay)
    if outcome.ok:
        pipe.hset(keys.delivered_key(event.id), destination, int(time.time()))
        pipe.expire(keys.delivered_key(event.id), int(rt.config.ingest.dedup_window))
    elif delay is None:
        record_dead_letter(pipe, envelope, destination, outcome, number)
    pipe.execute()

    if delay is not None:
        queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
        job = queue.create_job(
            RETRY_JOB, args=[envelope, destination, number + 1], timeout=JOB_TIMEOUT, result_ttl=0,
            failure_ttl=FAILED_JOB_TTL, description=f"deliver {event.id} to {destination} (attempt {number + 1})",
        )
        queue.schedule_job(job, datetime.now(timezone.utc) + timedelta(seconds=delay))
    _log(event, destination, number, outcome, delay)
    return outcome


def retry(envelope: dict, destination: str, number: int) -> None:
    """RQ job: a later attempt at one destination, on its own, so it never repeats the others."""
    attempt(get_current_job().connection, envelope, read_envelope(envelope), destination, number)


def _log(event: Event, destination: str, number: int, outcome: Outcome, delay: float | None) -> None:
    what = f"{event.id} -> {destination} attempt {number}: {outcome.kind} ({outcome.status})"
    if outcome.ok:
        log.info(what)
    elif delay is not None:
        log.warning("%s %s; retrying in %.0fs", what, outcome.detail, delay)
    else:
        log.error("%s %s; dead-lettered", what, outcome.detail)
