"""Derived session events and grouped messages laid out for people, in one shape for Slack and mail.

The relay derives two kinds of event (`Event.derived`): a session's outcome ('session':
SESSION_COMPLETED, SESSION_FAILED, SESSION_ABANDONED) and one rule's grouped message of a
session's events ('group:<destination>:part-<n>', EVENT_GROUP). Like summary.py, every text here is
readable() and not yet escaped: each adapter escapes it for its format. The payloads are the
relay's own, but built from event data, and are read defensively: a field of an unexpected type
shows as missing, never as an error that would cost the alert.
"""

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from config.wms_events import CATALOGUE, SESSION_ABANDONED, SESSION_COMPLETED, SESSION_FAILED
from relay.domain.event import MAX_TIMESTAMP, Event
from workers.destinations.summary import (
    clip,
    duration_text,
    key_payload,
    one_line,
    payload_values,
    plural,
    render_value,
    severity_of,
    utc_clock,
    utc_time,
)

SESSION = "session"
GROUP_PREFIX = "group:"
OUTCOMES = {SESSION_COMPLETED: "completed", SESSION_FAILED: "failed", SESSION_ABANDONED: "abandoned"}
# What an abandoning event means, said the way a person would.
ABANDONED_BY = {"PAGE_UNLOADED": "tab closed or navigated away"}
HEADLINE_VALUES_MAX = 80  # the reason's payload values in a headline
VALUE_MAX = 300  # one payload value in a line, as slack.py cuts them
ID_MAX = 64  # a session or measurement id inside a sentence
OUTCOME_MAX = 40  # the payload's word for an outcome this module does not know


def is_session(event: Event) -> bool:
    """Whether `event` is a session's outcome (SESSION_COMPLETED, _FAILED or _ABANDONED)."""
    return event.derived == SESSION


def is_group(event: Event) -> bool:
    """Whether `event` is one rule's grouped message of a session's events (EVENT_GROUP)."""
    return event.derived.startswith(GROUP_PREFIX)


@dataclass(frozen=True)
class Row:
    """One line of a timeline: an event, a gap in its sequence numbers, or lines left out."""

    kind: Literal["event", "gap", "omitted"]
    text: str = ""  # a gap's or an omission's whole line
    sequence: str = ""  # '#6'
    offset: str = ""  # '+0:32' from the session's start (session timelines)
    clock: str = ""  # '12:49:52' UTC
    code: str = ""
    severity: str = "INFO"
    detail: str = ""  # the key payload: 'Constraint: FACE_NOT_CENTERED'
    deciding: bool = False  # the event that decided the session's outcome


@dataclass(frozen=True)
class Reason:
    """Why a session ended as it did: the deciding event, when there is one."""

    code: str  # 'CONSTRAINT_VIOLATION'; '' when no event decided (an idle session)
    at: str  # '#6, +0:32'
    detail: str  # 'Constraint: FACE_NOT_CENTERED', or what the code means

    def sentence(self, escape: Callable[[str], str] = str, code: Callable[[str], str] = str) -> str:
        """'CODE at #6, +0:32 — detail', or 'detail (last event ...)' when no event decided; each
        part through `escape`, the code through `code` as well (a layout's own markup)."""
        if self.code:
            at = f" at {escape(self.at)}" if self.at else ""
            return f"{code(escape(self.code))}{at}" + (f" — {escape(self.detail)}" if self.detail else "")
        return escape(self.detail) + (f" (last event {escape(self.at)})" if self.at else "")


@dataclass(frozen=True)
class SessionView:
    """A session's outcome: a headline, why, the key facts, then the timeline."""

    outcome: str  # completed | failed | abandoned, or the payload's word for another
    severity: str
    headline: str  # 'Measurement failed: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED)'
    lead: str  # 'Measurement f0c8ca8d failed after 40 s.'
    reason: Reason | None
    values: str  # the deciding event's payload values: 'FACE_NOT_CENTERED'
    duration: str  # '40 s', or '' when the payload does not say
    facts: list[tuple[str, str]]
    rows: list[Row]
    session: str
    event_id: str
    note: str  # '' or what the timeline does not hold


@dataclass(frozen=True)
class GroupView:
    """A rule's grouped message: the session's matched events, as one message or a follow-up."""

    severity: str
    headline: str  # '3 events in session s-1' or 'follow-up: 2 more events for session s-1'
    rule: str
    measurement: str  # '' when none
    follow_up: bool  # part 2 and later: more events after the first message
    count: int  # the events it says, listed or not
    rows: list[Row]
    session: str
    event_id: str


def session_view(event: Event) -> SessionView:
    """Lay out a derived session event (SESSION_COMPLETED, SESSION_FAILED, SESSION_ABANDONED)."""
    p = event.payload
    outcome = OUTCOMES.get(event.code) or clip(one_line(str(p.get("outcome") or "ended")), OUTCOME_MAX)
    started, ended = _time(p.get("startedAt")), _time(p.get("endedAt"))
    duration = _int(p.get("durationSeconds"))
    if duration is None and started is not None and ended is not None:
        duration = ended - started
    timeline = [e for e in _list(p.get("timeline")) if isinstance(e, dict)]
    origin = started if started is not None else next((_time(e.get("timestamp")) for e in timeline), None)
    reason_sequence = _int(p.get("reasonSequence"))
    rows = _session_rows(timeline, _gaps(p.get("gaps")), origin, reason_sequence)
    measurement = _text(p.get("measurementId"))
    reason = _reason(event, outcome, reason_sequence, origin, timeline, ended)
    values = payload_values(_dict(p.get("reasonPayload")), HEADLINE_VALUES_MAX)
    headline = _headline(outcome, duration, reason, values)
    took = f" after {duration_text(duration)}" if duration is not None else ""
    subject = f"Measurement {clip(measurement, ID_MAX)}" if measurement else "The session"
    if outcome == "completed":
        lead = f"{subject} completed" + (f" in {duration_text(duration)}." if duration is not None else ".")
    elif outcome == "abandoned" and reason is not None:
        lead = f"{subject} was abandoned{took}: {reason.detail if not reason.code else _abandoned_by(reason.code)}."
    else:
        lead = f"{subject} {outcome}{took}." + ("" if measurement else " No measurement had been created.")
    count = _int(p.get("eventCount"))
    held = sum(r.kind == "event" for r in rows)
    note = f"the timeline holds {held} of the session's {count} events" if count is not None and count > held else ""
    return SessionView(
        outcome=outcome,
        severity=severity_of(event.severity),
        headline=headline,
        lead=lead,
        reason=reason,
        values=values,
        duration=duration_text(duration) if duration is not None else "",
        facts=_facts(event, measurement, duration, started, ended, count),
        rows=rows,
        session=one_line(event.session_id),
        event_id=one_line(event.id),
        note=note,
    )


def group_view(event: Event) -> GroupView:
    """Lay out a grouped message (EVENT_GROUP): the first of a session's, or a follow-up."""
    p = event.payload
    measurement = _text(p.get("measurementId"))
    skip = ("measurementId",)
    rows = []
    for e in (e for e in _list(p.get("events")) if isinstance(e, dict)):
        payload = _dict(e.get("payload"))
        # Each event's own measurementId only when it is not the one the message names.
        own = _text(payload.get("measurementId"))
        detail = key_payload(payload, VALUE_MAX, skip if own == measurement else ())
        rows.append(_event_row(e, detail, None, deciding=False))
    # Past what one message lists, the relay counts events without listing them: they count here too.
    omitted = max(_int(p.get("omitted")) or 0, 0)
    if omitted:
        rows.append(Row("omitted", text=f"… {plural(omitted, 'more event')} not listed"))
    count = len(rows) - bool(omitted) + omitted
    part = _int(p.get("part")) or 1
    session = one_line(event.session_id)
    if part >= 2:
        headline = f"follow-up: {plural(count, 'more event')} for session {clip(session, ID_MAX)}"
    else:
        headline = f"{plural(count, 'event')} in session {clip(session, ID_MAX)}"
    return GroupView(
        severity=severity_of(event.severity),
        headline=headline,
        rule=_text(p.get("rule")),
        measurement=measurement,
        follow_up=part >= 2,
        count=count,
        rows=rows,
        session=session,
        event_id=one_line(event.id),
    )


def show_command(session: str) -> str:
    """The command that shows a session in full, safe to paste into a shell: a sessionId is the
    sender's text, and `$(...)` in one must stay text."""
    return f"relay sessions show {shlex.quote(session)}"


def shown(rows: list[Row], head: int, tail: int, around: int = 2) -> list[Row]:
    """`rows` as a message can hold them: the first `head`, the last `tail`, and `around` either side
    of the deciding event; each run left out becomes one row saying how many lines it held."""
    keep = set(range(min(head, len(rows)))) | set(range(max(len(rows) - tail, 0), len(rows)))
    for i, row in enumerate(rows):
        if row.deciding:
            keep |= set(range(max(i - around, 0), min(i + around + 1, len(rows))))
    out: list[Row] = []
    run: list[Row] = []
    for i, row in enumerate(rows):
        if i in keep:
            out += _omitted(run)
            run = []
            out.append(row)
        else:
            run.append(row)
    return out + _omitted(run)


def _omitted(run: list[Row]) -> list[Row]:
    # One line left out is shown instead: its marker would take the same line.
    if len(run) <= 1:
        return run
    events = sum(r.kind == "event" for r in run)
    gaps = len(run) - events
    if gaps:
        text = f"… {len(run)} lines left out ({plural(events, 'event')}, {plural(gaps, 'gap')})"
    else:
        text = f"… {plural(events, 'event')} left out"
    return [Row("omitted", text=text)]


def _session_rows(
    timeline: list[dict[str, Any]], gaps: list[tuple[int, int]], origin: int | None, reason_sequence: int | None
) -> list[Row]:
    rows: list[Row] = []
    pending = sorted(gaps)
    for e in timeline:
        sequence = _int(e.get("sequence"))
        # A gap goes before the first event that follows it.
        while pending and sequence is not None and sequence > pending[0][1]:
            rows.append(_gap_row(*pending.pop(0)))
        detail = key_payload(_dict(e.get("payload")), VALUE_MAX)
        deciding = reason_sequence is not None and sequence == reason_sequence
        rows.append(_event_row(e, detail, origin, deciding))
    return rows + [_gap_row(*gap) for gap in pending]


def _event_row(e: dict[str, Any], detail: str, origin: int | None, deciding: bool) -> Row:
    sequence, timestamp = _int(e.get("sequence")), _time(e.get("timestamp"))
    return Row(
        "event",
        sequence=f"#{sequence}" if sequence is not None else "#?",
        offset=_offset(timestamp - origin) if timestamp is not None and origin is not None else "",
        clock=utc_clock(timestamp) if timestamp is not None else "",
        code=one_line(_text(e.get("event")) or "(no code)"),
        severity=severity_of(e.get("severity")),
        detail=detail,
        deciding=deciding,
    )


def _gap_row(first: int, last: int) -> Row:
    span = f"{first}–{last}" if last > first else f"{first}"
    return Row("gap", text=f"… {plural(last - first + 1, 'event')} missing ({span})")


def _offset(seconds: int) -> str:
    """'+0:32', '+12:05', '+1:02:03': time since the session's first event."""
    sign = "-" if seconds < 0 else "+"
    minutes, secs = divmod(abs(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}" if hours else f"{sign}{minutes}:{secs:02d}"


def _reason(
    event: Event,
    outcome: str,
    sequence: int | None,
    origin: int | None,
    timeline: list[dict[str, Any]],
    ended: int | None,
) -> Reason | None:
    p = event.payload
    code = _text(p.get("reason"))
    if outcome == "completed" or not code:
        return None
    if code == "idle":
        # idleSeconds: the idle time that ran out (sessions.idle_timeout), when the relay says it.
        idle = _int(p.get("idleSeconds"))
        last = _int(timeline[-1].get("sequence")) if timeline else None
        at = f"#{last}" if last is not None else ""
        if idle is not None and idle > 0:
            return Reason("", at, f"no event for {duration_text(idle)}")
        return Reason("", at, f"no event after {utc_clock(ended)} UTC" if ended is not None else "no further event")
    at = _at(sequence, origin, timeline)
    payload = key_payload(_dict(p.get("reasonPayload")), VALUE_MAX)
    known = CATALOGUE.get(code)
    return Reason(one_line(code), at, payload or (known.description if known else ""))


def _at(sequence: int | None, origin: int | None, timeline: list[dict[str, Any]]) -> str:
    """Where the deciding event stands: '#6, +0:32'."""
    if sequence is None:
        return ""
    times = [_time(e.get("timestamp")) for e in timeline if _int(e.get("sequence")) == sequence]
    when = times[0] if times else None
    return f"#{sequence}" + (f", {_offset(when - origin)}" if when is not None and origin is not None else "")


def _headline(outcome: str, duration: int | None, reason: Reason | None, values: str) -> str:
    if outcome == "completed":
        return "Measurement completed" + (f" in {duration_text(duration)}" if duration is not None else "")
    if outcome == "abandoned":
        if reason is None:
            return "Session abandoned"
        return f"Session abandoned: {_abandoned_by(reason.code) if reason.code else reason.detail}"
    if reason is None:
        return f"Measurement {outcome}"
    return f"Measurement {outcome}: {reason.code}" + (f" ({values})" if values else "")


def _abandoned_by(code: str) -> str:
    return ABANDONED_BY.get(code, code)


def _facts(
    event: Event, measurement: str, duration: int | None, started: int | None, ended: int | None, count: int | None
) -> list[tuple[str, str]]:
    p = event.payload
    ran = duration_text(duration) if duration is not None else "unknown"
    if started is not None and ended is not None:
        same_day = utc_time(started)[:10] == utc_time(ended)[:10]
        until = utc_clock(ended) if same_day else utc_time(ended)
        ran += f" ({utc_time(started)} – {until} UTC)"
    snr = p.get("lastSnr")
    facts = [
        ("Measurement", measurement or "none created"),
        ("Duration", ran),
        ("Last SNR", one_line(render_value(snr)) if snr is not None else "none received"),
        ("Session", clip(one_line(event.session_id), 2 * ID_MAX)),
    ]
    gaps = _gaps(p.get("gaps"))
    missing = sum(last - first + 1 for first, last in gaps)
    events = [plural(count, "event") if count is not None else "events: unknown"]
    if gaps:
        events.append(f"{plural(len(gaps), 'gap')} ({missing} missing)")
    late = _int(p.get("outOfOrder"))
    if late:
        events.append(f"{late} out of order")
    facts.append(("Events", " · ".join(events)))
    ids = [one_line(i) for i in _list(p.get("measurementIds")) if isinstance(i, str)]
    if len(ids) > 1:
        facts.append(("Measurements", clip(", ".join(ids), 2 * VALUE_MAX)))
    return facts


def _gaps(value: Any) -> list[tuple[int, int]]:
    gaps = []
    for gap in _list(value):
        if isinstance(gap, list) and len(gap) == 2:
            first, last = _int(gap[0]), _int(gap[1])
            if first is not None and last is not None and last >= first:
                gaps.append((first, last))
    return gaps


def _int(value: Any) -> int | None:
    # bool is an int to Python, never a count to us; floats of whole seconds are taken as they are.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if math.isfinite(value) and abs(value) < 2**53 else None


def _time(value: Any) -> int | None:
    """Unix seconds as an event may hold them (Event's own bounds): any other number is no time at all."""
    seconds = _int(value)
    return seconds if seconds is not None and 0 <= seconds < MAX_TIMESTAMP else None


def _text(value: Any) -> str:
    return one_line(value) if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
