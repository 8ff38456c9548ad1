"""parse_event: every documented code is accepted; every bad field is named exactly."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.wms_events import CATALOGUE
from relay.domain.event import InvalidEvent, parse_event
from relay.domain.samples import sample_event, to_body


def test_the_catalogue_has_the_19_documented_codes():
    assert len(CATALOGUE) == 19


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_documented_code_parses_with_its_documented_severity(code):
    event = parse_event("wms", to_body(sample_event(code, "sess-1", 4, timestamp=1689684577)))
    assert (event.code, event.severity, event.known) == (code, CATALOGUE[code].severity, True)
    assert (event.id, event.session_id, event.sequence, event.timestamp) == ("wms:sess-1:4", "sess-1", 4, 1689684577)
    assert set(event.payload) == set(CATALOGUE[code].payload_fields)


def test_an_unknown_code_is_accepted_and_marked_unknown():
    event = parse_event("wms", to_body(sample_event("NEW_THING_WMS_ADDED", "s", 0, timestamp=1)))
    assert event.code == "NEW_THING_WMS_ADDED"
    assert event.known is False and event.type is None


def test_extra_fields_and_payload_fields_are_kept():
    body = dict(sample_event("API_ERROR", "s", 1, timestamp=1), configId="cfg-9")
    body["payload"]["retryable"] = False
    event = parse_event("wms", to_body(body))
    assert event.fields["configId"] == "cfg-9"
    assert event.payload["retryable"] is False


def test_session_id_with_colons_keeps_an_unambiguous_id():
    event = parse_event("wms", to_body(sample_event("WMS_LOADED", "a:b:1", 2, timestamp=1)))
    assert event.id == "wms:a:b:1:2"


def test_null_payload_means_no_payload():
    body = dict(sample_event("WMS_LOADED", "s", 0, timestamp=1), payload=None)
    assert parse_event("wms", to_body(body)).payload == {}


def _with(**changes):
    event = sample_event("MEASUREMENT_CREATED", "sess-1", 0, timestamp=1689684577)
    for key, value in changes.items():
        if value is _DROP:
            del event[key]
        else:
            event[key] = value
    return to_body(event)


_DROP = object()


@pytest.mark.parametrize(
    ("body", "error", "detail"),
    [
        (b"\xff{}", "invalid_body", "body is not valid UTF-8 (invalid byte at offset 0)"),
        (b'{"a":"\xe4\xb8"}', "invalid_body", "body is not valid UTF-8 (invalid byte at offset 6)"),
        (b"", "invalid_body", "body is not valid JSON: Expecting value at line 1 column 1"),
        (
            b'{"timestamp": 1,',
            "invalid_body",
            "body is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 17",
        ),
        (b"[1, 2]", "invalid_body", "body must be a JSON object, got an array"),
        (b'"text"', "invalid_body", "body must be a JSON object, got a string"),
        (_with(timestamp=_DROP), "invalid_event", "timestamp: required, must be an integer (unix seconds)"),
        (
            _with(timestamp="2023-07-18"),
            "invalid_event",
            "timestamp: must be an integer (unix seconds), got '2023-07-18'",
        ),
        (_with(timestamp=1.5), "invalid_event", "timestamp: must be an integer (unix seconds), got 1.5"),
        (_with(timestamp=True), "invalid_event", "timestamp: must be an integer (unix seconds), got a boolean"),
        (_with(timestamp=-1), "invalid_event", "timestamp: must be unix seconds (0 to 99999999999), got -1"),
        (
            _with(timestamp=1689684577000),
            "invalid_event",
            "timestamp: must be unix seconds (0 to 99999999999), got 1689684577000",
        ),
        (_with(sessionId=_DROP), "invalid_event", "sessionId: required, must be a non-empty string"),
        (_with(sessionId=""), "invalid_event", "sessionId: must be a non-empty string, got ''"),
        (_with(sessionId=42), "invalid_event", "sessionId: must be a non-empty string, got 42"),
        (_with(sessionId="x" * 257), "invalid_event", "sessionId: must be at most 256 characters, got 257"),
        (_with(sequence=_DROP), "invalid_event", "sequence: required, must be an integer >= 0"),
        (_with(sequence="1"), "invalid_event", "sequence: must be an integer >= 0, got '1'"),
        (_with(sequence=-1), "invalid_event", "sequence: must be an integer >= 0, got -1"),
        (_with(severity=_DROP), "invalid_event", "severity: required, must be one of INFO, WARN, ERROR"),
        (_with(severity="warn"), "invalid_event", "severity: must be one of INFO, WARN, ERROR, got 'warn'"),
        (_with(severity=None), "invalid_event", "severity: must be one of INFO, WARN, ERROR, got null"),
        (
            _with(event=_DROP),
            "invalid_event",
            "event: required, must be a non-empty string (an event code such as WMS_LOADED)",
        ),
        (
            _with(event=["WMS_LOADED"]),
            "invalid_event",
            "event: must be a non-empty string (an event code such as WMS_LOADED), got an array",
        ),
        (_with(event="E" * 101), "invalid_event", "event: must be at most 100 characters, got 101"),
        (_with(payload="f0c8ca8d"), "invalid_event", "payload: must be an object, got 'f0c8ca8d'"),
        (_with(payload={"measurementId": 7}), "invalid_event", "payload.measurementId: must be a string, got a number"),
        (_with(sessionId="s\u00e9"), "invalid_event", "sessionId: must be printable ASCII, got 's\\xe9'"),
        (_with(sessionId="\u0141bc"), "invalid_event", "sessionId: must be printable ASCII, got '\\u0141bc'"),
        (
            _with(sessionId="a\nFAKE LOG LINE"),
            "invalid_event",
            "sessionId: must be printable ASCII, got 'a\\nFAKE LOG LINE'",
        ),
        (_with(event="WMS_LOADED\r"), "invalid_event", "event: must be printable ASCII, got 'WMS_LOADED\\r'"),
        (b"[" * 100000 + b"]" * 100000, "invalid_body", "body is not valid JSON: nested too deeply"),
        (b'{"sequence":' + b"9" * 5000 + b"}", "invalid_body", "body is not valid JSON: a number has too many digits"),
        (b'{"snr": NaN}', "invalid_body", "body is not valid JSON: NaN is not a JSON number"),
        (b'{"snr": -Infinity}', "invalid_body", "body is not valid JSON: -Infinity is not a JSON number"),
        # Duplicate keys (issue 11): a receiver that takes the first would see another event id.
        (
            _with()[:-1] + b', "sessionId": "other"}',
            "invalid_body",
            "body has the key 'sessionId' twice in one object; each key must appear once",
        ),
        (
            b'{"payload": {"a": 1, "b": 2, "a": 3}}',
            "invalid_body",
            "body has the key 'a' twice in one object; each key must appear once",
        ),
        (
            b'{"' + b"k" * 150 + b'": 1, "' + b"k" * 150 + b'": 2}',
            "invalid_body",
            "body has the key '" + "k" * 100 + "'... twice in one object; each key must appear once",
        ),
    ],
)
def test_each_bad_input_names_its_field(body, error, detail):
    with pytest.raises(InvalidEvent) as exc:
        parse_event("wms", body)
    assert (exc.value.error, exc.value.detail) == (error, detail)


def test_a_long_bad_value_is_shortened_in_the_message():
    with pytest.raises(InvalidEvent) as exc:
        parse_event("wms", _with(severity="X" * 200))
    assert (
        exc.value.detail
        == "severity: must be one of INFO, WARN, ERROR, got 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX..."
    )


def test_samples_are_valid_json_objects():
    assert json.loads(to_body(sample_event("WMS_LOADED", "s", 0, timestamp=1)))["event"] == "WMS_LOADED"


# Property tests (hypothesis): whatever arrives, parse_event answers with an Event or InvalidEvent.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ("timestamp", "sessionId", "sequence", "severity", "event", "payload")


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=400))
def test_any_bytes_give_an_event_or_invalid_event(body):
    try:
        parse_event("wms", body)
    except InvalidEvent as exc:
        assert exc.error in ("invalid_body", "invalid_event") and exc.detail


@settings(max_examples=400, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=3), extra=JSON_VALUES)
def test_any_json_in_any_field_gives_an_event_or_invalid_event_naming_it(changes, extra):
    event = dict(sample_event("CONSTRAINT_VIOLATION", "s", 1, timestamp=1689684577), **changes, extra=extra)
    body = json.dumps(event, allow_nan=False).encode("utf-8", "surrogatepass")
    try:
        parsed = parse_event("wms", body)
    except InvalidEvent as exc:
        assert exc.error in ("invalid_body", "invalid_event")
        if exc.error == "invalid_event":  # a field error names the field it is about
            assert exc.detail.split(":")[0].split(".")[0] in FIELDS
    else:
        assert parsed.fields == json.loads(body)
