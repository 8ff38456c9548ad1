"""Each delivery's state in Redis: claims, leases, the envelope kept for retries, and what is
written when an attempt ends. The worker side decides; this module writes.

relay:delivery:<event id> holds each destination's state ("<attempt>.<deferrals>", "ok" or
"dead"), and an attempt must claim it (lua/claim.lua), so neither an event read twice nor a
duplicate retry sends again. A claimed attempt holds a lease in relay:leases; the sweeper re-runs
attempts whose lease ran out (their worker died), and only the attempt that still owns its
delivery decides what follows (lua/release.lua, lua/delivered.lua).
"""

import json
import time
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from relay.domain.next_state import NextState
from relay.domain.outcome import Outcome
from relay.store import attempts, dead_letters, jobs, keys, replies, scripts
from relay.store.destination_state import Parked


def lease_member(event_id: str, destination: str, number: int, deferrals: int) -> str:
    """How an in-flight attempt is named in relay:leases."""
    return json.dumps([event_id, destination, number, deferrals])


def parse_lease_member(member: bytes | str) -> tuple[str, str, int, int]:
    """(event id, destination, attempt, deferrals) of a relay:leases member."""
    event_id, destination, number, deferrals = json.loads(member)
    return event_id, destination, int(number), int(deferrals)


def keep_envelope(pipe: Pipeline, envelope: dict, ttl: int) -> None:
    """Store the envelope once, for the retries of every destination (they carry only its id)."""
    pipe.set(keys.event_key(envelope["id"]), json.dumps(envelope, separators=(",", ":")), ex=ttl)


def stored_envelope(redis: Redis, event_id: str) -> dict | None:
    """The envelope kept for an event's retries, or None once every destination is done."""
    text = redis.get(keys.event_key(event_id))
    return json.loads(text) if text is not None else None


def state_of(redis: Redis, event_id: str, destination: str) -> str | None:
    """One delivery's state: "<attempt>.<deferrals>", "ok", "dead", or None."""
    state = replies.optional_bytes(redis.hget(keys.delivery_key(event_id), destination))
    return state.decode() if state is not None else None


def forget_if_done(redis: Redis, event_id: str) -> None:
    """Delete the event's stored envelope if every destination of it is done (lua/forget.lua)."""
    scripts.FORGET.run(redis, [keys.delivery_key(event_id), keys.event_key(event_id)], [])


@dataclass(frozen=True)
class Claim:
    """One attempt's claim on its delivery (lua/claim.lua)."""

    event_id: str
    destination: str
    number: int
    deferrals: int
    owner: str  # the token that lets only this attempt record its outcome
    fresh: bool  # the fan-out's first attempt: there must be no state yet
    probe: bool  # sent although the destination is paused

    @property
    def lease(self) -> str:
        """This attempt's member of relay:leases."""
        return lease_member(self.event_id, self.destination, self.number, self.deferrals)

    def queue(self, pipe: Pipeline, lease_seconds: float, state_ttl: int) -> None:
        """Add the claim to `pipe`; its answer is 0 (not ours), 1 (claimed: send it) or 2 (parked)."""
        scripts.CLAIM.queue(
            pipe,
            [
                keys.delivery_key(self.event_id),
                keys.LEASES,
                keys.destination_key(self.destination),
                keys.parked_key(self.destination),
                keys.event_key(self.event_id),
            ],
            [
                self.destination,
                f"{self.number}.{self.deferrals}",
                self.lease,
                time.time() + lease_seconds,
                state_ttl,
                "fresh" if self.fresh else "continue",
                "1" if self.probe else "0",
                self.owner,
                self.event_id,
            ],
        )

    def delivered(self, redis: Redis, record: dict, attempts_ttl: int) -> tuple[bool, str | None]:
        """Record a success and, if this attempt still owns the delivery, close it, in one round
        trip (lua/delivered.lua). Return (owned, who paused the destination or None)."""
        log_args: list[str] = []
        for name, value in zip(attempts.LOG_FIELDS, attempts.log_fields(record), strict=True):
            log_args += (name, value)
        owned, paused_by = scripts.DELIVERED.run(
            redis,
            [
                keys.delivery_key(self.event_id),
                keys.LEASES,
                keys.destination_key(self.destination),
                keys.ATTEMPT_LOG,
                keys.attempts_key(self.event_id),
                keys.event_key(self.event_id),
            ],
            [
                self.destination,
                self.owner,
                self.lease,
                attempts.ATTEMPT_LOG_MAXLEN,
                json.dumps(record, separators=(",", ":")),
                attempts_ttl,
                "1" if self.number > 1 or self.deferrals else "0",
                *log_args,
            ],
        )
        return bool(owned), paused_by.decode() or None

    def release(self, redis: Redis) -> bool:
        """Give up the lease if this attempt still owns the delivery; True if it did (lua/release.lua)."""
        return bool(
            scripts.RELEASE.run(
                redis, [keys.delivery_key(self.event_id), keys.LEASES], [self.destination, self.owner, self.lease]
            )
        )


def write_next_state(
    redis: Redis,
    claim: Claim,
    envelope: dict,
    outcome: Outcome,
    record: dict,
    next_state: NextState,
    *,
    probe_entry: bytes | None,
    attempts_ttl: float,
) -> None:
    """Write what follows an attempt that did not simply succeed, in one transaction: its record,
    the destination's failure count, and the delivery's retry, wait, or end (a dead letter).
    The attempt must already have released its lease (Claim.release)."""
    event_id, destination = claim.event_id, claim.destination
    pipe = jobs.transaction(redis)
    attempts.record_attempt(pipe, record, attempts_ttl)
    if not next_state.owned:
        pipe.execute()
        return
    health = keys.destination_key(destination)
    if next_state.failures == "reset":
        pipe.hset(health, "failures", 0)
    elif next_state.failures == "add":
        pipe.hincrby(health, "failures", 1)
    if probe_entry is not None:
        # redis-py types LREM's value as str, but Redis compares bytes, and any value is sent as such.
        pipe.lrem(keys.parked_key(destination), 1, probe_entry)  # type: ignore[arg-type]  # wherever it is now
    if next_state.waits:
        entry = (
            probe_entry
            or Parked(event_id, claim.number, claim.deferrals, json.dumps(envelope, separators=(",", ":"))).to_json()
        )
        pipe.lpush(keys.parked_key(destination), entry)  # first in line (again)
    elif next_state.retry is not None:
        step = next_state.retry
        pipe.hset(keys.delivery_key(event_id), destination, f"{step.number}.{step.deferrals}")
        note = f"deferral {step.deferrals}" if step.number == claim.number else "retry"
        jobs.schedule(
            redis, jobs.retry_job(redis, event_id, destination, step.number, step.deferrals, note), step.delay, pipe
        )
    elif next_state.final is not None:
        pipe.hset(keys.delivery_key(event_id), destination, next_state.final)
        if next_state.final == "dead":
            dead_letters.add(pipe, envelope, destination, outcome, claim.number)
    pipe.execute()
    if next_state.final is not None:
        # Done with this destination: the envelope may be unneeded now (a dead letter has its own).
        forget_if_done(redis, event_id)
