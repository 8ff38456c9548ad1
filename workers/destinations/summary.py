"""What a person needs to know about an event, in one shape for every chat and mail message.

Every text here is safe to show as it is: the formats' own escaping (Slack mrkdwn, HTML) is the
adapters', but what no format can show is replaced here, once, for all of them (`readable`).
"""

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from relay.domain.event import Event

SEVERITY_EMOJI = {"INFO": ":large_blue_circle:", "WARN": ":large_orange_circle:", "ERROR": ":red_circle:"}
SEVERITY_COLOUR = {"INFO": "#2e7bcf", "WARN": "#e8a317", "ERROR": "#d0312d"}
# Text on a SEVERITY_COLOUR background: white reads poorly on amber, so WARN's is dark.
SEVERITY_INK = {"INFO": "#ffffff", "WARN": "#2b2000", "ERROR": "#ffffff"}
# A light shade of each colour, for a row or box that must stand out without shouting.
SEVERITY_TINT = {"INFO": "#eaf2fb", "WARN": "#fdf3df", "ERROR": "#fbe9e8"}
SEVERITY_RANK = {"INFO": 0, "WARN": 1, "ERROR": 2}
# Readable names for the payload fields of the catalogue; any other field shows under its own name.
PAYLOAD_LABELS = {
    "measurementId": "Measurement",
    "snr": "SNR",
    "sequence": "Result sequence",
    "constraint": "Constraint",
    "errorCode": "Error code",
    "visibility": "Visibility",
}
REPLACEMENT = "\ufffd"
# What cannot be shown as itself: lone surrogates (valid in JSON, not encodable as UTF-8, so no mail
# or Slack message could carry them); control characters but tab and newline (a NUL, an escape
# sequence, a lone CR that ends a mail's line); and the bidi embeddings, overrides and isolates,
# which reorder what follows them, so that a value could read as another one.
_UNSHOWABLE = re.compile("[\ud800-\udfff\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile("[\t\n\u2028\u2029]")


@dataclass(frozen=True)
class Summary:
    """An event laid out for people: a title, the key facts, and the payload by name; all readable."""

    title: str  # e.g. "CONSTRAINT_VIOLATION"
    severity: str
    description: str  # from the catalogue, or a note that the code is unknown
    facts: list[tuple[str, str]]  # (label, value), always in the same order
    payload: list[tuple[str, str]]  # (label, value) for every payload field but measurementId
    event_id: str


def summarize(event: Event) -> Summary:
    """Lay out `event` for a chat message or a mail."""
    event_type = event.type
    description = event_type.description if event_type else "Not a documented WMS event code (WMS may have added it)"
    facts = [
        ("Severity", event.severity),
        ("Session", readable(event.session_id)),
        ("Measurement", readable(event.measurement_id) if event.measurement_id else "none yet"),
        ("Sequence", str(event.sequence)),
        ("Time (UTC)", utc_time(event.timestamp)),
        ("Source", event.source),
    ]
    payload = [
        (one_line(PAYLOAD_LABELS.get(k, k)), readable(render_value(v)))
        for k, v in event.payload.items()
        if k != "measurementId"
    ]
    return Summary(one_line(event.code), event.severity, description, facts, payload, readable(event.id))


def severity_of(value: object) -> str:
    """`value` if it is a severity, else INFO: derived payloads are ours, but a display must not fail on them."""
    return value if isinstance(value, str) and value in SEVERITY_RANK else "INFO"


def highest_severity(severities: list[str]) -> str:
    """The most severe of `severities` (INFO when there are none)."""
    return max((severity_of(s) for s in severities), key=SEVERITY_RANK.__getitem__, default="INFO")


def utc_time(timestamp: int) -> str:
    """Unix seconds as '2023-07-18 12:49:37' (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def utc_clock(timestamp: int) -> str:
    """Unix seconds as '12:49:37' (UTC): for lines of one session, whose date is said once."""
    return time.strftime("%H:%M:%S", time.gmtime(timestamp))


def duration_text(seconds: float) -> str:
    """A duration as people say it: '40 s', '1 min 5 s', '10 min', '2 h 3 min', '3 d 4 h'."""
    total = max(round(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    # The two largest units are enough for an alert; '1 h 0 min 3 s' says nothing '1 h' does not.
    units = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    first = next((i for i, (n, _) in enumerate(units) if n), len(units) - 1)
    return " ".join(f"{n} {unit}" for n, unit in units[first : first + 2] if n or (n == total == 0))


def plural(count: int, word: str, words: str = "") -> str:
    """'1 event', '2 events'; `words` when the plural is not `word` + 's'."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, '…' included, when longer: for reading, not for a format's limit."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def key_payload(payload: dict[str, Any], value_max: int, skip: tuple[str, ...] = ("measurementId",)) -> str:
    """A payload on one line, 'Constraint: FACE_NOT_CENTERED · SNR: 4.2', each value cut to `value_max`."""
    return " · ".join(
        f"{one_line(PAYLOAD_LABELS.get(k, k))}: {clip(one_line(render_value(v)), value_max)}"
        for k, v in payload.items()
        if k not in skip
    )


def payload_values(payload: dict[str, Any], limit: int) -> str:
    """A payload's values but measurementId, 'FACE_NOT_CENTERED, 4.2', cut to `limit`: for a headline."""
    values = ", ".join(one_line(render_value(v)) for k, v in payload.items() if k != "measurementId")
    return clip(values, limit)


def readable(text: str) -> str:
    """`text` with every character that cannot be shown as itself replaced by U+FFFD."""
    return _UNSHOWABLE.sub(REPLACEMENT, text)


def one_line(text: str) -> str:
    """`readable(text)` on one line: for labels and mail headers, where a line break would forge a
    new label or header."""
    return _LINE_BREAKS.sub(" ", readable(text))


def render_value(value: Any) -> str:
    """A JSON value as people read it: a string as itself, anything else as compact JSON.

    Iterative, not recursive: a payload may nest as deeply as the parser allows, and the worker
    renders it many frames down, where recursion would hit Python's limit.
    """
    if isinstance(value, str):
        return value
    out: list[str] = []
    # A stack of what is left to write: values, and the literal text between them.
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Literal):
            out.append(item)
        elif isinstance(item, dict):
            parts: list[Any] = [_Literal("{")]
            for i, (key, inner) in enumerate(item.items()):
                parts += [_Literal((", " if i else "") + _json_scalar(str(key)) + ": "), inner]
            stack += reversed([*parts, _Literal("}")])
        elif isinstance(item, (list, tuple)):
            parts = [_Literal("[")]
            for i, inner in enumerate(item):
                parts += [_Literal(", "), inner] if i else [inner]
            stack += reversed([*parts, _Literal("]")])
        else:
            out.append(_json_scalar(item))
    return "".join(out)


class _Literal(str):
    """Text that render_value writes as it is (brackets, separators, keys), told apart from values."""


def _json_scalar(value: Any) -> str:
    if isinstance(value, (str, bool, int, float)) or value is None:
        # ensure_ascii=False: a reader wants 'café', not 'caf\u00e9'.
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(str(value), ensure_ascii=False)  # a template may hand in anything
