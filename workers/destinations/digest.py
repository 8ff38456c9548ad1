"""A digest laid out for people: several deliveries waiting for one rate-limited destination, as
one message that counts them all and gives each one line.

The events may be any mix: WMS's own, sessions' outcomes, grouped messages. Nothing is left out
of the counts; a format that cannot show every line says how many it left out and where to see
them. Texts are readable() and not yet escaped, as in summary.py.
"""

from dataclasses import dataclass

from config.wms_events import EVENT_GROUP, SESSION_ABANDONED, SESSION_COMPLETED, SESSION_FAILED
from relay.domain.event import Event
from workers.destinations.session_view import group_view, is_group, is_session, session_view
from workers.destinations.summary import (
    SEVERITY_RANK,
    duration_text,
    highest_severity,
    one_line,
    payload_values,
    plural,
    severity_of,
    utc_time,
)

LINE_VALUES_MAX = 120  # a WMS event's payload values in a digest's line
CODES_SHOWN = 3  # of a grouped message's codes
# The kinds of line, in the order the headline counts them: (code, singular, plural).
KINDS = [
    (SESSION_FAILED, "failed session", "failed sessions"),
    (SESSION_ABANDONED, "abandoned session", "abandoned sessions"),
    (SESSION_COMPLETED, "completed session", "completed sessions"),
    (EVENT_GROUP, "grouped message", "grouped messages"),
]


@dataclass(frozen=True)
class DigestLine:
    """One folded delivery: 'session s-1 — SESSION_FAILED: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED), 40 s'."""

    severity: str
    code: str
    session: str
    text: str  # everything after the session
    time: str  # UTC, '2025-11-30 10:53:20'
    event_id: str


@dataclass(frozen=True)
class Digest:
    """Every folded delivery, most severe first, under one headline that counts them all."""

    severity: str  # the highest of the events'
    headline: str  # '12 failed sessions, 3 other events in the last 40 s'
    lines: list[DigestLine]


def digest(events: list[Event]) -> Digest:
    """Lay out `events` as one digest; raises ValueError when there are none (nothing to say)."""
    if not events:
        raise ValueError("a digest needs at least one event, got none")
    # Most severe first, then in time: a cut list keeps the failures and leaves out the routine.
    ordered = sorted(events, key=lambda e: (-SEVERITY_RANK[severity_of(e.severity)], e.timestamp))
    lines = [_line(e) for e in ordered]
    return Digest(highest_severity([e.severity for e in events]), _headline(events), lines)


def more_hint(hidden: list[DigestLine]) -> str:
    """The `relay` command that lists what a cut digest left out."""
    codes = {line.code for line in hidden}
    if SESSION_FAILED in codes:
        return "relay sessions list --outcome failed"
    if SESSION_ABANDONED in codes:
        return "relay sessions list --outcome abandoned"
    return "relay sessions list"


def _headline(events: list[Event]) -> str:
    counts = {code: 0 for code, _, _ in KINDS}
    others = 0
    for e in events:
        kind = _kind(e)
        if kind in counts:
            counts[kind] += 1
        else:
            others += 1
    parts = [plural(counts[code], one, many) for code, one, many in KINDS if counts[code]]
    if others:
        parts.append(plural(others, "other event" if parts else "event"))
    first, last = min(e.timestamp for e in events), max(e.timestamp for e in events)
    window = f"in the last {duration_text(last - first)}" if last > first else f"at {utc_time(last)} UTC"
    return f"{', '.join(parts)} {window}"


def _kind(event: Event) -> str:
    """The digest's kind of `event`: its derived code, or '' for one of WMS's own."""
    if is_session(event) and event.code in (SESSION_FAILED, SESSION_ABANDONED, SESSION_COMPLETED):
        return event.code
    if is_group(event):
        return EVENT_GROUP
    return ""


def _line(event: Event) -> DigestLine:
    kind = _kind(event)
    code = one_line(event.code)
    severity = severity_of(event.severity)
    if kind == EVENT_GROUP:
        group = group_view(event)
        codes = [r.code for r in group.rows if r.kind == "event"]
        more = group.count - min(len(codes), CODES_SHOWN)
        named = ", ".join([*codes[:CODES_SHOWN], *([f"+{more}"] if more else [])])
        count = plural(group.count, "more event" if group.follow_up else "event")
        text = f"{code}{' follow-up' if group.follow_up else ''} ({severity}), {count}" + (
            f": {named}" if named else ""
        )
    elif kind:
        view = session_view(event)
        why = ""
        if view.reason is not None:
            # The reason's code as the relay names it ('idle' when no event decided): a line is a glance.
            why = f": {view.reason.code or 'idle'}" + (f" ({view.values})" if view.values else "")
        text = f"{code}{why}" + (f", {view.duration}" if view.duration else "")
    else:
        values = payload_values(event.payload, LINE_VALUES_MAX)
        text = f"{code} ({severity})" + (f": {values}" if values else "")
    session = one_line(event.session_id)
    return DigestLine(severity, kind or code, session, text, utc_time(event.timestamp), one_line(event.id))
