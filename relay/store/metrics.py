"""The workers' share of GET /metrics: counters kept in Redis, which the web process reads.

On a PaaS only the web process can be scraped, and worker processes come and go, so what the
workers count lives in Redis (one hash per metric family, HINCRBY: atomic across processes) and
the web process reads it at scrape time, with the gauges (inbox, queues, pauses, dead letters,
heartbeats) it reads from the keys that already hold them (docs/metrics.md).
"""

import time
from dataclasses import dataclass, field

from redis import Redis

from relay.store import keys, presence, queues, stats

# Upper bounds (s) of the send latency histogram's buckets; "+Inf" is implied.
SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SEP = "|"  # between a destination and the rest of a field: no destination name holds it
DEAD_LETTERS_READ = 100_000  # a scrape counts at most this many dead letters (the newest)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bucket(seconds: float) -> str:
    for bound in SEND_BUCKETS:
        if seconds <= bound:
            return f"{bound:g}"
    return "+Inf"


def record_attempt(redis: Redis, destination: str, outcome: str, seconds: float) -> None:
    """Count one attempt of `destination` by its outcome, and its send time, since ever (here)
    and in this minute's counts (relay/store/stats.py), in one round trip."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(keys.METRICS_ATTEMPTS, f"{destination}{SEP}{outcome}", 1)
        pipe.hincrby(keys.METRICS_SEND_SECONDS, f"{destination}{SEP}{_bucket(seconds)}", 1)
        pipe.hincrbyfloat(keys.METRICS_SEND_SECONDS, f"{destination}{SEP}sum", seconds)
        stats.count_attempt(pipe, destination, outcome == "ok", seconds)
        pipe.execute()


def record_session(redis: Redis, outcome: str) -> None:
    """Count one session whose outcome was emitted."""
    redis.hincrby(keys.METRICS_SESSIONS, outcome, 1)


@dataclass
class SendHistogram:
    """One destination's send times: cumulative bucket counts (as Prometheus wants them) and sum."""

    buckets: list[tuple[str, int]]
    total: float


@dataclass
class DestinationGauges:
    """One destination's queue, in flight, pause and dead letters at scrape time."""

    waiting: int  # due now
    oldest_wait: float  # seconds the oldest of them has waited (0: none)
    scheduled: int  # due later (retries, rate-capped replays)
    in_flight: int
    parked: int
    paused: bool
    dead_letters: int


@dataclass
class Snapshot:
    """Everything GET /metrics reads from Redis, read in a bounded number of round trips."""

    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    send: dict[str, SendHistogram] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    destinations: dict[str, DestinationGauges] = field(default_factory=dict)
    inbox_entries: int = 0
    inbox_oldest_age: float = 0.0
    workers_running: int = 0
    workers_seen: int = 0
    last_heartbeat_age: float | None = None


def read(redis: Redis, destinations: list[str], absent_after: float, now: float | None = None) -> Snapshot:
    """Read the counters and the gauges: 2 round trips, then 2 per destination (configured, or
    with counters)."""
    now = time.time() if now is None else now
    snap = Snapshot()
    with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.METRICS_ATTEMPTS)
        pipe.hgetall(keys.METRICS_SEND_SECONDS)
        pipe.hgetall(keys.METRICS_SESSIONS)
        pipe.zrevrange(keys.DEAD_LETTERS, 0, DEAD_LETTERS_READ - 1)
        attempts, send, sessions, dead = pipe.execute()
    for name, count in attempts.items():
        destination, _, outcome = _text(name).rpartition(SEP)
        snap.attempts[(destination, outcome)] = int(count)
    raw_send: dict[str, dict[str, float]] = {}
    for name, value in send.items():
        destination, _, part = _text(name).rpartition(SEP)
        raw_send.setdefault(destination, {})[part] = float(value)
    for destination, parts in raw_send.items():
        running, buckets = 0, []
        for bound in (*(f"{b:g}" for b in SEND_BUCKETS), "+Inf"):
            running += int(parts.get(bound, 0))
            buckets.append((bound, running))
        snap.send[destination] = SendHistogram(buckets, parts.get("sum", 0.0))
    snap.sessions = {_text(k): int(v) for k, v in sessions.items()}
    dead_by: dict[str, int] = {}
    for member in dead:
        destination = _text(member).partition(":")[0]
        dead_by[destination] = dead_by.get(destination, 0) + 1

    names = sorted({*destinations, *(d for d, _ in snap.attempts), *dead_by})
    for name in names:
        backlog = queues.backlog(redis, name, now)
        paused = redis.hexists(keys.destination_key(name), "paused")
        snap.destinations[name] = DestinationGauges(
            backlog.waiting,
            backlog.oldest_wait or 0.0,
            backlog.scheduled,
            backlog.in_flight,
            backlog.parked,
            bool(paused),
            dead_by.get(name, 0),
        )

    status = presence.status(redis, absent_after, now)
    snap.inbox_entries = status.waiting
    snap.inbox_oldest_age = status.oldest_age or 0.0
    snap.workers_running = len(status.running)
    snap.workers_seen = len(status.workers)
    if status.workers:
        snap.last_heartbeat_age = max(0.0, now - max(w.seen for w in status.workers))
    return snap
