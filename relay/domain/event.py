"""A WMS event: parsed from the raw body, validated field by field, never re-serialised."""

import json
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from config.wms_events import CATALOGUE, DERIVED, SEVERITIES, EventType

MAX_SESSION_ID_LENGTH = 256
MAX_EVENT_CODE_LENGTH = 100
# Unix seconds up to the year 5138: a larger number is almost surely milliseconds.
MAX_TIMESTAMP = 10**11
MAX_SEQUENCE = 2**53 - 1  # what a JavaScript sender can count to exactly
# The vendor's MAC signs only the low byte of each character, so 'A' and 'Ł' sign alike: the
# fields that make an event's identity must be ASCII, or one captured request could be replayed
# under new ids. ASCII without control characters also keeps them safe to log.
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")


class InvalidEvent(Exception):
    """The body is not a valid WMS event; `error` is the API error code, `detail` names the field."""

    def __init__(self, error: str, detail: str):
        super().__init__(detail)
        self.error = error
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Event:
    """One validated event of one WMS session, as received from one source."""

    source: str
    session_id: str
    sequence: int
    timestamp: int
    severity: str
    code: str
    payload: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)  # the whole JSON object, extra keys included
    # For an event the relay derived (a session's outcome, a grouped message): what names it in
    # its id in place of a sequence, e.g. 'session' or 'group:ops-slack:1'; its sequence is -1.
    derived: str = ""

    @property
    def id(self) -> str:
        """The event id: '<source>:<sessionId>:<sequence>', also the dedup key; for a derived
        event '<source>:<sessionId>:<derived>'."""
        if self.derived:
            return f"{self.source}:{self.session_id}:{self.derived}"
        return event_id(self.source, self.session_id, self.sequence)

    @property
    def type(self) -> EventType | None:
        """The catalogue entry for this code (the relay's own for a derived event), or None when
        WMS sent a code we do not know."""
        return DERIVED.get(self.code) if self.derived else CATALOGUE.get(self.code)

    @property
    def known(self) -> bool:
        """Whether the code is in the vendor's documented catalogue (or is one the relay derives)."""
        return self.type is not None

    @property
    def measurement_id(self) -> str | None:
        """The measurement ID from the payload, when WMS had created one."""
        return self.payload.get("measurementId")


def group_suffix(destination: str, part: int) -> str:
    """What names a rule's grouped message in its id ('<source>:<sessionId>:group:<d>:part-<n>').

    A WMS event's id ends in ':<digits>' and a sessionId may hold ':', so a derived id must not:
    'wms:s1:group:ops-slack:1' would be the id of sequence 1 of session 's1:group:ops-slack'.
    """
    return f"group:{destination}:part-{part}"


def event_id(source: str, session_id: str, sequence: int) -> str:
    """The one spelling of an event id; sequence comes last so a ':' in sessionId stays unambiguous."""
    return f"{source}:{session_id}:{sequence}"


def parse_event(source: str, body: bytes, *, derived: bool = False) -> Event:
    """Decode and validate a WMS event body; raise InvalidEvent naming the first bad field.

    `derived`: the body is one the relay wrote itself (relay/domain/session.py): it has a
    `derived` name instead of a `sequence`, and a derived code. Ingest never passes it.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The vendor's MAC maps invalid bytes to U+FFFD, so such a body is not authenticated byte for byte.
        raise InvalidEvent("invalid_body", f"body is not valid UTF-8 (invalid byte at offset {exc.start})") from None
    try:
        data = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            "invalid_body", f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except _NotJsonNumber as exc:
        raise InvalidEvent("invalid_body", f"body is not valid JSON: {exc} is not a JSON number") from None
    except _DuplicateKey as exc:
        raise InvalidEvent(
            "invalid_body", f"body has the key {exc} twice in one object; each key must appear once"
        ) from None
    except RecursionError:
        raise InvalidEvent("invalid_body", "body is not valid JSON: nested too deeply") from None
    except ValueError:  # Python refuses integers of more than 4300 digits
        raise InvalidEvent("invalid_body", "body is not valid JSON: a number has too many digits") from None
    if not isinstance(data, dict):
        raise InvalidEvent("invalid_body", f"body must be a JSON object, got {_json_type(data)}")

    timestamp = _integer(data, "timestamp", "an integer (unix seconds)")
    if timestamp < 0 or timestamp >= MAX_TIMESTAMP:
        raise InvalidEvent(
            "invalid_event", f"timestamp: must be unix seconds (0 to {MAX_TIMESTAMP - 1}), got {timestamp}"
        )
    session_id = _identifier(data, "sessionId", "a non-empty string", MAX_SESSION_ID_LENGTH)
    suffix = ""
    if derived:
        suffix = _identifier(data, "derived", "a non-empty string", MAX_SESSION_ID_LENGTH)
        sequence = -1
    else:
        sequence = _integer(data, "sequence", "an integer >= 0")
        if not 0 <= sequence <= MAX_SEQUENCE:
            raise InvalidEvent("invalid_event", f"sequence: must be an integer >= 0, got {sequence}")
    severity = data.get("severity")
    if severity not in SEVERITIES:
        raise _field_error(data, "severity", "one of " + ", ".join(SEVERITIES))
    code = _identifier(data, "event", "a non-empty string (an event code such as WMS_LOADED)", MAX_EVENT_CODE_LENGTH)
    if (code in DERIVED) != derived:
        # The relay's own codes: a sender cannot forge a session's outcome or a grouped message.
        raise InvalidEvent(
            "invalid_event",
            f"event: {code} is a code the relay derives itself; WMS does not send it"
            if not derived
            else f"event: must be one of {', '.join(DERIVED)}, got {_shown(code)}",
        )
    payload = data.get("payload")
    if payload is None:  # absent, or null: WMS sends no payload for many events
        payload = {}
    elif not isinstance(payload, dict):
        raise _field_error(data, "payload", "an object")
    measurement_id = payload.get("measurementId")
    if measurement_id is not None and not isinstance(measurement_id, str):
        raise InvalidEvent(
            "invalid_event", f"payload.measurementId: must be a string, got {_json_type(measurement_id)}"
        )
    return Event(source, session_id, sequence, timestamp, severity, code, payload, data, suffix)


def _integer(data: dict, name: str, expected: str) -> int:
    value = data.get(name)
    # JSON true/false arrive as Python bools, which are ints: refuse them explicitly.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _field_error(data, name, expected)
    return value


class _NotJsonNumber(ValueError):
    """Python's json accepts NaN and Infinity; JSON does not, nor do strict consumers downstream."""


class _DuplicateKey(ValueError):
    """JSON leaves duplicate keys undefined: Python keeps the last, other parsers the first. The
    body is forwarded as bytes, so a receiver could read another sessionId or sequence than the
    one the relay deduplicated on: such a body is refused."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):  # the common case costs one comparison
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(repr(key) if len(key) <= 100 else f"{key[:100]!r}...")
            seen.add(key)
    return data


def _identifier(data: dict, name: str, expected: str, max_length: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise _field_error(data, name, expected)
    if not _PRINTABLE_ASCII.fullmatch(value):
        raise InvalidEvent("invalid_event", f"{name}: must be printable ASCII, got {_shown(value)}")
    if len(value) > max_length:
        raise InvalidEvent("invalid_event", f"{name}: must be at most {max_length} characters, got {len(value)}")
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise _NotJsonNumber(name)


def _field_error(data: dict, name: str, expected: str) -> InvalidEvent:
    if name not in data:
        return InvalidEvent("invalid_event", f"{name}: required, must be {expected}")
    return InvalidEvent("invalid_event", f"{name}: must be {expected}, got {_shown(data[name])}")


def _shown(value: Any) -> str:
    """A value as quoted in an error: short, and escaped so that it cannot forge a log line."""
    shown = ascii(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else _json_type(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


# Built once: json.loads() with options builds a decoder per call, a third of the parse's time.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
