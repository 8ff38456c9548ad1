"""relay.web.server and relay.web.server_errors in process: the read deadline's variable, and the
JSON answers the worker writes itself (the real worker is driven in test_slow_clients.py and
test_server_errors.py)."""

import json

import pytest
from gunicorn.http.errors import InvalidChunkSize, InvalidResponseHeader, LimitRequestLine

from relay.web.deadline import read_timeout
from relay.web.server_errors import RequestTimedOut, describe, json_error

LIMITS = {"limit_request_line": 4094, "limit_request_fields": 100, "limit_request_field_size": 8190}


@pytest.mark.parametrize(("value", "seconds"), [(None, 10.0), ("", 10.0), ("2.5", 2.5), (" 30 ", 30.0), ("300", 300.0)])
def test_the_read_timeout_comes_from_the_environment(value, seconds):
    assert read_timeout({} if value is None else {"RELAY_READ_TIMEOUT": value}) == seconds


@pytest.mark.parametrize("value", ["0", "-1", "301", "nan", "inf", "10s", "soon"])
def test_a_read_timeout_out_of_range_is_refused_with_its_value(value):
    with pytest.raises(ValueError) as refused:
        read_timeout({"RELAY_READ_TIMEOUT": value})
    assert str(refused.value) == (
        f"RELAY_READ_TIMEOUT: must be a number of seconds, more than 0 and at most 300, got {value!r}"
    )


@pytest.mark.parametrize(
    ("exc", "answer"),
    [
        (RequestTimedOut(2.5), (408, "request_timeout", "the request was not received within 2.5s")),
        (LimitRequestLine(5000, 4094), (414, "uri_too_long", "the request line is longer than 4094 bytes")),
        (
            InvalidChunkSize(b"x" * 100),
            (400, "invalid_body", f"malformed chunked body: invalid chunk size {'x' * 64!r}..."),
        ),
        # Not the client's fault: a bug, or the app sending a bad header.
        (InvalidResponseHeader("X-A"), (500, "internal_error", "internal error; retry later")),
        (RuntimeError("boom"), (500, "internal_error", "internal error; retry later")),
    ],
)
def test_each_refusal_has_its_status_code_and_detail(exc, answer):
    assert describe(exc, LIMITS) == answer


def test_the_worker_s_answers_are_whole_json_responses_that_close():
    raw = json_error(431, "headers_too_large", "more than 100 header fields")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 431 Request Header Fields Too Large",
        b"Connection: close",
        b"Content-Type: application/json",
        f"Content-Length: {len(body)}".encode(),
    ]
    assert json.loads(body) == {"error": "headers_too_large", "detail": "more than 100 header fields"}
