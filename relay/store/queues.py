"""Each destination's queue: its deliveries waiting to be sent, by due time, and those being sent.

Every destination has a backlog of its own (relay:queue:<name>), so a slow, failing,
rate-limited or paused destination accumulates its own lag and nothing else. A delivery is one
member, JSON [event id, destination, attempt, deferrals], scored by when it is due: a first
attempt now, a retry after its delay, a rate-capped replay at its turn. Worker processes take
due members atomically (lua/take.lua) into relay:inflight:<name>, scored by when the send is
presumed lost; a lease that runs out makes its attempt due again at once, for any worker. There
is no lock and no scheduler: what is due is taken by whichever worker asks first. A rate-limited
destination that folds (`digest_max`) has what its rate limit held back taken in one turn, to
be sent as one digest (workers/lanes.py).
"""

import json
import time
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from relay.store import keys, scripts

# Bounds the work of one take (reclaimed leases, parked deliveries), so that one call stays short.
TAKE_BATCH = 100


def member(event_id: str, destination: str, number: int, deferrals: int) -> str:
    """How one attempt of one delivery is named in relay:queue:<d> and relay:inflight:<d>."""
    return json.dumps([event_id, destination, number, deferrals])


def parse_member(text: bytes | str) -> tuple[str, str, int, int]:
    """(event id, destination, attempt, deferrals) of a queue or in-flight member."""
    event_id, destination, number, deferrals = json.loads(text)
    return event_id, destination, int(number), int(deferrals)


def enqueue_first(pipe: Pipeline, event_id: str, destination: str, state_ttl: int, due: float | None = None) -> None:
    """Queue on `pipe` the first attempt of a delivery, unless the delivery exists already; its
    answer among pipe.execute()'s is 1 (queued) or 0 (fanned out before)."""
    scripts.ENQUEUE.queue(
        pipe,
        [keys.delivery_key(event_id), keys.queue_key(destination)],
        [destination, member(event_id, destination, 1, 0), time.time() if due is None else due, state_ttl],
    )


def schedule(
    pipe: Pipeline, event_id: str, destination: str, number: int, deferrals: int, due: float, state_ttl: int
) -> None:
    """Queue on `pipe` attempt `number` (after `deferrals` deferrals) of a delivery, due at `due`:
    a retry, a released parked delivery, a replay. The state names the attempt, so a stale
    member of the same delivery sends nothing."""
    pipe.hset(keys.delivery_key(event_id), destination, f"{number}.{deferrals}")
    pipe.expire(keys.delivery_key(event_id), state_ttl)
    pipe.zadd(keys.queue_key(destination), {member(event_id, destination, number, deferrals): due})


@dataclass(frozen=True)
class Taken:
    """One delivery attempt taken to be sent: its lease is running."""

    event_id: str
    number: int
    deferrals: int
    owner: str
    envelope: dict


@dataclass(frozen=True)
class Take:
    """What one take did for one destination."""

    taken: list[Taken]
    reclaimed: list[tuple[str, int]]  # (event id, attempt) whose lease had run out: due again
    parked: int  # deliveries parked because the destination is paused
    missing: list[tuple[str, int]]  # (event id, attempt) whose envelope is gone: cannot be sent
    wait: float | None  # seconds until something may be due (a retry, a lease's end, a rate turn)


def take(
    redis: Redis,
    destination: str,
    free: int,
    lease: float,
    interval: float,
    owner: str,
    state_ttl: int,
    now: float | None = None,
    fold: int = 1,
) -> Take:
    """Take up to `free` due deliveries of `destination` (lua/take.lua).

    With a rate limit (`interval`), one per turn; but when the rate limit held deliveries back
    (the oldest due one came due before this turn opened) and `fold` > 1, up to `fold` due ones
    in this turn (each with its own lease), for the lane to send as one digest.
    """
    reply = scripts.TAKE.run(
        redis,
        [
            keys.queue_key(destination),
            keys.inflight_key(destination),
            keys.destination_key(destination),
            keys.parked_key(destination),
            keys.rate_key(destination),
        ],
        [
            destination,
            time.time() if now is None else now,
            free,
            lease,
            interval,
            owner,
            state_ttl,
            TAKE_BATCH,
            keys.DELIVERY_PREFIX,
            keys.EVENT_PREFIX,
            fold,
        ],
    )
    taken_raw, reclaimed_raw, parked, missing_raw, wait_ms = reply
    taken = []
    for raw_member, raw_owner, raw_envelope in taken_raw:
        event_id, _, number, deferrals = parse_member(raw_member)
        taken.append(Taken(event_id, number, deferrals, raw_owner.decode(), json.loads(raw_envelope)))
    return Take(
        taken,
        [_attempt(m) for m in reclaimed_raw],
        int(parked),
        [_attempt(m) for m in missing_raw],
        None if int(wait_ms) < 0 else int(wait_ms) / 1000,
    )


def _attempt(raw: bytes) -> tuple[str, int]:
    event_id, _, number, _ = parse_member(raw)
    return event_id, number


@dataclass(frozen=True)
class Backlog:
    """One destination's lag, as `relay destinations` shows it."""

    waiting: int  # due now
    scheduled: int  # due later: retries, rate-capped replays
    in_flight: int
    parked: int  # waiting for a paused destination
    oldest_wait: float | None  # seconds the oldest due delivery has waited


def backlog(redis: Redis, destination: str, now: float | None = None) -> Backlog:
    """Count what waits for `destination`, in one round trip."""
    now = time.time() if now is None else now
    pipe = redis.pipeline(transaction=False)
    pipe.zcount(keys.queue_key(destination), "-inf", now)
    pipe.zcount(keys.queue_key(destination), f"({now}", "+inf")
    pipe.zcard(keys.inflight_key(destination))
    pipe.llen(keys.parked_key(destination))
    pipe.zrange(keys.queue_key(destination), 0, 0, withscores=True)
    waiting, scheduled, in_flight, parked, head = pipe.execute()
    oldest = now - head[0][1] if head and head[0][1] <= now else None
    return Backlog(int(waiting), int(scheduled), int(in_flight), int(parked), oldest)


def names_in_use(redis: Redis) -> set[str]:
    """Destinations that have deliveries queued, in flight or parked, configured or not (a
    destination removed from the config may still have some)."""
    names: set[str] = set()
    for pattern in (keys.queue_key("*"), keys.inflight_key("*"), keys.parked_key("*")):
        prefix = len(pattern) - 1
        names.update(key.decode()[prefix:] for key in redis.scan_iter(match=pattern, count=500))
    return names
