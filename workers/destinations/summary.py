"""What a person needs to know about an event, in one shape for every chat and mail message."""

import time
from dataclasses import dataclass

from relay.domain.event import Event

SEVERITY_EMOJI = {"INFO": ":large_blue_circle:", "WARN": ":large_orange_circle:", "ERROR": ":red_circle:"}
SEVERITY_COLOUR = {"INFO": "#2e7bcf", "WARN": "#e8a317", "ERROR": "#d0312d"}
# Readable names for the payload fields of the catalogue; any other field shows under its own name.
PAYLOAD_LABELS = {
    "measurementId": "Measurement",
    "snr": "SNR",
    "sequence": "Result sequence",
    "constraint": "Constraint",
    "errorCode": "Error code",
    "visibility": "Visibility",
}


@dataclass(frozen=True)
class Summary:
    """An event laid out for people: a title, the key facts, and the payload by name."""

    title: str  # e.g. "CONSTRAINT_VIOLATION"
    severity: str
    description: str  # from the catalogue, or a note that the code is unknown
    facts: list[tuple[str, str]]  # (label, value), always in the same order
    payload: list[tuple[str, str]]  # (label, value) for every payload field but measurementId


def summarize(event: Event) -> Summary:
    """Lay out `event` for a chat message or a mail."""
    event_type = event.type
    description = event_type.description if event_type else "Not a documented WMS event code (WMS may have added it)"
    facts = [
        ("Severity", event.severity),
        ("Session", event.session_id),
        ("Measurement", event.measurement_id or "none yet"),
        ("Sequence", str(event.sequence)),
        ("Time (UTC)", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.timestamp))),
        ("Source", event.source),
    ]
    payload = [(PAYLOAD_LABELS.get(k, k), _text(v)) for k, v in event.payload.items() if k != "measurementId"]
    return Summary(event.code, event.severity, description, facts, payload)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)
