"""Each delivery's state in Redis: the envelope kept for retries, the claim an attempt holds
while it is sent, and what is written when the attempt ends. The worker side decides; this
module writes.

relay:delivery:<event id> holds each destination's state ("<attempt>.<deferrals>", "ok" or
"dead"). An attempt is sent only when it is the one the state names and it holds the lease
(lua/take.lua for queued attempts, lua/claim.lua for a probe), so neither an event read twice nor
a duplicate retry sends again. A lease that runs out (the worker died) makes the attempt due
again; only the attempt that still owns its delivery decides what follows (lua/delivered.lua for
a success, finish for the rest).
"""

import dataclasses
import json
import logging
import time
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError, WatchError

from relay.domain.next_state import NextState, decide
from relay.domain.outcome import Outcome
from relay.domain.retry import Next
from relay.store import attempts, dead_letters, event_log, keys, queues, replies, scripts
from relay.store.destination_state import Parked

log = logging.getLogger(__name__)


def keep_envelope(pipe: Pipeline, envelope: dict, ttl: int) -> None:
    """Store the envelope once, for the retries of every destination (they carry only its id)."""
    pipe.set(keys.event_key(envelope["id"]), json.dumps(envelope, separators=(",", ":")), ex=ttl)


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

    @property
    def lease(self) -> str:
        """This attempt's member of relay:inflight:<destination> (and of its queue before)."""
        return queues.member(self.event_id, self.destination, self.number, self.deferrals)

    def claim_probe(self, redis: Redis, lease_seconds: float, state_ttl: int, envelope_json: str, entry: bytes) -> int:
        """Claim this parked attempt for a probe of its paused destination (lua/claim.lua): 1 to
        send it, 0 if it is in flight already, -1 if the entry was stale (and is removed)."""
        return int(
            scripts.CLAIM.run(
                redis,
                [
                    keys.delivery_key(self.event_id),
                    keys.inflight_key(self.destination),
                    keys.event_key(self.event_id),
                    keys.parked_key(self.destination),
                ],
                [
                    self.destination,
                    f"{self.number}.{self.deferrals}",
                    self.lease,
                    time.time() + lease_seconds,
                    state_ttl,
                    self.owner,
                    envelope_json,
                    entry,
                ],
            )
        )

    def delivered(self, redis: Redis, record: dict) -> tuple[bool, str | None]:
        """Record a success and, if this attempt still owns the delivery, close it, in one round
        trip (lua/delivered.lua). Return (owned, who paused the destination or None)."""
        log_key, field = event_log.where(self.event_id)
        owned, paused_by = scripts.DELIVERED.run(
            redis,
            [
                keys.delivery_key(self.event_id),
                keys.inflight_key(self.destination),
                keys.destination_key(self.destination),
                keys.event_key(self.event_id),
                log_key,
            ],
            [self.destination, self.owner, self.lease, field, attempts.line(record)],
        )
        return bool(owned), paused_by.decode() or None


def finish(
    redis: Redis,
    claim: Claim,
    envelope: dict,
    outcome: Outcome,
    step: Next | None,
    duration: float,
    *,
    probe_entry: bytes | None,
    state_ttl: int,
    counts: bool = True,
) -> NextState:
    """Record an attempt that did not simply succeed and write what follows, in one transaction
    that holds only while this attempt still owns its delivery: its record, the destination's
    failure count, its lease given back, and the delivery's retry, wait, or end (a dead letter).
    `step` is the retry plan for `outcome` (relay.domain.retry.plan); `counts`: whether it moves
    the destination's failure count (one digest is one request, however many it carried). Return
    the decision.

    Nothing is given back before the rest is written: if Redis fails midway, the lease is still
    there and the attempt is due again when it ends, never lost."""
    event_id, destination = claim.event_id, claim.destination
    delivery = keys.delivery_key(event_id)
    with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                # Another destination of the same event finishing changes the hash too: then try again.
                pipe.watch(delivery)
                owned = replies.optional_bytes(pipe.hget(delivery, f"{destination}:owner")) == claim.owner.encode()
                next_state = decide(outcome, owned, probe_entry is not None, step)
                if not counts:
                    next_state = dataclasses.replace(next_state, failures="keep")
                record = attempts.attempt_record(
                    event_id, destination, claim.number, outcome, next_state.retry_in, duration
                )
                # A dead letter keeps its delivery's attempts: it may outlive the event log's record.
                earlier = event_log.attempts_of(pipe, event_id, destination) if next_state.final == "dead" else []
                pipe.multi()
                _write(pipe, claim, envelope, outcome, [*earlier, record], next_state, probe_entry, state_ttl)
                pipe.execute()
                break
            except WatchError:
                continue
    if next_state.final is not None:
        # Done with this destination: the envelope may be unneeded now (a dead letter has its own).
        # What follows is written already: a failure here only leaves the envelope to its TTL.
        try:
            forget_if_done(redis, event_id)
        except RedisError as exc:
            log.warning(
                "%s: could not forget the delivered event's envelope (%s); it expires with its TTL",
                event_id,
                exc.__class__.__name__,
            )
    return next_state


def _write(
    pipe: Pipeline,
    claim: Claim,
    envelope: dict,
    outcome: Outcome,
    history: list[dict],
    next_state: NextState,
    probe_entry: bytes | None,
    state_ttl: int,
) -> None:
    """`history`: the delivery's earlier attempts (only when it ends as a dead letter), then this one."""
    event_id, destination = claim.event_id, claim.destination
    event_log.add_attempt(pipe, history[-1])
    if not next_state.owned:
        return  # the attempt that took the delivery over decides
    pipe.hdel(keys.delivery_key(event_id), f"{destination}:owner")
    pipe.zrem(keys.inflight_key(destination), claim.lease)
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
        queues.schedule(pipe, event_id, destination, step.number, step.deferrals, time.time() + step.delay, state_ttl)
    elif next_state.final is not None:
        pipe.hset(keys.delivery_key(event_id), destination, next_state.final)
        if next_state.final == "dead":
            dead_letters.add(pipe, envelope, destination, outcome, claim.number, history)
