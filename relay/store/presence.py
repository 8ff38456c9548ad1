"""Which worker processes are running, from their heartbeats, and how long the inbox waits for
them: what `relay status`, /readyz and /healthz/workers report.

Each worker process writes its entry in relay:workers every third of its presence TTL (the
ticker's heartbeat, workers/timers.py): when it was last seen and until when it counts as
running. A clean exit marks it gone at once; a killed worker is presumed gone when that time
passes. Entries stay a day after their last heartbeat, so "no worker has been seen for 5 min"
can still be said after the last one went; any heartbeat removes older ones.
"""

import json
import os
import socket
import time
from dataclasses import dataclass

from redis import Redis

from relay.store import inbox, keys

KEEP_GONE = 86400.0  # seconds an entry stays after its worker was last seen
SCALE_HINT = "scale the worker process (heroku ps:scale worker=1)"


def worker_id(host: str | None = None, pid: int | None = None) -> str:
    """This process's id in relay:workers: host:pid."""
    return f"{host or socket.gethostname()}:{pid or os.getpid()}"


@dataclass(frozen=True)
class Worker:
    """One worker process as its last heartbeat left it."""

    id: str
    host: str
    pid: int
    started: float  # unix s
    seen: float  # its last heartbeat (unix s)
    until: float  # presumed gone after this (unix s)
    left: bool  # it exited cleanly

    def running(self, now: float) -> bool:
        """Whether it counts as running at `now`."""
        return not self.left and now < self.until

    def to_json(self, now: float) -> dict:
        """Its entry for `relay status --json`."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "running": self.running(now),
            "left": self.left,
            "started": self.started,
            "last_seen": self.seen,
            "last_seen_ago": round(max(0.0, now - self.seen), 1),
        }


def beat(redis: Redis, wid: str, started: float, ttl: float, now: float | None = None) -> None:
    """Record that worker `wid` runs now and counts as running for `ttl` seconds more."""
    now = time.time() if now is None else now
    host, _, pid = wid.rpartition(":")
    entry = {"host": host, "pid": int(pid), "started": started, "seen": now, "until": now + ttl}
    with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.WORKERS, wid, json.dumps(entry))
        pipe.expire(keys.WORKERS, int(KEEP_GONE))
        pipe.execute()


def leave(redis: Redis, wid: str, now: float | None = None) -> None:
    """Mark worker `wid` gone at once (a clean exit), keeping when it was last seen."""
    now = time.time() if now is None else now
    raw = redis.hget(keys.WORKERS, wid)
    entry = json.loads(raw) if raw else {"host": wid.rpartition(":")[0], "pid": int(wid.rpartition(":")[2])}
    entry.update(seen=now, until=now, left=True, started=entry.get("started", now))
    redis.hset(keys.WORKERS, wid, json.dumps(entry))


def forget_old(redis: Redis, now: float | None = None) -> int:
    """Remove entries last seen more than KEEP_GONE ago; return how many."""
    now = time.time() if now is None else now
    old = [w.id for w in workers(redis) if w.seen < now - KEEP_GONE]
    if old:
        redis.hdel(keys.WORKERS, *old)
    return len(old)


def workers(redis: Redis) -> list[Worker]:
    """Every entry of relay:workers, most recently seen first (unreadable ones skipped)."""
    return _parse(redis.hgetall(keys.WORKERS))


def _parse(raw: dict) -> list[Worker]:
    found = []
    for wid, text in raw.items():
        try:
            e = json.loads(text)
            found.append(
                Worker(
                    wid.decode() if isinstance(wid, bytes) else wid,
                    str(e["host"]),
                    int(e["pid"]),
                    float(e["started"]),
                    float(e["seen"]),
                    float(e["until"]),
                    bool(e.get("left", False)),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda w: w.seen, reverse=True)


@dataclass(frozen=True)
class Status:
    """Workers and the inbox's lag at one moment, and whether that needs an operator."""

    now: float
    workers: list[Worker]
    waiting: int  # inbox entries not yet fanned out
    oldest_at: float | None  # when the oldest of them was accepted (unix s)
    absent_after: float  # WORKER_ABSENT_AFTER

    @property
    def running(self) -> list[Worker]:
        """The workers that count as running."""
        return [w for w in self.workers if w.running(self.now)]

    @property
    def oldest_age(self) -> float | None:
        """How long the oldest waiting event has waited (s), None when none waits."""
        return None if self.oldest_at is None else max(0.0, self.now - self.oldest_at)

    @property
    def absent_for(self) -> float | None:
        """How long no worker has been running (s): 0 while one runs, None when none was ever seen."""
        if self.running:
            return 0.0
        if not self.workers:
            return None
        return max(0.0, self.now - max(w.seen for w in self.workers))

    @property
    def problem(self) -> str | None:
        """The sentence for an operator when events wait and no worker has run for absent_after
        seconds (or, when none was ever seen, the oldest event has waited that long); else None."""
        if not self.waiting or self.running:
            return None
        absent = self.absent_for
        if absent is None:
            age = self.oldest_age or 0.0
            if age < self.absent_after:
                return None
            return (
                f"events are being accepted but no worker has been seen (the oldest has waited {age:.0f} s): "
                f"{SCALE_HINT}"
            )
        if absent < self.absent_after:
            return None
        return f"events are being accepted but no worker has been seen for {absent:.0f} s: {SCALE_HINT}"

    def summary(self) -> dict:
        """What the web endpoints show: counts and ages, no host names or pids."""
        oldest = self.oldest_age
        absent = self.absent_for
        return {
            "running": len(self.running),
            "absent_for": None if absent is None else round(absent, 1),
            "inbox": {"waiting": self.waiting, "oldest_age": None if oldest is None else round(oldest, 1)},
            "problem": self.problem,
        }

    def to_json(self) -> dict:
        """What `relay status --json` prints: the summary and every worker entry."""
        return {
            **self.summary(),
            "absent_after": self.absent_after,
            "workers": [w.to_json(self.now) for w in self.workers],
        }


def status(redis: Redis, absent_after: float, now: float | None = None) -> Status:
    """Read the workers' entries and the inbox's lag in one round trip."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.WORKERS)
        pipe.xlen(keys.INBOX)
        pipe.xrange(keys.INBOX, count=1)
        raw, waiting, first = pipe.execute()
    now = time.time() if now is None else now
    oldest_at = inbox.entry_time(first[0][0]) if first else None
    return Status(now, _parse(raw), int(waiting), oldest_at if waiting else None, absent_after)
