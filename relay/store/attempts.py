"""An attempt's record: what the event log keeps of each attempt (relay/store/event_log.py), what
a dead letter keeps of its delivery's (relay/store/dead_letters.py), and the line both store."""

import json
import time
from typing import Any

from relay.domain.outcome import Outcome

DETAIL_MAX = 200  # characters of an attempt's detail kept: enough for a status line or an error


def attempt_record(
    event_id: str, destination: str, number: int, outcome: Outcome, next_retry_in: float | None, duration: float
) -> dict:
    """One attempt, as the event log and the dead letters show it."""
    return {
        "event": event_id,
        "destination": destination,
        "attempt": number,
        "at": round(time.time(), 3),
        "outcome": outcome.kind,
        "status": outcome.status,
        "detail": (outcome.detail or "")[:DETAIL_MAX],
        "duration_ms": round(duration * 1000, 1),
        "next_retry_in": None if next_retry_in is None else round(next_retry_in, 1),
    }


# A line holds the values alone, in this order: the names would double its size.
_LINE = ("destination", "attempt", "outcome", "status", "duration_ms", "at", "next_retry_in", "detail")


def line(record: dict) -> str:
    """The record as the line added to its event's record in the event log ("\\n" first)."""
    return "\n" + json.dumps([record[name] for name in _LINE], separators=(",", ":"), ensure_ascii=False)


def record_of(event_id: str, values: list[Any]) -> dict:
    """The record a line's values (parsed) stand for."""
    return {"event": event_id, **dict(zip(_LINE, values, strict=True))}
