"""Derived events as the relay builds them (relay/domain/session.py), for the rendering tests."""

import re
from typing import Any

from relay.domain.event import Event, group_suffix

MEASUREMENT = "f0c8ca8d-111d-4dcf-a69d-46ed39a2db06"
STARTED = 1764499960  # 2025-11-30 10:52:40 UTC
SEVERITY = {"SESSION_COMPLETED": "INFO", "SESSION_FAILED": "ERROR", "SESSION_ABANDONED": "WARN"}
OUTCOME = {"SESSION_COMPLETED": "completed", "SESSION_FAILED": "failed", "SESSION_ABANDONED": "abandoned"}


def line(
    sequence: int, code: str, severity: str = "INFO", offset: int = 0, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One event of a timeline or group, `offset` seconds after STARTED."""
    return {
        "sequence": sequence,
        "event": code,
        "severity": severity,
        "timestamp": STARTED + offset,
        "payload": payload or {},
    }


# A constraint violation mid-scan: 8 events received, 3 and 4 never arrived, 7 arrived before 6.
FAILED_TIMELINE = [
    line(0, "WMS_LOADED"),
    line(1, "CONFIGURATION_LOADED", offset=1),
    line(2, "CAMERA_PERMISSION_GRANTED", offset=4),
    line(5, "MEASUREMENT_CREATED", offset=9),
    line(6, "INTERMEDIATE_RESULTS", offset=21, payload={"snr": 4.2, "sequence": 1}),
    line(7, "CONSTRAINT_VIOLATION", "ERROR", 32, {"constraint": "FACE_NOT_CENTERED"}),
    line(8, "MEASUREMENT_CANCELED", "WARN", offset=33),
    line(9, "PAGE_UNLOADED", offset=40),
]


def session_event(
    code: str = "SESSION_FAILED",
    session: str = "s-1",
    timeline: list[dict[str, Any]] | None = None,
    **payload: Any,
) -> Event:
    """A derived session event; `payload` overrides the fields a failed session's would have."""
    timeline = FAILED_TIMELINE if timeline is None else timeline
    ended = max((e["timestamp"] for e in timeline), default=STARTED)
    body: dict[str, Any] = {
        "outcome": OUTCOME.get(code, "failed"),
        "reason": "CONSTRAINT_VIOLATION",
        "reasonSequence": 7,
        "reasonPayload": {"constraint": "FACE_NOT_CENTERED", "measurementId": MEASUREMENT},
        "measurementId": MEASUREMENT,
        "measurementIds": [MEASUREMENT],
        "eventCount": len(timeline),
        "startedAt": STARTED,
        "endedAt": ended,
        "durationSeconds": ended - STARTED,
        "lastSnr": 4.2,
        "gaps": [[3, 4]],
        "outOfOrder": 1,
        "codes": [e["event"] for e in timeline],
        "timeline": timeline,
    }
    body.update(payload)
    return Event("wms", session, -1, ended, SEVERITY.get(code, "ERROR"), code, body, {}, derived="session")


def group_event(
    events: list[dict[str, Any]], part: int = 1, session: str = "s-1", severity: str = "ERROR", **payload: Any
) -> Event:
    """A grouped message of `events` for the destination ops-slack."""
    body = {"rule": "errors", "part": part, "measurementId": MEASUREMENT, "events": events, **payload}
    timestamp = max((e["timestamp"] for e in events), default=STARTED)
    derived = group_suffix("ops-slack", part)
    return Event("wms", session, -1, timestamp, severity, "EVENT_GROUP", body, {}, derived=derived)


def wms_event(code: str, severity: str, session: str = "s-9", sequence: int = 3, offset: int = 0, **payload) -> Event:
    """One of WMS's own events."""
    return Event("wms", session, sequence, STARTED + offset, severity, code, payload)


def html_rows(html: str) -> list[tuple[str, str]]:
    """(label, value) of every fact row of a mail's HTML part, as written (escaped)."""
    return re.findall(r"<th [^>]*>([^<]*)</th><td [^>]*>([^<]*)</td>", html)


def html_cells(html: str) -> list[str]:
    """The text of every table cell of a mail's HTML part whose text is not markup, as written."""
    return re.findall(r"<t[dh] [^>]*>([^<]*)</t[dh]>", html)
