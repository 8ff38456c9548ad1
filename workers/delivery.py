"""Delivering one event to one destination: claim the attempt, send it from a delivery thread,
then record it and schedule the next attempt or give up, in one transaction.

At most once per (destination, event id) in normal operation: relay:delivery:<event id> holds each
destination's state, and an attempt must claim it (workers/claim.lua), so neither a job that runs
twice nor a duplicate retry sends again. At least once when a worker dies mid-send: the attempt's
lease expires and the sweeper (workers/sweeper.py) runs it again; that window is the only way a
destination can receive an event twice.
"""

import importlib.resources
import json
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
from relay import dead_letters
from workers.attempts import record_attempt
from workers.destinations.base import Outcome
from workers.retry import plan

log = logging.getLogger(__name__)
RETRY_JOB = "workers.delivery.retry"
# An attempt not finished this long after its destination's timeout is presumed lost.
LEASE_GRACE = 60.0
_CLAIM_LUA = importlib.resources.files("workers").joinpath("claim.lua").read_text()


def read_envelope(envelope: dict) -> Event:
    """The event a queued envelope holds, checked against the id it was queued under."""
    event = parse_event(envelope["source"], envelope["body"].encode("utf-8"))
    if event.id != envelope["id"]:
        raise ValueError(f"envelope id {envelope['id']!r} does not match its body's event id {event.id!r}")
    return event


def keep_envelope(redis: Redis, envelope: dict) -> None:
    """Store the envelope once, for the retries of every destination (they carry only its id)."""
    ttl = runtime.current().config.state_ttl
    redis.set(keys.event_key(envelope["id"]), json.dumps(envelope, separators=(",", ":")), ex=ttl)


def lease_member(event_id: str, destination: str, number: int) -> str:
    """How an in-flight attempt is named in relay:leases."""
    return json.dumps([event_id, destination, number])


def dispatch(redis: Redis, envelope: dict, event: Event, destination: str, number: int, fresh: bool,
             deferrals: int = 0) -> bool:
    """Claim attempt `number` to `destination` and hand it to a delivery thread; False if not ours."""
    rt = runtime.current()
    config = rt.config.destinations.get(destination)
    timeout = config.timeout if config else 0.0
    claimed = redis.register_script(_CLAIM_LUA)(
        keys=[keys.delivery_key(event.id), keys.LEASES],
        args=[destination, number, lease_member(event.id, destination, number), time.time() + timeout + LEASE_GRACE,
              rt.config.state_ttl, "fresh" if fresh else "continue"],
    )
    if not claimed:
        log.info("%s -> %s attempt %d: already done or in hand elsewhere; not sending", event.id, destination, number)
        return False
    rt.submit(lambda: _send_and_finish(redis, envelope, event, destination, number, deferrals))
    return True


def retry(event_id: str, destination: str, number: int, deferrals: int = 0) -> None:
    """RQ job: a later attempt at one destination, on its own, so it never repeats the others."""
    redis = get_current_job().connection
    text = redis.get(keys.event_key(event_id))
    if text is None:
        log.error("%s -> %s attempt %d: the event is no longer stored; cannot retry", event_id, destination, number)
        return
    envelope = json.loads(text)
    dispatch(redis, envelope, read_envelope(envelope), destination, number, fresh=False, deferrals=deferrals)


def _send_and_finish(redis: Redis, envelope: dict, event: Event, destination: str, number: int,
                     deferrals: int) -> None:
    try:
        outcome, duration = _send(envelope, event, destination)
        _finish(redis, envelope, event, destination, number, deferrals, outcome, duration)
    except Exception:
        # Redis failed, or a bug: the lease stays, so the sweeper tries this attempt again.
        log.exception("%s -> %s attempt %d: not recorded; the sweeper will retry it", event.id, destination, number)


def _send(envelope: dict, event: Event, destination: str) -> tuple[Outcome, float]:
    adapter = runtime.current().adapters.get(destination)
    started = time.monotonic()
    if adapter is None:
        outcome = Outcome("permanent", "not configured", f"destination {destination!r} is no longer configured")
    else:
        try:
            outcome = adapter.deliver(event, envelope["body"].encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - an adapter must not lose a delivery, even through a bug
            log.exception("%s -> %s: the %s adapter failed", event.id, destination, type(adapter).__name__)
            outcome = Outcome("permanent", "adapter error", f"{exc.__class__.__name__} (see the worker log)")
    return outcome, time.monotonic() - started


def _finish(redis: Redis, envelope: dict, event: Event, destination: str, number: int, deferrals: int,
            outcome: Outcome, duration: float) -> None:
    config = runtime.current().config.destinations.get(destination)
    age = time.time() - envelope["received_at"]
    step = plan(config.retry, number, deferrals, outcome, age) if config else None
    delay = step.delay if step else None
    pipe = redis.pipeline(transaction=True)
    record_attempt(pipe, event.id, destination, number, outcome, duration, delay)
    pipe.zrem(keys.LEASES, lease_member(event.id, destination, number))
    state = "ok" if outcome.ok else str(step.number) if step else "dead"
    pipe.hset(keys.delivery_key(event.id), destination, state)
    if step is not None:
        queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
        what = f"attempt {step.number}" + (f", deferral {step.deferrals}" if step.number == number else "")
        job = queue.create_job(
            RETRY_JOB, args=[event.id, destination, step.number, step.deferrals], timeout=JOB_TIMEOUT,
            result_ttl=0, failure_ttl=FAILED_JOB_TTL, description=f"deliver {event.id} to {destination} ({what})",
        )
        queue.schedule_job(job, datetime.now(timezone.utc) + timedelta(seconds=step.delay), pipeline=pipe)
    elif not outcome.ok:
        dead_letters.add(pipe, envelope, destination, outcome, number)
    pipe.execute()
    _log(event, destination, number, outcome, delay)


def _log(event: Event, destination: str, number: int, outcome: Outcome, delay: float | None) -> None:
    what = f"{event.id} -> {destination} attempt {number}: {outcome.kind} ({outcome.status})"
    if outcome.ok:
        log.info(what)
    elif delay is not None:
        log.warning("%s %r; retrying in %.0fs", what, outcome.detail, delay)
    else:
        log.error("%s %r; dead-lettered", what, outcome.detail)
