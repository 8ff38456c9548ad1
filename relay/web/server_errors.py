"""What the web worker answers by itself, before or beside the app, in the app's JSON
{"error": ..., "detail": ...}: gunicorn's refusals of a request line or headers, the read deadline,
and a malformed chunked body. The app's own errors are relay.web.errors'.
"""

import json
from http import HTTPStatus

from gunicorn.http.errors import (  # type: ignore[import-untyped]
    ChunkMissingTerminator,
    ConfigurationProblem,
    ExpectationFailed,
    ForbiddenProxyRequest,
    InvalidChunkExtension,
    InvalidChunkSize,
    InvalidH2CPreface,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidProxyLine,
    InvalidRequestLine,
    InvalidRequestMethod,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    InvalidSchemeHeaders,
    LimitRequestHeaders,
    LimitRequestLine,
    NoMoreData,
    ObsoleteFolding,
    ParseException,
    UnsupportedTransferCoding,
)

INTERNAL_ERROR = (500, "internal_error", "internal error; retry later")
SHOWN = 64  # characters of a client's value quoted back, at most


class RequestTimedOut(ParseException):
    """The request (line, headers and body) did not arrive within the read deadline."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __str__(self) -> str:
        return f"the request was not received within {self.seconds:g}s"


def quoted(value: object) -> str:
    """A client's value, quoted and cut short: it goes back to the client and to the log."""
    text = value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)
    return repr(text[:SHOWN]) + ("..." if len(text) > SHOWN else "")


def body_problem(exc: Exception) -> str | None:
    """What is wrong with a chunked body, from the exception gunicorn's body reader raised; None
    when the exception is not about the body's framing."""
    if isinstance(exc, InvalidChunkSize):
        return f"invalid chunk size {quoted(exc.data)}"
    if isinstance(exc, ChunkMissingTerminator):
        return "a chunk does not end with CRLF" if exc.term else "the body ended before its last chunk"
    if isinstance(exc, InvalidChunkExtension):
        return "invalid chunk extension"
    if isinstance(exc, NoMoreData):
        return "the body ended before its last chunk"
    if isinstance(exc, InvalidHeader | InvalidHeaderName | LimitRequestHeaders):
        return f"invalid trailer: {exc}"
    return None


def describe(exc: BaseException, limits: dict[str, int]) -> tuple[int, str, str]:
    """The (status, error, detail) answer to an exception raised while reading a request; a 500
    for anything that is not the client's fault. `limits` holds gunicorn's limit_request_line,
    limit_request_fields and limit_request_field_size."""
    if isinstance(exc, InvalidResponseHeader | InvalidResponseHeaderName | ConfigurationProblem):
        return INTERNAL_ERROR  # the app's or the operator's fault, not the client's
    if isinstance(exc, RequestTimedOut):
        return 408, "request_timeout", str(exc)
    if isinstance(exc, InvalidRequestLine | InvalidProxyLine | InvalidH2CPreface):
        return 400, "bad_request", "malformed request line"
    if isinstance(exc, InvalidRequestMethod):
        return 400, "bad_request", f"invalid method {quoted(exc.method)}"
    if isinstance(exc, InvalidHTTPVersion):
        version = exc.version
        shown = f"HTTP/{version[0]}.{version[1]}" if isinstance(version, tuple) else version
        return 400, "bad_request", f"unsupported HTTP version {quoted(shown)}"
    if isinstance(exc, LimitRequestLine):
        return 414, "uri_too_long", f"the request line is longer than {limits['limit_request_line']} bytes"
    if isinstance(exc, LimitRequestHeaders):
        if exc.msg == "limit request headers fields":
            return 431, "headers_too_large", f"more than {limits['limit_request_fields']} header fields"
        if exc.msg == "limit request headers fields size":
            size = limits["limit_request_field_size"]
            return 431, "headers_too_large", f"a header field is longer than {size} bytes"
        return 431, "headers_too_large", "the request's headers are too large"
    if isinstance(exc, ObsoleteFolding):
        return 400, "invalid_header", f"obsolete line folding in header {quoted(exc.hdr)}"
    if isinstance(exc, InvalidHeaderName):
        return 400, "invalid_header", f"invalid header name {quoted(exc.hdr)}"
    if isinstance(exc, InvalidHeader):
        return 400, "invalid_header", f"invalid header {quoted(exc.hdr)}"
    if isinstance(exc, InvalidSchemeHeaders):
        return 400, "invalid_header", "contradictory scheme headers"
    if isinstance(exc, UnsupportedTransferCoding):
        detail = f"transfer coding {quoted(exc.hdr)} is not supported; send the body with Content-Length or chunked"
        return 501, "not_implemented", detail
    if isinstance(exc, ExpectationFailed):
        return 417, "expectation_failed", f"cannot meet Expect: {quoted(exc.expect)}"
    if isinstance(exc, ForbiddenProxyRequest):
        return 403, "forbidden", "PROXY protocol not allowed from this address"
    problem = body_problem(exc) if isinstance(exc, ParseException | NoMoreData) else None
    if problem is not None:
        return 400, "invalid_body", f"malformed chunked body: {problem}"
    return INTERNAL_ERROR


def json_error(status: int, error: str, detail: str) -> bytes:
    """A whole HTTP/1.1 response, closing the connection, with the JSON error body."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body
