"""Delivering one event to one destination: claim the attempt, send it from a delivery thread,
then record it: a success and the delivery's end in one script (workers/delivered.lua), a failure
and its retry (or dead letter) in one transaction.

At most once per (destination, event id) in normal operation: relay:delivery:<event id> holds each
destination's state ("<attempt>.<deferrals>", "ok" or "dead"), and an attempt must claim it
(workers/claim.lua), so neither an event read twice nor a duplicate retry sends again. At least
once when a worker dies mid-send: the attempt's lease expires and the sweeper (workers/sweeper.py)
runs it again; only the attempt that still owns the delivery decides what follows
(workers/release.lua). That window is the only way a destination can receive an event twice.
"""

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from redis import Redis
from rq import get_current_job

from relay import dead_letters, destination_state, jobs, keys
from relay.destination_state import Parked
from relay.event import Event, parse_event
from relay.redis_conn import run_script
from workers import runtime, scripts
from workers.attempts import ATTEMPT_LOG_MAXLEN, ATTEMPTS_TTL, LOG_FIELDS, attempt_record, log_fields, record_attempt
from workers.destinations.base import Outcome
from workers.retry import Next, plan

log = logging.getLogger(__name__)
_CLAIM_LUA = scripts.source("claim.lua")
_RELEASE_LUA = scripts.source("release.lua")
_DELIVERED_LUA = scripts.source("all_done.lua", "delivered.lua")
_FORGET_LUA = scripts.source("all_done.lua", "forget.lua")


def read_envelope(envelope: dict) -> Event:
    """The event a queued envelope holds, checked against the id it was queued under."""
    event = parse_event(envelope["source"], envelope["body"].encode("utf-8"))
    if event.id != envelope["id"]:
        raise ValueError(f"envelope id {envelope['id']!r} does not match its body's event id {event.id!r}")
    return event


def keep_envelope(pipe, envelope: dict) -> None:
    """Store the envelope once, for the retries of every destination (they carry only its id)."""
    ttl = runtime.current().config.state_ttl
    pipe.set(keys.event_key(envelope["id"]), json.dumps(envelope, separators=(",", ":")), ex=ttl)


def forget_if_done(redis: Redis, event_id: str, pipe=None) -> None:
    """Delete the event's stored envelope if every destination of it is done (workers/forget.lua)."""
    scripts.script(redis, _FORGET_LUA)(keys=[keys.delivery_key(event_id), keys.event_key(event_id)], client=pipe)


def lease_member(event_id: str, destination: str, number: int, deferrals: int) -> str:
    """How an in-flight attempt is named in relay:leases."""
    return json.dumps([event_id, destination, number, deferrals])


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

    def claim_on(self, redis: Redis, pipe) -> None:
        """Queue this attempt's claim (workers/claim.lua) on `pipe`."""
        rt = runtime.current()
        config = rt.config.destinations.get(self.destination)
        lease = (config.timeout if config else 0.0) + rt.config.operations.lease_grace
        event_id = self.event.id
        scripts.script(redis, _CLAIM_LUA)(
            keys=[keys.delivery_key(event_id), keys.LEASES, keys.destination_key(self.destination),
                  keys.parked_key(self.destination), keys.event_key(event_id)],
            args=[self.destination, f"{self.number}.{self.deferrals}",
                  lease_member(event_id, self.destination, self.number, self.deferrals), time.time() + lease,
                  rt.config.state_ttl, "fresh" if self.fresh else "continue", "1" if self.probe_entry else "0",
                  self.owner, event_id],
            client=pipe,
        )

    def start(self, redis: Redis, claimed: int, reserved: bool = False) -> bool:
        """Act on the claim's answer: hand the send to a delivery thread (one `reserved` for it,
        if so), or say why not."""
        rt = runtime.current()
        what = f"{self.event.id} -> {self.destination} attempt {self.number}"
        if claimed == 1:
            if reserved:
                rt.submit_reserved(lambda: _send_and_finish(redis, self))
            else:
                rt.submit(lambda: _send_and_finish(redis, self))
            return True
        if reserved:
            rt.unreserve(1)
        if claimed == 0:
            log.info("%s: already done or in hand elsewhere; not sending", what)
            return False
        log.info("%s: the destination is paused; the delivery waits", what)
        return True


def dispatch(redis: Redis, envelope: dict, event: Event, destination: str, number: int, fresh: bool,
             deferrals: int = 0, probe_entry: bytes | None = None) -> bool:
    """Claim attempt `number` to `destination` and hand it to a delivery thread (or park it while
    the destination is paused); False if the attempt is not ours to make."""
    attempt = Attempt(envelope, event, destination, number, fresh, deferrals, probe_entry)
    pipe = redis.pipeline(transaction=False)
    attempt.claim_on(redis, pipe)
    return attempt.start(redis, pipe.execute()[0])


def retry(event_id: str, destination: str, number: int, deferrals: int = 0) -> None:
    """RQ job: a later attempt at one destination, on its own, so it never repeats the others."""
    redis = get_current_job().connection
    text = redis.get(keys.event_key(event_id))
    if text is None:
        state = redis.hget(keys.delivery_key(event_id), destination)
        if state in (b"ok", b"dead"):
            # The envelope goes once every destination is done: a stale retry (one swept up while
            # its attempt was still sending, then finished) has nothing left to do.
            log.info("%s -> %s attempt %d: already done; not sending", event_id, destination, number)
        else:
            log.error("%s -> %s attempt %d: the event is no longer stored; cannot retry", event_id, destination, number)
        return
    envelope = json.loads(text)
    dispatch(redis, envelope, read_envelope(envelope), destination, number, fresh=False, deferrals=deferrals)


def _send_and_finish(redis: Redis, attempt: Attempt) -> None:
    what = f"{attempt.event.id} -> {attempt.destination} attempt {attempt.number}"
    try:
        outcome, duration = _send(attempt.envelope, attempt.event, attempt.destination)
    except Exception:  # noqa: BLE001 - nothing may escape a delivery thread unlogged
        log.exception("%s: failed before sending", what)
        return
    try:
        if outcome.ok and attempt.probe_entry is None:
            _delivered(redis, attempt, outcome, duration)
        else:
            _finish(redis, attempt, outcome, duration)
    except Exception:
        # Redis failed, or a bug: if the lease is still there, the sweeper tries this attempt again.
        log.exception("%s: %s, but not recorded; the sweeper will retry it", what, outcome.kind)


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


def _delivered(redis: Redis, attempt: Attempt, outcome: Outcome, duration: float) -> None:
    """A success: record it and close the delivery in one round trip (workers/delivered.lua)."""
    rt = runtime.current()
    event_id, destination = attempt.event.id, attempt.destination
    record = attempt_record(event_id, destination, attempt.number, outcome, None, duration)
    log_args: list = []
    for name, value in zip(LOG_FIELDS, log_fields(record)):
        log_args += (name, value)
    owned, paused_by = run_script(
        redis, scripts.script(redis, _DELIVERED_LUA),
        [keys.delivery_key(event_id), keys.LEASES, keys.destination_key(destination), keys.ATTEMPT_LOG,
         keys.attempts_key(event_id), keys.event_key(event_id)],
        [destination, attempt.owner, lease_member(event_id, destination, attempt.number, attempt.deferrals),
         ATTEMPT_LOG_MAXLEN, json.dumps(record, separators=(",", ":")),
         int(max(rt.config.dead_letters.retention, ATTEMPTS_TTL)),
         "1" if attempt.number > 1 or attempt.deferrals else "0", *log_args],
    )
    if not owned:
        log.warning("%s -> %s attempt %d: %s after its lease ran out; recorded, nothing more",
                    event_id, destination, attempt.number, outcome.kind)
        return
    _log(attempt.event, destination, attempt.number, outcome, None, False)
    # Only a pause of our own is lifted by a success: an operator's pause waits for the operator.
    if paused_by == b"auto":
        destination_state.resume(redis, destination, "a delivery succeeded", rt.config.state_ttl)


def _finish(redis: Redis, attempt: Attempt, outcome: Outcome, duration: float) -> None:
    """Record a failed (or probing) attempt; if it still owns the delivery, decide what follows in
    one transaction."""
    rt = runtime.current()
    envelope, event, destination, number = attempt.envelope, attempt.event, attempt.destination, attempt.number
    deferrals, probe_entry = attempt.deferrals, attempt.probe_entry
    config = rt.config.destinations.get(destination)
    age = time.time() - max(envelope["received_at"], envelope.get("replayed_at", 0))
    step = plan(config.retry, number, deferrals, outcome, age) if config else None
    # A probe that fails leaves its delivery first in line, without using up its schedule.
    waits = outcome.kind == "gone" or (probe_entry is not None and outcome.kind == "transient")
    owned = scripts.script(redis, _RELEASE_LUA)(
        keys=[keys.delivery_key(event.id), keys.LEASES],
        args=[destination, attempt.owner, lease_member(event.id, destination, number, deferrals)],
    )
    pipe = redis.pipeline(transaction=True)
    pipe.multi()  # before any command: RQ's schedule_job joins this MULTI
    next_in = step.delay if step and owned and not waits else None
    record = attempt_record(event.id, destination, number, outcome, next_in, duration)
    record_attempt(pipe, record, rt.config.dead_letters.retention)
    if not owned:
        # The sweeper presumed this attempt lost and handed the delivery on: that attempt decides.
        pipe.execute()
        log.warning("%s -> %s attempt %d: %s after its lease ran out; recorded, nothing more",
                    event.id, destination, number, outcome.kind)
        return
    health = keys.destination_key(destination)
    if outcome.ok:
        pipe.hset(health, "failures", 0)
    elif outcome.kind in ("transient", "gone"):
        pipe.hincrby(health, "failures", 1)
    entry = probe_entry or Parked(event.id, number, deferrals, json.dumps(envelope, separators=(",", ":"))).to_json()
    if probe_entry is not None:
        pipe.lrem(keys.parked_key(destination), 1, probe_entry)  # wherever it is now
    if waits:
        pipe.lpush(keys.parked_key(destination), entry)  # first in line (again)
    elif step is not None:
        pipe.hset(keys.delivery_key(event.id), destination, f"{step.number}.{step.deferrals}")
        _schedule_retry(pipe, redis, event.id, destination, number, step)
    else:
        pipe.hset(keys.delivery_key(event.id), destination, "ok" if outcome.ok else "dead")
        if not outcome.ok:
            dead_letters.add(pipe, envelope, destination, outcome, number)
    pipe.execute()
    if not waits and step is None:
        # Done with this destination: the envelope may be unneeded now (a dead letter has its own).
        forget_if_done(redis, event.id)
    _log(event, destination, number, outcome, next_in, waits)
    _update_health(redis, destination, config, outcome)


def _update_health(redis: Redis, destination: str, config, outcome: Outcome) -> None:
    state = destination_state.get(redis, destination)
    ttl = runtime.current().config.state_ttl
    # Only a pause of our own is lifted by a success: an operator's pause waits for the operator.
    if outcome.ok and state.paused is not None and state.paused_by == "auto":
        destination_state.resume(redis, destination, "a delivery succeeded", ttl)
    elif config and outcome.kind == "gone":
        destination_state.pause(redis, destination, f"it answered {outcome.status} (gone)", "auto",
                                config.pause.probe_every)
    elif config and outcome.kind == "transient" and 0 < config.pause.after_failures <= state.failures:
        reason = f"{state.failures} consecutive failed attempts, the last {outcome.status} {outcome.detail!r}"
        destination_state.pause(redis, destination, reason, "auto", config.pause.probe_every)


def _schedule_retry(pipe, redis: Redis, event_id: str, destination: str, number: int, step: Next) -> None:
    what = f"attempt {step.number}" + (f", deferral {step.deferrals}" if step.number == number else "")
    job = jobs.make(redis, jobs.RETRY, [event_id, destination, step.number, step.deferrals],
                    f"deliver {event_id} to {destination} ({what})")
    jobs.schedule(redis, job, step.delay, pipe)


def _log(event: Event, destination: str, number: int, outcome: Outcome, delay: float | None, waits: bool) -> None:
    what = f"{event.id} -> {destination} attempt {number}: {outcome.kind} ({outcome.status})"
    if outcome.ok:
        log.info(what)
    elif delay is not None:
        log.warning("%s %r; retrying in %.0fs", what, outcome.detail, delay)
    elif waits:
        log.error("%s %r; the destination is paused and the delivery waits", what, outcome.detail)
    else:
        log.error("%s %r; dead-lettered", what, outcome.detail)
