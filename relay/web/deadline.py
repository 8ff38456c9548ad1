"""The read deadline (RELAY_READ_TIMEOUT): a request must arrive whole within it.

The web worker (relay.web.server) reads requests on its event loop and enforces the deadline
there; these are the pieces for what a thread still reads: gunicorn's socket reader bounded by the
deadline, and the request body as the app reads it, whose failures become the app's JSON errors.
"""

import math
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from gunicorn.http.errors import NoMoreData, ParseException  # type: ignore[import-untyped]
from gunicorn.http.unreader import SocketUnreader  # type: ignore[import-untyped]

from relay.web.errors import ApiError
from relay.web.server_errors import RequestTimedOut, body_problem

READ_TIMEOUT_VARIABLE = "RELAY_READ_TIMEOUT"
DEFAULT_READ_TIMEOUT = 10.0
MAX_READ_TIMEOUT = 300.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def read_timeout(environ: Mapping[str, str]) -> float:
    """RELAY_READ_TIMEOUT in seconds (default 10).

    Raises:
        ValueError: the value is not a number of seconds in (0, 300]; the message names it.
    """
    text = environ.get(READ_TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_READ_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_READ_TIMEOUT:  # NaN fails too
        raise ValueError(
            f"{READ_TIMEOUT_VARIABLE}: must be a number of seconds, more than 0 and at most "
            f"{MAX_READ_TIMEOUT:g}, got {text!r}"
        )
    return value


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, bounded by the request's deadline: a read that would end past it
    raises RequestTimedOut."""

    def __init__(self, sock: socket.socket, seconds: float):
        super().__init__(sock)
        self.seconds = seconds
        self.deadline = math.inf

    def chunk(self, size_hint: int | None = None) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimedOut(self.seconds)
        previous = self.sock.gettimeout()  # gunicorn's own drain may have set a shorter one
        self.sock.settimeout(remaining if previous is None else min(previous, remaining))
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            if time.monotonic() >= self.deadline:
                raise RequestTimedOut(self.seconds) from None
            raise
        finally:
            self.sock.settimeout(previous)


class GuardedInput:
    """The request body as the app reads it (wsgi.input): a read past the deadline becomes the
    app's JSON 408, a malformed chunked body or one cut short its JSON 400, before Flask sees a
    bare exception (a 500 with a traceback) or werkzeug a disconnect."""

    def __init__(self, body: Any, environ: dict[str, Any]):
        self._body = body
        length = environ.get("CONTENT_LENGTH", "")
        self._expected = int(length) if length.isdigit() else None
        self._read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = self._guard(self._body.read, size)
        self._read += len(data)
        if not data and size != 0 and self._expected is not None and self._read < self._expected:
            self._refuse(f"the body ended after {self._read} of {self._expected} bytes (Content-Length)")
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = self._guard(self._body.readline, size)
        self._read += len(data)
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(self._guard(self._body.readlines, hint))

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _guard(self, read: Callable[[Any], Any], size: int | None) -> Any:
        try:
            return read(size)
        except RequestTimedOut as exc:
            raise ApiError(408, "request_timeout", str(exc)) from None
        except (ParseException, NoMoreData) as exc:
            problem = body_problem(exc)
            if problem is None:
                raise
            self._refuse(f"malformed chunked body: {problem}")

    @staticmethod
    def _refuse(detail: str) -> None:
        # relay.web.errors logs it, once, with the request's method, path and address.
        raise ApiError(400, "invalid_body", detail) from None


def guard_input(app: WSGIApp) -> WSGIApp:
    """Wrap `app` so that it reads the request body through GuardedInput."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"] = GuardedInput(environ["wsgi.input"], environ)
        return app(environ, start_response)

    return guarded
