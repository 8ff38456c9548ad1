"""Records of delivery attempts: what the event log (and later the dashboard) reads.

Every attempt goes to relay:attempt-log, a capped stream. Its fields are plain values, the same
names in the same order every time, so Redis stores the names once per block of entries: an
attempt costs about its values. An event's own list (relay:attempts:<id>) holds the attempts of
its deliveries that did not succeed at the first try: what an operator investigates, and what
`dead-letters show` lists. Most deliveries succeed at once; a list for each would double the
memory an event costs.
"""

import json
import time
from typing import Any

from redis import Redis
from redis.client import Pipeline

from relay.domain.outcome import Outcome
from relay.store import keys, replies

ATTEMPTS_TTL = 14 * 86400  # per-event attempt lists outlive the retry schedule by far
ATTEMPT_LOG_MAXLEN = 100_000  # the global log keeps roughly this many of the newest attempts
LOG_FIELDS = ("event", "destination", "attempt", "outcome", "status", "ms", "detail", "retry_in")


def attempt_record(
    event_id: str, destination: str, number: int, outcome: Outcome, next_retry_in: float | None, duration: float
) -> dict:
    """One attempt, as both the log and an event's list show it."""
    return {
        "event": event_id,
        "destination": destination,
        "attempt": number,
        "at": round(time.time(), 3),
        "outcome": outcome.kind,
        "status": outcome.status,
        "detail": outcome.detail,
        "duration_ms": round(duration * 1000, 1),
        "next_retry_in": None if next_retry_in is None else round(next_retry_in, 1),
    }


def log_fields(record: dict) -> list[str]:
    """The record as the attempt log's field values, in LOG_FIELDS order ("" for none)."""
    return [
        record["event"],
        record["destination"],
        str(record["attempt"]),
        record["outcome"],
        str(record["status"]),
        f"{record['duration_ms']:g}",
        record["detail"] or "",
        "" if record["next_retry_in"] is None else f"{record['next_retry_in']:g}",
    ]


def record_attempt(pipe: Pipeline, record: dict, keep_for: float = ATTEMPTS_TTL) -> None:
    """Queue on `pipe` the record of an attempt that failed (or followed a failure), in the event's
    list and in the log."""
    key = keys.attempts_key(record["event"])
    pipe.rpush(key, json.dumps(record, separators=(",", ":")))
    # At least as long as a dead letter of the event may be kept: `show` lists its attempts.
    pipe.expire(key, int(max(keep_for, ATTEMPTS_TTL)))
    pipe.xadd(
        keys.ATTEMPT_LOG,
        dict(zip(LOG_FIELDS, log_fields(record), strict=False)),
        maxlen=ATTEMPT_LOG_MAXLEN,
        approximate=True,
    )


def attempts_of(redis: Redis, event_id: str) -> list[dict]:
    """The attempts of one event's deliveries that did not succeed at the first try, oldest first."""
    return [json.loads(r) for r in redis.lrange(keys.attempts_key(event_id), 0, -1)]


def attempt_log(redis: Redis, count: int | None = None) -> list[dict]:
    """The newest `count` (default: all kept) entries of the attempt log, oldest first, each with
    `at` (seconds) taken from its entry id."""
    entries = replies.stream_entries(redis.xrevrange(keys.ATTEMPT_LOG, count=count))[::-1]
    out = []
    for entry_id, fields in entries:
        record: dict[str, Any] = {k.decode(): v.decode() for k, v in fields.items()}
        record["at"] = int(entry_id.split(b"-")[0]) / 1000
        out.append(record)
    return out


def recent(redis: Redis, seconds: float = 60.0, now: float | None = None) -> dict[str, tuple[int, int]]:
    """Per destination, (attempts, successes) recorded in the last `seconds`, read off the
    attempt log (entry ids are times): what `relay destinations` shows as the recent rate."""
    since_ms = int(((time.time() if now is None else now) - seconds) * 1000)
    counts: dict[str, tuple[int, int]] = {}
    for _, fields in replies.stream_entries(redis.xrange(keys.ATTEMPT_LOG, min=f"{since_ms}-0")):
        destination = fields[b"destination"].decode()
        made, ok = counts.get(destination, (0, 0))
        counts[destination] = (made + 1, ok + (fields[b"outcome"] == b"ok"))
    return counts
