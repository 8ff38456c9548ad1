"""Records of delivery attempts: what the event log (and later the dashboard) reads."""

import json
import time

from redis.client import Pipeline

from relay import keys
from workers.destinations.base import Outcome

ATTEMPTS_TTL = 14 * 86400  # per-event attempt lists outlive the retry schedule by far
ATTEMPT_LOG_MAXLEN = 100_000  # the global log keeps roughly this many of the newest attempts


def record_attempt(
    pipe: Pipeline, event_id: str, destination: str, number: int, outcome: Outcome, next_retry_in: float | None,
    duration: float, keep_for: float = ATTEMPTS_TTL,
) -> dict:
    """Queue on `pipe` the record of one attempt (per event and in the global log); return it."""
    record = {
        "event": event_id, "destination": destination, "attempt": number, "at": round(time.time(), 3),
        "outcome": outcome.kind, "status": outcome.status, "detail": outcome.detail,
        "duration_ms": round(duration * 1000, 1),
        "next_retry_in": None if next_retry_in is None else round(next_retry_in, 1),
    }
    text = json.dumps(record, separators=(",", ":"))
    pipe.rpush(keys.attempts_key(event_id), text)
    # At least as long as a dead letter of the event may be kept: `show` lists its attempts.
    pipe.expire(keys.attempts_key(event_id), int(max(keep_for, ATTEMPTS_TTL)))
    pipe.xadd(keys.ATTEMPT_LOG, {"record": text}, maxlen=ATTEMPT_LOG_MAXLEN, approximate=True)
    return record


def attempts_of(redis, event_id: str) -> list[dict]:
    """Every recorded attempt of one event, oldest first."""
    return [json.loads(r) for r in redis.lrange(keys.attempts_key(event_id), 0, -1)]
