"""A WMS measurement session, followed from its events: the outcome, and the derived event that
says it. Pure: the record's text comes from and goes to relay/store/sessions.py.

The outcome depends on the set of events, never on the order they arrived in: events are
considered in `sequence` order, each sequence once.

| the session's events, in sequence order                  | outcome     | reason                     |
|----------------------------------------------------------|-------------|----------------------------|
| a failure code with no RESULTS_RECEIVED after it         | failed      | the first such failure (*) |
| RESULTS_RECEIVED, and no failure code after the last one | completed   | none                       |
| PAGE_UNLOADED and no RESULTS_RECEIVED                    | abandoned   | PAGE_UNLOADED              |
| none of these, and no event for `sessions.idle_timeout`  | abandoned   | idle                       |
| none of these yet                                        | in_progress |                            |

(*) The first failure code after the last RESULTS_RECEIVED (or from the start, without one).

Failure codes: FAILURE_CODES. The first failure decides the reason because the later ones follow
from it (a CONSTRAINT_VIOLATION cancels the measurement: MEASUREMENT_CANCELED comes next).
"""

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from config.wms_events import DERIVED, SESSION_ABANDONED, SESSION_COMPLETED, SESSION_FAILED
from relay.domain.event import Event

FAILURE_CODES = frozenset(
    {
        "CAMERA_PERMISSION_DENIED",
        "CONSTRAINT_VIOLATION",
        "MEASUREMENT_CANCELED",
        "WEBSOCKET_RECONNECTION_FAILED",
        "API_ERROR",
    }
)
RESULTS = "RESULTS_RECEIVED"
UNLOADED = "PAGE_UNLOADED"
IDLE = "idle"
OUTCOMES = ("in_progress", "completed", "failed", "abandoned")
DERIVED_CODE = {"completed": SESSION_COMPLETED, "failed": SESSION_FAILED, "abandoned": SESSION_ABANDONED}
SESSION_SUFFIX = "session"  # a derived outcome's id: '<source>:<sessionId>:session'
# What a session's record keeps of each event's payload, for its timeline: the small values
# people read (a constraint, an error code, an SNR), not whatever else a payload may carry.
KEY_FIELDS_MAX = 4
KEY_VALUE_MAX = 80
FINAL_TAG = "F"
# A record takes every event up to this size (about 1,000 events), then only the events that
# decide an outcome, up to twice it: a sender cannot grow one session without bound.
MAX_RECORD_BYTES = 128 * 1024
# In a record line in place of a measurementId the record names already (lua/session_track.lua).
SAME_MEASUREMENT = 1


@dataclass(frozen=True)
class Seen:
    """One event of a session as its record keeps it."""

    sequence: int
    received_at: float  # unix s, when the relay accepted it
    code: str
    severity: str
    timestamp: int  # WMS's own time of the event
    measurement_id: str | None
    payload: dict[str, Any]  # the key payload fields (key_payload)


@dataclass(frozen=True)
class Verdict:
    """A session's outcome and what decided it."""

    outcome: str  # one of OUTCOMES
    reason: str | None = None  # the deciding event's code, or IDLE
    deciding: Seen | None = None


@dataclass(frozen=True)
class Session:
    """Everything the relay knows of one session."""

    source: str
    session_id: str
    events: tuple[Seen, ...]  # in sequence order, each sequence once
    out_of_order: int  # events accepted after an event with a higher sequence
    final: dict[str, Any] | None  # the outcome as emitted (final_record), once it was
    late: int  # events accepted after the outcome was emitted (not in it)
    duplicates: int  # the same sequence tracked again (an inbox entry read twice)
    truncated: bool = False  # the record reached MAX_RECORD_BYTES: later events that decide nothing are not in it
    size: int = 0  # the record's length as read (where its outcome's mark goes: lua/session_final.lua)

    @property
    def key(self) -> str:
        """'<source>:<sessionId>': how the session is named in the relay's index."""
        return f"{self.source}:{self.session_id}"

    @property
    def verdict(self) -> Verdict:
        """The outcome the events decide (without the idle timeout: see step)."""
        return decide(self.events)

    @property
    def outcome(self) -> str:
        """The emitted outcome once final, else what the events decide so far."""
        return self.final["outcome"] if self.final else self.verdict.outcome

    @property
    def last_received(self) -> float:
        """When the relay accepted the session's latest event (unix s)."""
        return max(e.received_at for e in self.events)

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """Missing sequence ranges (inclusive), from 0 to the highest sequence seen."""
        gaps: list[tuple[int, int]] = []
        expected = 0
        for e in self.events:
            if e.sequence > expected:
                gaps.append((expected, e.sequence - 1))
            expected = e.sequence + 1
        return gaps

    @property
    def measurement_ids(self) -> list[str]:
        """The measurement ids seen, in sequence order, each once."""
        return list(dict.fromkeys(e.measurement_id for e in self.events if e.measurement_id))

    @property
    def last_snr(self) -> float | int | None:
        """The SNR of the latest event (in sequence order) that carried one."""
        for e in reversed(self.events):
            snr = e.payload.get("snr")
            if isinstance(snr, (int, float)) and not isinstance(snr, bool) and math.isfinite(snr):
                return snr
        return None


def decide(events: tuple[Seen, ...] | list[Seen]) -> Verdict:
    """The outcome of a session's events (in sequence order), by the table of this module's docstring."""
    last_results = max((i for i, e in enumerate(events) if e.code == RESULTS), default=-1)
    failure = next((e for e in events[last_results + 1 :] if e.code in FAILURE_CODES), None)
    if failure is not None:
        return Verdict("failed", failure.code, failure)
    if last_results >= 0:
        return Verdict("completed")
    unloaded = next((e for e in events if e.code == UNLOADED), None)
    if unloaded is not None:
        return Verdict("abandoned", UNLOADED, unloaded)
    return Verdict("in_progress")


def step(session: Session, now: float, settle: float, idle_timeout: float) -> Verdict | float:
    """The final verdict if the session's outcome is settled now, else when to look again (unix s).

    An outcome is final `settle` seconds after the session's last event, so that late and
    reordered events still count; a session without one is abandoned after `idle_timeout`.
    """
    verdict = session.verdict
    last = session.last_received
    if verdict.outcome != "in_progress":
        return verdict if now >= last + settle else last + settle
    if now >= last + idle_timeout:
        return Verdict("abandoned", IDLE)
    return last + idle_timeout


def key_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload fields a session's record keeps for its timeline: at most KEY_FIELDS_MAX
    scalars other than measurementId, strings cut to KEY_VALUE_MAX characters."""
    kept: dict[str, Any] = {}
    for name, value in payload.items():
        if len(kept) == KEY_FIELDS_MAX:
            break
        if name == "measurementId" or len(name) > KEY_VALUE_MAX:
            continue
        if isinstance(value, str):
            kept[name] = value[:KEY_VALUE_MAX]
        elif value is None or isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
            kept[name] = value if not isinstance(value, int) or abs(value) < 2**53 else str(value)[:KEY_VALUE_MAX]
    return kept


def record_line(event: Event, received_at: float, *, measurement: bool = True) -> str:
    """One event's line in its session's record: a JSON array, no line break inside. Without
    `measurement`, its measurementId is written as SAME_MEASUREMENT: the record names it already."""
    measurement_id: str | int | None = event.measurement_id[:KEY_VALUE_MAX] if event.measurement_id else None
    if measurement_id is not None and not measurement:
        measurement_id = SAME_MEASUREMENT
    fields = [
        event.sequence,
        int(received_at * 1000),
        event.code,
        event.severity,
        event.timestamp,
        measurement_id,
        key_payload(event.payload),
    ]
    return json.dumps(fields, separators=(",", ":")) + "\n"


def measurement_json(event: Event) -> str:
    """The event's measurementId as its record line spells it ('' for none): how the record is
    searched for it."""
    return json.dumps(event.measurement_id[:KEY_VALUE_MAX]) if event.measurement_id else ""


def decides(code: str) -> bool:
    """Whether an event with this code can decide an outcome (a full record still takes it)."""
    return code in FAILURE_CODES or code in (RESULTS, UNLOADED)


def final_line(record: dict[str, Any]) -> str:
    """The line that marks a session's outcome as emitted."""
    return json.dumps([FINAL_TAG, record], separators=(",", ":")) + "\n"


def final_record(body: dict[str, Any], event_id: str, at: float) -> dict[str, Any]:
    """What the record keeps of an emitted outcome, from the derived event's body (derived_body)."""
    payload = body["payload"]
    return {
        "outcome": payload["outcome"],
        "reason": payload["reason"],
        "sequence": payload["reasonSequence"],
        "event": event_id,
        "at": round(at, 3),
    }


def parse_record(source: str, session_id: str, text: str) -> Session:
    """The session a record holds; lines that cannot be read are skipped (a later version's)."""
    by_sequence: dict[int, Seen] = {}
    arrivals: list[Seen] = []
    final = None
    late = duplicates = 0
    for line in text.splitlines():
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        if not isinstance(fields, list) or not fields:
            continue
        if fields[0] == FINAL_TAG and len(fields) == 2 and isinstance(fields[1], dict):
            final = final or fields[1]
            continue
        try:
            sequence, received_ms, code, severity, timestamp, measurement, payload = fields
            seen = Seen(
                int(sequence), received_ms / 1000, str(code), str(severity), int(timestamp), measurement, payload
            )
        except (TypeError, ValueError):
            continue
        if seen.sequence in by_sequence:
            duplicates += 1
            continue
        if final is not None:
            late += 1
        by_sequence[seen.sequence] = seen
        arrivals.append(seen)
    highest = -1
    out_of_order = 0
    for seen in sorted(arrivals, key=lambda s: s.received_at):
        if seen.sequence < highest:
            out_of_order += 1
        highest = max(highest, seen.sequence)
    # A measurementId is written once per record (lua/session_track.lua); an event that had it
    # too says SAME_MEASUREMENT: the nearest one named before it in sequence order, else after it.
    ordered = [by_sequence[s] for s in sorted(by_sequence)]
    following: list[str | None] = [None] * len(ordered)  # the next one named, from each event on
    upcoming = None
    for i in range(len(ordered) - 1, -1, -1):
        if isinstance(ordered[i].measurement_id, str):
            upcoming = ordered[i].measurement_id
        following[i] = upcoming
    events: list[Seen] = []
    previous = None
    for i, seen in enumerate(ordered):
        if seen.measurement_id is not None and not isinstance(seen.measurement_id, str):  # SAME_MEASUREMENT
            events.append(replace(seen, measurement_id=previous or following[i]))
            continue
        previous = seen.measurement_id or previous
        events.append(seen)
    truncated = len(text) >= MAX_RECORD_BYTES
    return Session(source, session_id, tuple(events), out_of_order, final, late, duplicates, truncated, len(text))


def derived_body(session: Session, verdict: Verdict, idle_timeout: float | None = None) -> dict[str, Any]:
    """The body of the derived event that says a session's outcome (SESSION_FAILED, ...);
    `idle_timeout` is said in it when the session was abandoned for being idle."""
    code = DERIVED_CODE[verdict.outcome]
    events = session.events
    deciding = verdict.deciding
    reason_payload = dict(deciding.payload) if deciding else {}
    if deciding and deciding.measurement_id:
        reason_payload["measurementId"] = deciding.measurement_id
    measurement_ids = session.measurement_ids
    started, ended = events[0].timestamp, events[-1].timestamp
    return {
        "event": code,
        "severity": DERIVED[code].severity,
        "sessionId": session.session_id,
        "timestamp": ended,
        "derived": SESSION_SUFFIX,
        "payload": {
            "outcome": verdict.outcome,
            "reason": verdict.reason,
            "reasonSequence": deciding.sequence if deciding else None,
            "reasonPayload": reason_payload,
            "measurementId": measurement_ids[-1] if measurement_ids else None,
            "measurementIds": measurement_ids,
            "eventCount": len(events),
            "startedAt": started,
            "endedAt": ended,
            "durationSeconds": max(0, ended - started),
            "lastSnr": session.last_snr,
            "gaps": [list(gap) for gap in session.gaps],
            "outOfOrder": session.out_of_order,
            **({"idleSeconds": round(idle_timeout)} if verdict.reason == IDLE and idle_timeout else {}),
            "codes": [e.code for e in events],
            "timeline": [
                {
                    "sequence": e.sequence,
                    "event": e.code,
                    "severity": e.severity,
                    "timestamp": e.timestamp,
                    "payload": e.payload,
                }
                for e in events
            ],
        },
    }
