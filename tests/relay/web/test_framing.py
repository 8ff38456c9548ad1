"""relay.web.framing: when a request has all arrived, however its bytes are split; what is odd is
handed over at once (gunicorn's parser refuses it), what is incomplete is waited for."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.web.framing import RequestScanner, Verdict

MORE, COMPLETE, HAND_OVER = Verdict.MORE, Verdict.COMPLETE, Verdict.HAND_OVER
BODY = b'{"timestamp":1790000000,"sessionId":"s","sequence":0,"severity":"INFO","event":"WMS_LOADED"}'


def scanner(body_limit: int = 1024) -> RequestScanner:
    return RequestScanner(head_limit=8192, line_limit=4094, body_limit=body_limit)


def post(framing: str, body: bytes = BODY, extra: str = "") -> bytes:
    return f"POST /hooks/wms HTTP/1.1\r\nHost: relay\r\n{extra}{framing}\r\n\r\n".encode() + body


def chunked(body: bytes = BODY, trailers: bytes = b"") -> bytes:
    return post(
        "Transfer-Encoding: chunked",
        b"%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\n%s\r\n" % (3, body[:3], len(body) - 3, body[3:], trailers),
    )


COMPLETE_REQUESTS = {
    "no body": b"GET /readyz HTTP/1.1\r\nHost: relay\r\n\r\n",
    "content-length": post(f"Content-Length: {len(BODY)}"),
    "empty content-length": post("Content-Length: 0", b""),
    "chunked": chunked(),
    "chunked with trailers": chunked(trailers=b"X-Checksum: 1\r\n"),
    "a CRLF before the request line": b"\r\n" + post(f"Content-Length: {len(BODY)}"),
    "HTTP/1.0": b"POST /hooks/wms HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("request_bytes", COMPLETE_REQUESTS.values(), ids=COMPLETE_REQUESTS.keys())
def test_a_request_is_complete_with_its_last_byte_and_not_before(request_bytes):
    s = scanner()
    for i in range(len(request_bytes) - 1):
        assert s.feed(request_bytes[i : i + 1]) is MORE, (i, request_bytes[: i + 1])
    assert s.feed(request_bytes[-1:]) is COMPLETE
    assert bytes(s.buffer) == request_bytes


@given(st.sampled_from(sorted(COMPLETE_REQUESTS)), st.lists(st.integers(min_value=1, max_value=400), max_size=30))
def test_however_the_bytes_are_split_the_verdict_is_the_same(name, cuts):
    request_bytes = COMPLETE_REQUESTS[name] + b"GET /next HTTP/1.1\r\n"  # and a pipelined request begun
    s, at, verdict = scanner(), 0, MORE
    for size in [*cuts, len(request_bytes)]:
        piece = request_bytes[at : at + size]
        at += len(piece)
        if piece:
            verdict = s.feed(piece)
        if verdict is not MORE:
            break
    assert verdict is COMPLETE
    assert at >= len(COMPLETE_REQUESTS[name])


def test_the_body_counts_only_once_the_head_is_whole():
    s = scanner()
    head = post(f"Content-Length: {len(BODY)}", b"")
    assert s.feed(head[:-2]) is MORE
    assert s.feed(head[-2:] + BODY[:-1]) is MORE
    assert s.feed(BODY[-1:]) is COMPLETE


def test_a_body_with_newlines_arriving_with_its_head_is_not_taken_for_a_bare_lf():
    body = b'{\n  "a": 1\n}'
    assert scanner().feed(post(f"Content-Length: {len(body)}", body)) is COMPLETE


HANDED_OVER = {
    "bare LF in the head": b"GET / HTTP/1.1\nHost: relay\n",
    "bare LF first": b"\n",
    "a header without a colon": b"GET / HTTP/1.1\r\nnocolon\r\n\r\n",
    "two content-lengths": post("Content-Length: 2\r\nContent-Length: 2", b""),
    "a content-length that is not a number": post("Content-Length: 2x", b""),
    "content-length and chunked": post("Content-Length: 2\r\nTransfer-Encoding: chunked", b""),
    "another transfer coding": post("Transfer-Encoding: gzip, chunked", b""),
    "chunked in HTTP/1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "a body over the limit": post("Content-Length: 1025", b""),
    "a chunk size that is not hex": post("Transfer-Encoding: chunked", b"zz\r\n"),
    "a negative chunk size": post("Transfer-Encoding: chunked", b"-5\r\n"),
    "a chunk over the limit": post("Transfer-Encoding: chunked", b"401\r\n"),
    "a chunk without its CRLF": post("Transfer-Encoding: chunked", b"2\r\n{}XX"),
    "a request line that never ends": b"GET /" + b"a" * 4100,
    "a head over its limit": b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000,
}


@pytest.mark.parametrize("request_bytes", HANDED_OVER.values(), ids=HANDED_OVER.keys())
def test_what_gunicorn_would_refuse_is_handed_over_at_once(request_bytes):
    assert scanner().feed(request_bytes) is HAND_OVER


def test_chunks_over_the_limit_in_all_are_handed_over():
    s = RequestScanner(head_limit=8192, line_limit=4094, body_limit=10, chunk_slack=10)  # framing counts
    assert s.feed(post("Transfer-Encoding: chunked", b"8\r\n12345678\r\n")) is MORE
    assert s.feed(b"8\r\n12345678\r\n") is HAND_OVER


def test_an_expect_100_continue_with_a_body_to_come_is_noticed():
    s = scanner()
    assert s.feed(post("Content-Length: 2", b"", extra="Expect: 100-continue\r\n")) is MORE
    assert s.expects_continue
    assert s.feed(b"{}") is COMPLETE
    assert scanner().feed(post("Content-Length: 2", b"", extra="Expect: 100-continue\r\n")[:-4]) is not COMPLETE
