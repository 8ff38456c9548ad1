"""Sending one attempt of one delivery and recording what came of it: a success and the
delivery's end in one script, anything else through the pure decision of
relay/domain/next_state.py written in one transaction (relay/store/deliveries.py).

At most once per (destination, event id) in normal operation: an attempt is sent only when it
holds its delivery's lease (taken by a lane, workers/lanes.py, or claimed by a probe). At least
once when a worker dies mid-send: the lease runs out and the attempt is due again for any
worker; only the attempt that still owns the delivery decides what follows. That window is the
only way a destination can receive an event twice.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from relay.domain.event import Event, parse_event
from relay.domain.next_state import NextState
from relay.domain.outcome import Outcome
from relay.domain.retry import plan
from relay.store import deliveries, keys, metrics, queues
from relay.store.attempts import attempt_record
from relay.store.deliveries import Claim
from workers import ordering, runtime
from workers.health import after_attempt, resume_if_auto
from workers.outage import waits_out
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def read_envelope(envelope: dict) -> Event:
    """The event a queued envelope holds, checked against the id it was queued under (a derived
    event's envelope says so: its body is the relay's own, see relay/domain/session.py)."""
    event = parse_event(envelope["source"], envelope["body"].encode("utf-8"), derived=bool(envelope.get("derived")))
    if event.id != envelope["id"]:
        raise ValueError(f"envelope id {envelope['id']!r} does not match its body's event id {event.id!r}")
    return event


@dataclass
class Attempt:
    """One delivery attempt holding its lease, to send. `probe_entry`: the parked entry a probe
    is sending, although the destination is paused."""

    envelope: dict
    event: Event
    destination: str
    number: int
    deferrals: int = 0
    probe_entry: bytes | None = None
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def claim(self) -> Claim:
        """This attempt's claim on its delivery's state."""
        return Claim(self.event.id, self.destination, self.number, self.deferrals, self.owner)

    def __str__(self) -> str:
        return f"{self.event.id} -> {self.destination} attempt {self.number}"


def retry(event_id: str, destination: str, number: int, deferrals: int = 0) -> None:
    """RQ entry point (jobs.RETRY) of earlier versions, which scheduled each retry as a job: the
    attempt goes into its destination's queue, due now; its state still names it."""
    rt = runtime.current()
    pipe = rt.redis.pipeline(transaction=False)
    pipe.zadd(keys.queue_key(destination), {queues.member(event_id, destination, number, deferrals): time.time()})
    pipe.execute()
    rt.wake([destination])


def send_and_record(rt: Runtime, attempt: Attempt) -> None:
    """Send the attempt and record what came of it; runs on a delivery thread."""
    try:
        outcome, duration = _send(rt, attempt)
    except Exception:
        log.exception("%s: failed before sending", attempt, extra=_fields(attempt))
        return
    record(rt, attempt, outcome, duration)


def record(rt: Runtime, attempt: Attempt, outcome: Outcome, duration: float, *, health: bool = True) -> None:
    """Record what came of a sent attempt (also one of several sent as one digest, workers/lanes.py);
    a failure to record is logged, and the attempt is due again when its lease ends. `health`:
    whether it moves the destination's health (of a digest's attempts, only one does)."""
    started = rt.outage.clock()
    try:
        if outcome.ok and attempt.probe_entry is None:
            ended = _record_success(rt, attempt, outcome, duration)
        else:
            ended = _record_other(rt, attempt, outcome, duration, health)
        rt.outage.ok(started)
    except Exception as exc:
        # Redis failed, or a bug: the lease is still there, so the attempt is due again when it ends.
        what = "%s: %s, but not recorded; it is sent again when its lease ends"
        fields = _fields(attempt, outcome, duration)
        if waits_out(exc):
            rt.outage.failed(exc, started)  # Redis away: said once for the process, not per attempt
            log.warning(what, attempt, outcome.kind, extra=fields)
        else:
            log.exception(what, attempt, outcome.kind, extra=fields)
        return
    _count(rt, attempt, outcome, duration)
    if ended is not None:
        # An ordered destination's session moves on to its next event now; should this process
        # die first, the session's timer does it (workers/ordering.py).
        ordering.delivery_ended(rt, attempt.destination, attempt.event, delivered=ended == "ok")


def _count(rt: Runtime, attempt: Attempt, outcome: Outcome, duration: float) -> None:
    """GET /metrics's counters of the recorded attempt (relay/store/metrics.py): a failure to count
    loses a figure, never the attempt's record."""
    try:
        metrics.record_attempt(rt.redis, attempt.destination, outcome.kind, duration)
    except RedisError:  # an outage is said once by workers/outage.py, not per attempt
        log.debug("%s: not counted in the metrics", attempt, exc_info=True, extra=_fields(attempt))


def _send(rt: Runtime, attempt: Attempt) -> tuple[Outcome, float]:
    adapter = rt.adapters.get(attempt.destination)
    started = time.monotonic()
    if adapter is None:
        outcome = Outcome("permanent", "not configured", f"destination {attempt.destination!r} is no longer configured")
    else:
        try:
            outcome = adapter.deliver(attempt.event, attempt.envelope["body"].encode("utf-8"))
        except Exception as exc:
            log.exception("%s: the %s adapter failed", attempt, type(adapter).__name__, extra=_fields(attempt))
            outcome = Outcome("permanent", "adapter error", f"{exc.__class__.__name__} (see the worker log)")
    return outcome, time.monotonic() - started


def _record_success(rt: Runtime, attempt: Attempt, outcome: Outcome, duration: float) -> str | None:
    """A success: recorded and its delivery closed in one round trip; "ok" if this attempt
    ended the delivery."""
    record = attempt_record(attempt.event.id, attempt.destination, attempt.number, outcome, None, duration)
    owned, paused_by = attempt.claim.delivered(rt.redis, record)
    _log(attempt, outcome, duration, NextState(owned=owned, final="ok"))
    if not owned:
        return None
    resume_if_auto(rt, attempt.destination, paused_by)
    return "ok"


def _record_other(rt: Runtime, attempt: Attempt, outcome: Outcome, duration: float, health: bool = True) -> str | None:
    """A failure, or a probe's answer: decide what follows (if the attempt still owns its
    delivery) and write it in one transaction; the delivery's end ("ok", "dead") if it ended."""
    config = rt.config.destinations.get(attempt.destination)
    age = time.time() - max(attempt.envelope["received_at"], attempt.envelope.get("replayed_at", 0))
    step = plan(config.retry, attempt.number, attempt.deferrals, outcome, age) if config else None
    next_state = deliveries.finish(
        rt.redis,
        attempt.claim,
        attempt.envelope,
        outcome,
        step,
        duration,
        probe_entry=attempt.probe_entry,
        state_ttl=rt.config.state_ttl,
        counts=health,
    )
    _log(attempt, outcome, duration, next_state)
    if next_state.owned and health:
        # Not owned: its lease ran out and the delivery was taken again; the attempt that owns it
        # decides, and moves the destination's health.
        after_attempt(rt, attempt.destination, config, outcome)
        return next_state.final
    return None


def _fields(attempt: Attempt, outcome: Outcome | None = None, duration: float | None = None) -> dict:
    """The fields of an attempt's log records (relay/logs.py)."""
    fields: dict = {
        "event_id": attempt.event.id,
        "source": attempt.event.source,
        "destination": attempt.destination,
        "attempt": attempt.number,
    }
    if outcome is not None:
        fields.update(outcome=outcome.kind, status=outcome.status)
    if duration is not None:
        fields["duration_ms"] = round(duration * 1000, 1)
    return fields


def _log(attempt: Attempt, outcome: Outcome, duration: float, next_state: NextState) -> None:
    """The attempt's one line: at INFO when it delivered, WARNING when it is retried or waits,
    ERROR when its delivery ends as a dead letter."""
    fields = _fields(attempt, outcome, duration)
    what = f"{attempt}: {outcome.kind} ({outcome.status}) in {duration:.3f} s"
    if not next_state.owned:
        fields["next"] = "superseded"
        log.warning("%s after its lease ran out; recorded, nothing more", what, extra=fields)
    elif outcome.ok:
        fields["next"] = "delivered"
        log.info("%s", what, extra=fields)
    elif next_state.retry is not None:
        fields.update(next="retry", retry_in=round(next_state.retry.delay, 3))
        log.warning("%s %r; retrying in %.0fs", what, outcome.detail, next_state.retry.delay, extra=fields)
    elif next_state.waits:
        fields["next"] = "waits"
        log.warning("%s %r; the destination is paused and the delivery waits", what, outcome.detail, extra=fields)
    else:
        fields["next"] = "dead_letter"
        log.error("%s %r; dead-lettered", what, outcome.detail, extra=fields)
