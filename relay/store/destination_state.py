"""Each destination's health: consecutive failures, paused or active, deliveries waiting.

A paused destination is sent nothing: its deliveries are parked, with their envelopes, in
relay:parked:<name>; they are neither dropped nor dead-lettered, however long the pause. A probe
timer (relay:due) sends the oldest waiting delivery every `pause.probe_every`; its first success resumes the
destination and releases everything parked, and a failed probe leaves the delivery first in line.
Operators pause and resume by hand (`relay destinations`); a pause by hand is never probed and
only lifted by hand. Pausing and resuming are logged and announced once to operations.announce_to.
Released deliveries go back to the destination's queue, due at once (relay/store/queues.py).
"""

import json
import logging
import time
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT
from rq.job import Job

from relay.store import due, jobs, keys, scripts

log = logging.getLogger(__name__)
RELEASE_BATCH = 100


@dataclass(frozen=True)
class State:
    """One destination's health as stored in Redis."""

    name: str
    failures: int  # consecutive transient failures
    paused: str | None  # the reason, while paused
    paused_at: float | None
    paused_by: str | None  # "auto" or "operator"
    parked: int  # deliveries waiting


@dataclass(frozen=True)
class Parked:
    """A delivery waiting for a paused destination: everything needed to send it later."""

    event_id: str
    number: int
    deferrals: int
    envelope_json: str

    def to_json(self) -> str:
        """The entry as stored in relay:parked:<name> (relay/store/lua/claim.lua writes the same shape)."""
        return json.dumps([self.event_id, self.number, self.deferrals, self.envelope_json])

    @classmethod
    def from_json(cls, text: bytes | str) -> "Parked":
        """Read an entry of relay:parked:<name>."""
        event_id, number, deferrals, envelope_json = json.loads(text)
        return cls(event_id, int(number), int(deferrals), envelope_json)


def _announcement(redis: Redis, text: str) -> Job:
    return jobs.make(redis, jobs.ANNOUNCE, [text], "announce to operations")


def probe_timer(name: str) -> str:
    """The timer that probes paused destination `name` (workers/pausing.py)."""
    return due.timer(due.PROBE, name)


def get(redis: Redis, name: str) -> State:
    """The stored state of destination `name` (active with no failures when nothing is stored)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.destination_key(name))
    pipe.llen(keys.parked_key(name))
    fields, parked = pipe.execute()
    text = {k.decode(): v.decode() for k, v in fields.items()}
    paused_at = text.get("paused_at")
    return State(
        name,
        int(text.get("failures", 0)),
        text.get("paused"),
        float(paused_at) if paused_at else None,
        text.get("paused_by"),
        parked,
    )


def pause(redis: Redis, name: str, reason: str, by: str, probe_every: float | None) -> bool:
    """Pause `name` unless it is paused already; True when this call paused it.

    The state, the first probe and the announcement are written in one transaction.
    """
    key = keys.destination_key(name)
    with redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            if pipe.hexists(key, "paused"):
                return False
            pipe.multi()
            fields: dict[FieldT, EncodableT] = {"paused": reason, "paused_at": time.time(), "paused_by": by}
            if by == "auto" and probe_every:
                due.schedule(pipe, probe_timer(name), time.time() + probe_every, replace=True)
            pipe.hset(key, mapping=fields)
            text = f"Destination {name} is paused: {reason}. Its deliveries wait until it is resumed."
            jobs.enqueue(redis, _announcement(redis, text), pipe)
            pipe.execute()
        except WatchError:
            return False  # paused (or changed) by someone else meanwhile
    log.warning(text)
    return True


def resume(redis: Redis, name: str, by: str, state_ttl: int) -> int | None:
    """Resume `name` and release its parked deliveries; how many were released, None if not paused.

    The pause is lifted first, so that no lane parks a released delivery again. What an
    interrupted resume did not release is released by release_stranded, which every worker's
    dead-letter expiry timer runs (workers/timers.py).
    """
    if not redis.hexists(keys.destination_key(name), "paused"):
        return None
    pipe = redis.pipeline(transaction=True)
    pipe.hdel(keys.destination_key(name), "paused", "paused_at", "paused_by")
    pipe.hset(keys.destination_key(name), "failures", 0)
    due.cancel(pipe, probe_timer(name))
    pipe.execute()
    released = _release_all(redis, name, state_ttl)
    text = f"Destination {name} is resumed ({by}); {released} waiting deliveries released."
    log.warning(text)
    jobs.enqueue(redis, _announcement(redis, text))
    return released


def release_stranded(redis: Redis, name: str, state_ttl: int) -> int:
    """Release deliveries parked for `name` although it is not paused (a resume that was
    interrupted, or a probe's delivery put back after an operator resumed); how many."""
    if redis.hexists(keys.destination_key(name), "paused") or not redis.llen(keys.parked_key(name)):
        return 0
    released = _release_all(redis, name, state_ttl)
    if released:
        log.warning("destination %s is not paused, but %d deliveries still waited for it: released", name, released)
    return released


def _release_all(redis: Redis, name: str, state_ttl: int) -> int:
    """Release everything parked for `name` into its queue, due now (lua/release_parked.lua)."""
    released = 0
    while True:
        count, dropped = scripts.RELEASE_PARKED.run(
            redis,
            [keys.parked_key(name), keys.queue_key(name), keys.inflight_key(name)],
            [name, RELEASE_BATCH, time.time(), state_ttl, keys.DELIVERY_PREFIX, keys.EVENT_PREFIX],
        )
        for why in dropped:
            log.warning("parked delivery to %s not released: %s", name, why.decode())
        released += int(count)
        if not count and not dropped:
            return released
