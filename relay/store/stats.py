"""Counts per minute for `relay stats` and GET /admin/stats: requests at ingest by source and
result, attempts per destination by outcome with their send times, over the last hour or day.

GET /metrics has counters since ever (relay/store/metrics.py, prometheus-client's files); a
question like "how many deliveries failed today?" needs them by time. One hash per minute
(relay:stats:<unix minute>), kept a day: each count is an HINCRBY in a round trip that is made
anyway (the ingest script, the worker's metrics pipeline), and reading a day is one pipeline of
1,440 small hashes. Send times are counted in buckets, so p50 and p99 are bucket bounds
("at most 50 ms"), as a Prometheus histogram gives them: exact percentiles would need every
time kept.
"""

import time
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.client import Pipeline

from relay.domain.times import iso
from relay.store import keys, replies

MINUTE = 60
KEEP = 86400 + 2 * MINUTE  # a day's window, from the minute being counted
WINDOWS = (("hour", 3600), ("day", 86400))
SEP = "|"  # no source or destination name holds it (config/types.py)
# Upper bounds (ms) of the send time buckets; "+Inf" above the last.
MS_BOUNDS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
# What ingest counts here: what the web process answered, but neither "unavailable" (Redis is
# down: nothing can be counted in it) nor "error" (a bug, logged with its traceback).
INGEST_RESULTS = ("accepted", "duplicate", "invalid", "unauthorized", "too_large", "unknown_source")


def minute_key(now: float | None = None) -> str:
    """The key of the minute `now` falls in."""
    return keys.stats_key(int((time.time() if now is None else now) // MINUTE))


def ingest_field(source: str, result: str) -> str:
    """The field that counts `result` (INGEST_RESULTS) at `source`."""
    return f"in{SEP}{source}{SEP}{result}"


def count_ingest(redis: Redis, source: str, result: str, now: float | None = None) -> None:
    """Count one request refused at ingest (the accept script counts accepted and duplicates)."""
    key = minute_key(now)
    with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(key, ingest_field(source, result), 1)
        pipe.expire(key, KEEP)
        pipe.execute()


def _bound(ms: float) -> str:
    for bound in MS_BOUNDS:
        if ms <= bound:
            return str(bound)
    return "+Inf"


def count_attempt(pipe: Pipeline, destination: str, ok: bool, seconds: float, now: float | None = None) -> None:
    """Queue on `pipe` the count of one attempt and its send time."""
    key = minute_key(now)
    pipe.hincrby(key, f"out{SEP}{destination}{SEP}{'ok' if ok else 'failed'}", 1)
    pipe.hincrby(key, f"ms{SEP}{destination}{SEP}{_bound(seconds * 1000)}", 1)
    pipe.expire(key, KEEP)


@dataclass
class Destination:
    """One destination's attempts in a window."""

    delivered: int = 0  # attempts that succeeded
    failed: int = 0  # attempts that failed (retried or not)
    times: dict[str, int] = field(default_factory=dict)  # send time bucket bound -> attempts

    @property
    def attempts(self) -> int:
        return self.delivered + self.failed

    def percentile(self, q: float) -> float | None:
        """The bound (ms) of the bucket holding the q-th send time; None without attempts, inf
        above the last bound."""
        total = sum(self.times.values())
        if not total:
            return None
        rank = max(1, -(-int(q * 1000) * total // 1000))  # nearest rank
        seen = 0
        for bound in (*map(str, MS_BOUNDS), "+Inf"):
            seen += self.times.get(bound, 0)
            if seen >= rank:
                return float(bound) if bound != "+Inf" else float("inf")
        return float("inf")


@dataclass
class Window:
    """The counts of whole minutes from `since` to now."""

    since: float
    ingest: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> result -> requests
    destinations: dict[str, Destination] = field(default_factory=dict)


def _minutes(redis: Redis, first: int, last: int) -> list[tuple[int, dict]]:
    """Each minute from `first` to `last` (unix minutes) with its counts, in one round trip."""
    with redis.pipeline(transaction=False) as pipe:
        for minute in range(first, last + 1):
            pipe.hgetall(keys.stats_key(minute))
        return list(zip(range(first, last + 1), pipe.execute(), strict=True))


def _window(minutes: list[tuple[int, dict]], first: int) -> Window:
    """The counts of `minutes` from `first` on, summed."""
    window = Window(first * MINUTE)
    for minute, fields in minutes:
        if minute < first:
            continue
        for raw, value in fields.items():
            kind, _, rest = raw.decode().partition(SEP)
            name, _, part = rest.rpartition(SEP)
            if kind == "in":
                per = window.ingest.setdefault(name, {})
                per[part] = per.get(part, 0) + int(value)
            elif kind in ("out", "ms"):
                d = window.destinations.setdefault(name, Destination())
                if kind == "ms":
                    d.times[part] = d.times.get(part, 0) + int(value)
                elif part == "ok":
                    d.delivered += int(value)
                else:
                    d.failed += int(value)
    return window


def _first(seconds: float, now: float) -> int:
    return int((now - seconds) // MINUTE)


def read(redis: Redis, seconds: float, now: float | None = None) -> Window:
    """The counts of the minutes that overlap the last `seconds`: from the start of the minute
    `seconds` ago, to now."""
    now = time.time() if now is None else now
    first = _first(seconds, now)
    return _window(_minutes(redis, first, int(now // MINUTE)), first)


def _ms(value: float | None) -> float | str | None:
    return "+Inf" if value == float("inf") else value


def report(redis: Redis, now: float | None = None) -> dict[str, Any]:
    """The last hour's and day's figures, GET /admin/stats's answer: requests at ingest by result
    (per source and all), and per destination attempts, deliveries, failed attempts, dead letters
    and p50/p99 send time (bucket bounds, ms)."""
    now = time.time() if now is None else now
    out: dict[str, Any] = {"at": iso(int(now))}
    # The longest window's minutes are read once: the shorter ones are their last minutes.
    minutes = _minutes(redis, _first(max(s for _, s in WINDOWS), now), int(now // MINUTE))
    for name, seconds in WINDOWS:
        window = _window(minutes, _first(seconds, now))
        totals = dict.fromkeys(INGEST_RESULTS, 0)
        for per in window.ingest.values():
            for result, n in per.items():
                totals[result] = totals.get(result, 0) + n
        dead = _dead_letters(redis, window.since)
        names = sorted({*window.destinations, *dead})
        out[name] = {
            "since": iso(window.since),
            "requests": totals,
            "requests_by_source": {s: dict(sorted(r.items())) for s, r in sorted(window.ingest.items())},
            "destinations": {d: _destination(window.destinations.get(d, Destination()), dead.get(d, 0)) for d in names},
        }
    return out


def _destination(counts: Destination, dead_letters: int) -> dict[str, Any]:
    return {
        "attempts": counts.attempts,
        "delivered": counts.delivered,
        "failed": counts.failed,
        "dead_letters": dead_letters,
        "p50_ms": _ms(counts.percentile(0.50)),
        "p99_ms": _ms(counts.percentile(0.99)),
    }


def _dead_letters(redis: Redis, since: float) -> dict[str, int]:
    per: dict[str, int] = {}
    for member in replies.members(redis.zrangebyscore(keys.DEAD_LETTERS, since, "+inf")):
        destination = member.decode().partition(":")[0]
        per[destination] = per.get(destination, 0) + 1
    return per
