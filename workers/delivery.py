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
import math
import logging
import time
from datetime import datetime, timezone

from redis import Redis
from rq import Queue, get_current_job
from rq.serializers import JSONSerializer

from relay import keys
from relay.event import Event, parse_event
from relay.inbox import FAILED_JOB_TTL, JOB_TIMEOUT, QUEUE_NAME
from workers import runtime
from relay import dead_letters, destination_state
from workers.attempts import record_attempt
from workers.destinations.base import Outcome
from workers.retry import plan

log = logging.getLogger(__name__)
RETRY_JOB = "workers.delivery.retry"
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
             deferrals: int = 0, probe: bool = False) -> bool:
    """Claim attempt `number` to `destination` and hand it to a delivery thread (or park it while
    the destination is paused); False if the attempt is not ours to make."""
    rt = runtime.current()
    config = rt.config.destinations.get(destination)
    lease = (config.timeout if config else 0.0) + rt.config.operations.lease_grace
    claimed = redis.register_script(_CLAIM_LUA)(
        keys=[keys.delivery_key(event.id), keys.LEASES, keys.destination_key(destination), keys.parked_key(destination)],
        args=[destination, number, lease_member(event.id, destination, number), time.time() + lease,
              rt.config.state_ttl, "fresh" if fresh else "continue", parked_entry(event.id, number, deferrals),
              "1" if probe else "0"],
    )
    if claimed == 0:
        log.info("%s -> %s attempt %d: already done or in hand elsewhere; not sending", event.id, destination, number)
        return False
    if claimed == 2:
        log.info("%s -> %s attempt %d: the destination is paused; the delivery waits", event.id, destination, number)
        return True
    rt.submit(lambda: _send_and_finish(redis, envelope, event, destination, number, deferrals))
    return True


def parked_entry(event_id: str, number: int, deferrals: int) -> str:
    """How a delivery waiting for a paused destination is written in relay:parked:<name>."""
    return json.dumps([event_id, number, deferrals])


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
    """Record the attempt and decide what follows, all in one transaction; then pause or resume."""
    config = runtime.current().config.destinations.get(destination)
    step = plan(config.retry, number, deferrals, outcome, time.time() - envelope["received_at"]) if config else None
    health = keys.destination_key(destination)
    pipe = redis.pipeline(transaction=True)
    record_attempt(pipe, event.id, destination, number, outcome, step.delay if step else None, duration)
    pipe.zrem(keys.LEASES, lease_member(event.id, destination, number))
    health_at = len(pipe)  # where the two health replies will be in the results
    if outcome.ok:
        pipe.hset(health, "failures", 0)
    else:
        pipe.hincrby(health, "failures", 1 if outcome.kind in ("transient", "gone") else 0)
    pipe.hmget(health, "paused", "paused_by")
    if outcome.kind == "gone":
        # 410: the receiver says it is gone. It gets paused; this delivery waits with the others.
        pipe.rpush(keys.parked_key(destination), parked_entry(event.id, number, deferrals))
    elif step is not None:
        pipe.hset(keys.delivery_key(event.id), destination, str(step.number))
        _schedule_retry(pipe, redis, event.id, destination, number, step)
    else:
        pipe.hset(keys.delivery_key(event.id), destination, "ok" if outcome.ok else "dead")
        if not outcome.ok:
            dead_letters.add(pipe, envelope, destination, outcome, number)
    results = pipe.execute()
    _log(event, destination, number, outcome, step.delay if step else None)
    failures, (paused, paused_by) = results[health_at], results[health_at + 1]
    # Only a pause of our own is lifted by a success: an operator's pause waits for the operator.
    if outcome.ok and paused and paused_by == b"auto":
        destination_state.resume(redis, destination, by="a delivery succeeded")
    elif config and outcome.kind == "gone":
        destination_state.pause(redis, destination, f"it answered {outcome.status} (gone)", "auto",
                                config.pause.probe_every)
    elif config and outcome.kind == "transient" and 0 < config.pause.after_failures <= int(failures):
        reason = f"{failures} consecutive failed attempts, the last {outcome.status} {outcome.detail!r}"
        destination_state.pause(redis, destination, reason, "auto", config.pause.probe_every)


def _schedule_retry(pipe, redis: Redis, event_id: str, destination: str, number: int, step) -> None:
    queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
    what = f"attempt {step.number}" + (f", deferral {step.deferrals}" if step.number == number else "")
    job = queue.create_job(
        RETRY_JOB, args=[event_id, destination, step.number, step.deferrals], timeout=JOB_TIMEOUT,
        result_ttl=0, failure_ttl=FAILED_JOB_TTL, description=f"deliver {event_id} to {destination} ({what})",
    )
    # RQ keeps whole seconds and drops the fraction: round up, or a Retry-After could be cut short.
    due = datetime.fromtimestamp(math.ceil(time.time() + step.delay), timezone.utc)
    queue.schedule_job(job, due, pipeline=pipe)


def _log(event: Event, destination: str, number: int, outcome: Outcome, delay: float | None) -> None:
    what = f"{event.id} -> {destination} attempt {number}: {outcome.kind} ({outcome.status})"
    if outcome.ok:
        log.info(what)
    elif delay is not None:
        log.warning("%s %r; retrying in %.0fs", what, outcome.detail, delay)
    elif outcome.kind == "gone":
        log.error("%s %r; the destination is paused and the delivery waits", what, outcome.detail)
    else:
        log.error("%s %r; dead-lettered", what, outcome.detail)
