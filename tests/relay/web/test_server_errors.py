"""Requests that gunicorn's parser refuses, sent over raw sockets to the real Procfile web process:
every answer is JSON {"error": ..., "detail": ...}, a malformed chunked body is the client's 400
(logged once at INFO, no traceback), and nothing is written to Redis."""

import socket
import textwrap

import pytest

from tests.conftest import CONFIG_ENV, CONFIG_YAML
from tests.relay.web.web_process import Web, WebProcess, exchange, read_answer

pytestmark = pytest.mark.slow  # starts the Procfile's web process


@pytest.fixture(scope="module")
def web(tmp_path_factory, redis_server):
    """One web process for the module: each request here is answered on its own connection."""
    workdir = tmp_path_factory.mktemp("server-errors")
    config = workdir / "relay.yaml"
    config.write_text(textwrap.dedent(CONFIG_YAML))
    with WebProcess(workdir / "web.log", REDIS_URL=redis_server.url, RELAY_CONFIG=str(config), **CONFIG_ENV) as web:
        yield web


def get(*headers: str, line: str = "GET /healthz HTTP/1.1") -> bytes:
    return "\r\n".join([line, "Host: relay.test", *headers, "", ""]).encode("latin-1")


def chunked_post(body: bytes) -> bytes:
    head = "POST /hooks/wms HTTP/1.1\r\nHost: relay.test\r\nContent-Type: application/json\r\n"
    return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + body


PROTOCOL_ERRORS = [
    pytest.param(b"GARBAGE\r\n\r\n", 400, "bad_request", "malformed request line", id="bad-request-line"),
    pytest.param(get(line="GET /healthz HTTP/1.1\n"), 400, "bad_request", "malformed request line", id="bare-lf"),
    pytest.param(get(line="G@T /healthz HTTP/1.1"), 400, "bad_request", "invalid method 'G@T'", id="bad-method"),
    pytest.param(
        get(line="GET /healthz HTTP/2.5"), 400, "bad_request", "unsupported HTTP version 'HTTP/2.5'", id="bad-version"
    ),
    pytest.param(
        get(line="GET /" + "a" * 5000 + " HTTP/1.1"),
        414,
        "uri_too_long",
        "the request line is longer than 4094 bytes",
        id="request-line-too-long",
    ),
    pytest.param(
        get("X-Big: " + "a" * 9000),
        431,
        "headers_too_large",
        "a header field is longer than 8190 bytes",
        id="header-field-too-large",
    ),
    pytest.param(
        get(*(f"X-H{i}: v" for i in range(101))),
        431,
        "headers_too_large",
        "more than 100 header fields",
        id="too-many-header-fields",
    ),
    pytest.param(get("Bad Name: v"), 400, "invalid_header", "invalid header name 'Bad Name'", id="bad-header-name"),
    pytest.param(get("nocolon"), 400, "invalid_header", "invalid header 'nocolon'", id="header-without-colon"),
    pytest.param(get("X-A: a", " b"), 400, "invalid_header", "obsolete line folding in header 'X-A'", id="folding"),
    pytest.param(get("Host: again"), 400, "invalid_header", "invalid header 'HOST'", id="two-hosts"),
    pytest.param(
        get("Content-Length: 1", "Transfer-Encoding: chunked", line="POST /hooks/wms HTTP/1.1"),
        400,
        "invalid_header",
        "invalid header 'CONTENT-LENGTH'",
        id="length-and-chunked",
    ),
    pytest.param(
        get("Content-Length: 12x", line="POST /hooks/wms HTTP/1.1"),
        400,
        "invalid_header",
        "invalid header 'CONTENT-LENGTH'",
        id="bad-content-length",
    ),
    pytest.param(
        get("Transfer-Encoding: foo", line="POST /hooks/wms HTTP/1.1"),
        501,
        "not_implemented",
        "transfer coding 'foo' is not supported; send the body with Content-Length or chunked",
        id="unknown-transfer-coding",
    ),
    pytest.param(get("Expect: a-miracle"), 417, "expectation_failed", "cannot meet Expect: 'a-miracle'", id="expect"),
]


@pytest.mark.parametrize(("request_bytes", "status", "error", "detail"), PROTOCOL_ERRORS)
def test_gunicorn_refusals_are_json(web: Web, redis, request_bytes, status, error, detail):
    answer = exchange(web, request_bytes)
    assert (answer.status, answer.json()) == (status, {"error": error, "detail": detail})
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    assert int(answer.headers["content-length"]) == len(answer.body)
    assert [k for k in redis.keys("*") if not k.startswith(b"relay:stats:")] == []  # but its count


MALFORMED_CHUNKS = [
    pytest.param(b"zz\r\nhello\r\n0\r\n\r\n", "invalid chunk size 'zz'", id="bad-size"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", "invalid chunk size '-5'", id="negative-size"),
    pytest.param(b"5\r\nhelloXX0\r\n\r\n", "a chunk does not end with CRLF", id="missing-terminator"),
    pytest.param(b"5;a=\x01\r\nhello\r\n0\r\n\r\n", "invalid chunk extension", id="bad-extension"),
]


@pytest.mark.parametrize(("body", "reason"), MALFORMED_CHUNKS)
def test_a_malformed_chunked_body_is_the_clients_400_logged_once_at_info(web: Web, redis, body, reason):
    before = web.log()
    answer = exchange(web, chunked_post(body))
    expected = {"error": "invalid_body", "detail": f"malformed chunked body: {reason}"}
    assert (answer.status, answer.json()) == (400, expected)
    new = web.log()[len(before) :]
    lines = [line for line in new.splitlines() if "malformed chunked body" in line]
    assert len(lines) == 1 and " INFO " in lines[0] and reason in lines[0], new
    assert "Traceback" not in new and "ERROR" not in new, new
    assert [k for k in redis.keys("*") if not k.startswith(b"relay:stats:")] == []  # but its count


def test_a_chunked_body_cut_short_by_the_client_is_a_400_too(web: Web, redis):
    with web.connect() as sock:
        sock.sendall(chunked_post(b"10\r\n" + b'{"timestamp":'))
        sock.shutdown(socket.SHUT_WR)  # the client is done sending, but still reads the answer
        answer = read_answer(sock)
    detail = "malformed chunked body: the body ended before its last chunk"
    assert (answer.status, answer.json()) == (400, {"error": "invalid_body", "detail": detail})
    assert [k for k in redis.keys("*") if not k.startswith(b"relay:stats:")] == []  # but its count


def test_a_body_cut_short_of_its_content_length_is_a_400(web: Web, redis):
    head = (
        "POST /hooks/wms HTTP/1.1\r\nHost: relay.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with web.connect() as sock:
        sock.sendall(head.encode() + b'{"timestamp":')
        sock.shutdown(socket.SHUT_WR)
        answer = read_answer(sock)
    detail = "the body ended after 13 of 100 bytes (Content-Length)"
    assert (answer.status, answer.json()) == (400, {"error": "invalid_body", "detail": detail})
    assert [k for k in redis.keys("*") if not k.startswith(b"relay:stats:")] == []  # but its count
