"""Delivering one event to one destination: claim the attempt, send it from a delivery thread,
then record it: a success and the delivery's end in one script, anything else through the pure
decision of relay/domain/next_state.py written in one transaction (relay/store/deliveries.py).

At most once per (destination, event id) in normal operation: an attempt must claim its
delivery's state first. At least once when a worker dies mid-send: the attempt's lease expires
and the sweeper (workers/sweeper.py) runs it again; only the attempt that still owns the delivery
decides what follows. That window is the only way a destination can receive an event twice.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field

from redis.client import Pipeline

from relay.domain.event import Event, parse_event
from relay.domain.next_state import NextState, decide
from relay.domain.outcome import Outcome
from relay.domain.retry import plan
from relay.store import deliveries
from relay.store.attempts import ATTEMPTS_TTL, attempt_record
from relay.store.deliveries import Claim
from workers import runtime
from workers.health import after_attempt, resume_if_auto
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def read_envelope(envelope: dict) -> Event:
    """The event a queued envelope holds, checked against the id it was queued under."""
    event = parse_event(envelope["source"], envelope["body"].encode("utf-8"))
    if event.id != envelope["id"]:
        raise ValueError(f"envelope id {envelope['id']!r} does not match its body's event id {event.id!r}")
    return event


@dataclass
class Attempt:
    """One delivery attempt to claim and, if it is ours, send.

    `fresh`: the first attempt, made by the fan-out (it needs no state yet). `probe_entry`: the
    parked entry a probe is sending: sent although the destination is paused.
    """

    envelope: dict
    event: Event
    destination: str
    number: int
    fresh: bool
    deferrals: int = 0
    probe_entry: bytes | None = None
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def claim(self) -> Claim:
        """This attempt's claim on its delivery's state."""
        return Claim(
            self.event.id,
            self.destination,
            self.number,
            self.deferrals,
            self.owner,
            self.fresh,
            self.probe_entry is not None,
        )

    def __str__(self) -> str:
        return f"{self.event.id} -> {self.destination} attempt {self.number}"

    def claim_on(self, rt: Runtime, pipe: Pipeline) -> None:
        """Queue this attempt's claim on `pipe`; its lease covers the send's timeout and a grace."""
        config = rt.config.destinations.get(self.destination)
        lease = (config.timeout if config else 0.0) + rt.config.operations.lease_grace
        self.claim.queue(pipe, lease, rt.config.state_ttl)

    def start(self, rt: Runtime, claimed: int, reserved: bool = False) -> bool:
        """Act on the claim's answer: hand the send to a delivery thread (one `reserved` for it,
        if so), or say why not. True unless the attempt was not ours to make."""
        if claimed == 1:
            if reserved:
                rt.submit_reserved(lambda: send_and_record(rt, self))
            else:
                rt.submit(lambda: send_and_record(rt, self))
            return True
        if reserved:
            rt.unreserve(1)
        if claimed == 0:
            log.info("%s: already done or in hand elsewhere; not sending", self)
            return False
        log.info("%s: the destination is paused; the delivery waits", self)
        return True


def dispatch(rt: Runtime, attempt: Attempt) -> bool:
    """Claim `attempt` and hand it to a delivery thread (or park it while the destination is
    paused); False if the attempt is not ours to make."""
    pipe = rt.redis.pipeline(transaction=False)
    attempt.claim_on(rt, pipe)
    return attempt.start(rt, pipe.execute()[0])


def retry_delivery(rt: Runtime, event_id: str, destination: str, number: int, deferrals: int) -> None:
    """A later attempt at one destination, on its own, so it never repeats the others."""
    envelope = deliveries.stored_envelope(rt.redis, event_id)
    if envelope is None:
        if deliveries.state_of(rt.redis, event_id, destination) in ("ok", "dead"):
            # The envelope goes once every destination is done: a stale retry (one swept up while
            # its attempt was still sending, then finished) has nothing left to do.
            log.info("%s -> %s attempt %d: already done; not sending", event_id, destination, number)
        else:
            log.error("%s -> %s attempt %d: the event is no longer stored; cannot retry", event_id, destination, number)
        return
    dispatch(rt, Attempt(envelope, read_envelope(envelope), destination, number, fresh=False, deferrals=deferrals))


def retry(event_id: str, destination: str, number: int, deferrals: int = 0) -> None:
    """RQ entry point (jobs.RETRY): retry_delivery with this process's runtime."""
    retry_delivery(runtime.current(), event_id, destination, number, deferrals)


def send_and_record(rt: Runtime, attempt: Attempt) -> None:
    """Send the attempt and record what came of it; runs on a delivery thread."""
    try:
        outcome, duration = _send(rt, attempt)
    except Exception:
        log.exception("%s: failed before sending", attempt)
        return
    try:
        if outcome.ok and attempt.probe_entry is None:
            _record_success(rt, attempt, outcome, duration)
        else:
            _record_other(rt, attempt, outcome, duration)
    except Exception:
        # Redis failed, or a bug: if the lease is still there, the sweeper tries this attempt again.
        log.exception("%s: %s, but not recorded; the sweeper will retry it", attempt, outcome.kind)


def _send(rt: Runtime, attempt: Attempt) -> tuple[Outcome, float]:
    adapter = rt.adapters.get(attempt.destination)
    started = time.monotonic()
    if adapter is None:
        outcome = Outcome("permanent", "not configured", f"destination {attempt.destination!r} is no longer configured")
    else:
        try:
            outcome = adapter.deliver(attempt.event, attempt.envelope["body"].encode("utf-8"))
        except Exception as exc:
            log.exception("%s: the %s adapter failed", attempt, type(adapter).__name__)
            outcome = Outcome("permanent", "adapter error", f"{exc.__class__.__name__} (see the worker log)")
    return outcome, time.monotonic() - started


def _attempts_ttl(rt: Runtime) -> int:
    # At least as long as a dead letter of the event may be kept: `show` lists its attempts.
    return int(max(rt.config.dead_letters.retention, ATTEMPTS_TTL))


def _record_success(rt: Runtime, attempt: Attempt, outcome: Outcome, duration: float) -> None:
    """A success: recorded and its delivery closed in one round trip."""
    record = attempt_record(attempt.event.id, attempt.destination, attempt.number, outcome, None, duration)
    owned, paused_by = attempt.claim.delivered(rt.redis, record, _attempts_ttl(rt))
    if not owned:
        log.warning("%s: %s after its lease ran out; recorded, nothing more", attempt, outcome.kind)
        return
    _log(attempt, outcome, NextState(owned=True, final="ok"))
    resume_if_auto(rt, attempt.destination, paused_by)


def _record_other(rt: Runtime, attempt: Attempt, outcome: Outcome, duration: float) -> None:
    """A failure, or a probe's answer: decide what follows (if the attempt still owns its
    delivery) and write it in one transaction."""
    config = rt.config.destinations.get(attempt.destination)
    age = time.time() - max(attempt.envelope["received_at"], attempt.envelope.get("replayed_at", 0))
    step = plan(config.retry, attempt.number, attempt.deferrals, outcome, age) if config else None
    owned = attempt.claim.release(rt.redis)
    next_state = decide(outcome, owned, attempt.probe_entry is not None, step)
    record = attempt_record(
        attempt.event.id, attempt.destination, attempt.number, outcome, next_state.retry_in, duration
    )
    deliveries.write_next_state(
        rt.redis,
        attempt.claim,
        attempt.envelope,
        outcome,
        record,
        next_state,
        probe_entry=attempt.probe_entry,
        attempts_ttl=_attempts_ttl(rt),
    )
    if not next_state.owned:
        # The sweeper presumed this attempt lost and handed the delivery on: that attempt decides.
        log.warning("%s: %s after its lease ran out; recorded, nothing more", attempt, outcome.kind)
        return
    _log(attempt, outcome, next_state)
    after_attempt(rt, attempt.destination, config, outcome)


def _log(attempt: Attempt, outcome: Outcome, next_state: NextState) -> None:
    what = f"{attempt}: {outcome.kind} ({outcome.status})"
    if outcome.ok:
        log.info(what)
    elif next_state.retry is not None:
        log.warning("%s %r; retrying in %.0fs", what, outcome.detail, next_state.retry.delay)
    elif next_state.waits:
        log.error("%s %r; the destination is paused and the delivery waits", what, outcome.detail)
    else:
        log.error("%s %r; dead-lettered", what, outcome.detail)
