"""The web process's gunicorn worker (the Procfile's --worker-class): gunicorn's gthread worker,
but a thread serves a request only once the event loop has read it whole.

Why: a sync worker, or a gthread thread, serving a client that sends its request slowly is stuck
with it; two such clients at 1 byte/s held both sync workers and signed POSTs waited 10.5 s at
p50 behind them (issue 11), /readyz too. gthread's own protection covers only a connection that
sends nothing: a thread waits up to 5 s for its first byte, then hands it back to the loop; once
a byte came, the thread reads the headers and the body with no limit. Here:

- The event loop reads each request (line, headers, body) into memory without blocking
  (relay.web.framing tells where it ends) and hands it to a thread only when it is all there, so
  a slow or stalled client costs a buffer and a socket, never a thread. Idle kept-alive
  connections wait in the loop, as in gthread. Threads, not the loop, run the app: they overlap
  the Redis round trips (docs/performance.md has the figures).
- A request must arrive whole within RELAY_READ_TIMEOUT seconds of its first byte (for the
  first request of a connection, of the connection): if not, the client gets a JSON 408 and the
  connection is closed; a connection that sent nothing is closed without an answer. What the
  loop hands over unfinished (a head or chunked body it finds odd or too big) is read by the
  thread within the same deadline (relay.web.deadline).
- gunicorn's own error pages (a bad request line, headers too large...) are JSON like the app's,
  and a malformed chunked body is the client's 400, not a 500 (relay.web.server_errors).
- A connection that closes after its answer lingers (FIN, then what the client still sends is
  drained) in the loop: gthread did that blocking its loop for up to 2 s.

TLS, HTTP/2 and the PROXY protocol are refused at start: the platform's router terminates them.
"""

import contextlib
import datetime
import errno
import logging
import math
import os
import selectors
import socket
import sys
import time
from functools import partial
from http import HTTPStatus
from typing import Any

from gunicorn import util  # type: ignore[import-untyped]
from gunicorn.http.message import MAX_HEADERS, MAX_REQUEST_LINE  # type: ignore[import-untyped]
from gunicorn.http.wsgi import Response, default_environ  # type: ignore[import-untyped]
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker  # type: ignore[import-untyped]

from relay import logs
from relay.web import metrics
from relay.web.deadline import DeadlineUnreader, WSGIApp, guard_input, read_timeout
from relay.web.framing import RequestScanner, Verdict
from relay.web.server_errors import INTERNAL_ERROR, RequestTimedOut, describe, json_error

log = logging.getLogger(__name__)

# Body bytes buffered beyond the app's own limit (chunk framing), before the rest is left to it.
FRAMING_SLACK = 64 * 1024
RECV_SIZE = 64 * 1024
LINGER_SECONDS = 2.0  # after an answer that closes, how long unread input is drained
LINGER_MAX_BYTES = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Conn(TConn):
    """A connection, with the request being read on the event loop."""

    def __init__(self, worker: "IngestWorker", cfg: Any, sock: socket.socket, client: Any, server: Any):
        super().__init__(cfg, sock, client, server)
        self.worker = worker
        self.data_ready = True  # gthread must not wait for data in a thread: the loop has it
        self.scanner: RequestScanner | None = None
        self.buffered = b""  # what the loop read, for the parser
        self.deadline = math.inf
        self.complete = False  # the whole request was read before a thread took it
        self.continue_sent = False
        self.linger_until = 0.0
        self.drained = 0

    def init(self) -> None:
        """gthread's, then the parser reads the buffered request first, and the socket only
        within the deadline."""
        first = self.parser is None
        super().init()
        assert self.parser is not None
        if first:
            self.parser.unreader = DeadlineUnreader(self.sock, self.worker.read_timeout)
        self.parser.unreader.deadline = self.deadline
        if self.buffered:
            self.parser.unreader.unread(self.buffered)
            self.buffered = b""

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)  # on the event loop, without blocking it
        else:
            util.close(self.sock)


class IngestWorker(ThreadWorker):
    """gthread, with each request read whole on the event loop first (see the module's doc)."""

    wsgi: WSGIApp  # set by gunicorn's load_wsgi()

    @classmethod
    def check_config(cls, cfg: Any, log_: Any) -> None:
        super().check_config(cfg, log_)
        problems = []
        if cfg.is_ssl:
            problems.append("TLS (--certfile/--keyfile)")
        if "h2" in cfg.http_protocols:
            problems.append("HTTP/2 (--http-protocols)")
        if cfg.proxy_protocol != "off":
            problems.append("the PROXY protocol (--proxy-protocol)")
        if problems:
            print(
                f"{cls.__module__}.{cls.__name__}: serves plain HTTP/1.1 behind the platform's router; "
                f"remove {', '.join(problems)}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(3)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout(os.environ)
        # insertion order is deadline order: every entry gets the same timeout from "now"
        self.reading: dict[_Conn, None] = {}
        self.lingering: dict[_Conn, None] = {}
        cfg = self.cfg
        line_limit = cfg.limit_request_line if 0 < cfg.limit_request_line < MAX_REQUEST_LINE else MAX_REQUEST_LINE
        fields = cfg.limit_request_fields if 0 < cfg.limit_request_fields <= MAX_HEADERS else MAX_HEADERS
        field_size = cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else 8190
        self.line_limit = line_limit
        self.head_limit = line_limit + fields * (field_size + 2) + 8  # gunicorn's bound, and the CRLFs
        self.limits = {
            "limit_request_line": line_limit,
            "limit_request_fields": fields,
            "limit_request_field_size": field_size,
        }
        self.body_limit = 1024 * 1024  # until the app says its own (load_wsgi)

    def run(self) -> None:
        """gthread's; then this worker's live metrics go (relay.web.metrics)."""
        try:
            super().run()
        finally:
            metrics.process_exited(os.getpid())

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi
        # The app's own body limit (Flask's MAX_CONTENT_LENGTH): a body over it is not waited for.
        app_config = getattr(app, "config", None) or {}
        self.body_limit = app_config.get("MAX_CONTENT_LENGTH") or self.body_limit
        self.wsgi = guard_input(app)

    # -- the event loop: accept, read requests, hand them to threads -------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = _Conn(self, self.cfg, sock, client, listener.getsockname())
        try:
            # Often the request is there already: reading it now spares a turn of the loop.
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            data = b""
        except OSError:
            self.nr_conns -= 1
            util.close(sock)
            return
        self.start_reading(conn, data)

    def on_client_socket_readable(self, conn: _Conn, client: socket.socket) -> None:
        """A kept-alive connection has its next request coming: read it on the loop."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.start_reading(conn, b"")

    def start_reading(self, conn: _Conn, data: bytes) -> None:
        """Read the connection's next request on the loop; `data` is what has arrived of it."""
        conn.scanner = RequestScanner(self.head_limit, self.line_limit, self.body_limit, FRAMING_SLACK)
        conn.deadline = time.monotonic() + self.read_timeout
        conn.complete = conn.continue_sent = False
        if data:
            verdict = self._scan(conn, data)
            if verdict is not Verdict.MORE:
                self._dispatch(conn, verdict)
                return
        self.reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))

    def on_request_bytes(self, conn: _Conn, sock: socket.socket) -> None:
        data = _receive(sock)
        if data is None:
            return
        assert conn.scanner is not None
        if data:
            verdict = self._scan(conn, data)
            if verdict is not Verdict.MORE:
                self._stop_reading(conn)
                self._dispatch(conn, verdict)
            return
        self._stop_reading(conn)
        if conn.scanner.started:
            # The client stopped sending mid-request (a half-close): the parser says what is missing.
            self._dispatch(conn, Verdict.HAND_OVER)
        else:
            self.nr_conns -= 1
            util.close(sock)

    def _scan(self, conn: _Conn, data: bytes) -> Verdict:
        """Scan what arrived of the request; answer an Expect: 100-continue once the head is in."""
        assert conn.scanner is not None
        verdict = conn.scanner.feed(data)
        if verdict is Verdict.MORE and conn.scanner.expects_continue and not conn.continue_sent:
            # The client waits for this before it sends the body (gunicorn would send it from the
            # thread, which would then wait for the body).
            conn.continue_sent = True
            self._send_now(conn.sock, CONTINUE)
        return verdict

    def _dispatch(self, conn: _Conn, verdict: Verdict) -> None:
        """Hand the request, with what the loop read of it, to a thread of the pool."""
        assert conn.scanner is not None
        conn.buffered = bytes(conn.scanner.buffer)
        conn.scanner = None
        conn.complete = verdict is Verdict.COMPLETE
        self.enqueue_req(conn)

    def _stop_reading(self, conn: _Conn) -> None:
        del self.reading[conn]
        self.poller.unregister(conn.sock)

    def murder_pending(self) -> None:
        """gthread's, and the requests past their deadline: a JSON 408 to those that began. A
        stopping worker ends every request still arriving at once: it closes the connections that
        sent nothing yet and answers the others 408 (their senders retry), rather than wait out
        their deadline while the platform's stop timeout runs."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading:
            conn = next(iter(self.reading))  # the oldest: the first deadline
            if conn.deadline > now:
                break
            self._expire(conn)
        if not self.alive:
            for conn in list(self.reading):
                self._expire(conn)
        while self.lingering:
            conn = next(iter(self.lingering))
            if conn.linger_until > now and self.alive:
                break
            self._end_linger(conn)

    def _expire(self, conn: _Conn) -> None:
        self._stop_reading(conn)
        self.nr_conns -= 1
        if conn.scanner is None or not conn.scanner.started:
            util.close(conn.sock)
            return
        status, error, detail = describe(RequestTimedOut(self.read_timeout), self.limits)
        logs.rejected(log, status, error, detail, method="-", path="-", remote=_address(conn.client))
        self._send_now(conn.sock, json_error(status, error, detail))
        self.linger(conn)

    @staticmethod
    def _send_now(sock: socket.socket, data: bytes) -> None:
        """Send what fits in the socket's buffer now (all of it: these are small), never block."""
        with contextlib.suppress(OSError):
            sock.send(data)

    # -- after the answer -----------------------------------------------------------------

    def handle_request(self, req: Any, conn: _Conn) -> bool:
        if conn.continue_sent:
            req._expected_100_continue = False  # the loop sent it already
        if not conn.complete:
            # Part of the request may still be on the socket: do not read on to find the next one.
            req.force_close()
        return bool(super().handle_request(req, conn))

    def finish_request(self, conn: _Conn, fs: Any) -> None:
        """gthread's, but a pipelined request is read on the loop like any other, and a
        connection that closes lingers without blocking it."""
        try:
            keepalive = fs.result() if not fs.cancelled() else False
            if not keepalive:
                self.nr_conns -= 1
                conn.close(graceful=True)
                return
            pipelined = conn.parser.unreader.take_buffered()
            if pipelined:
                # On the next turn of the loop, not from within this one: a client pipelining many
                # requests must not make them nest.
                conn.sock.setblocking(False)
                self.method_queue.defer(self.start_reading, conn, pipelined)
                return
            conn.sock.setblocking(False)
            conn.set_timeout()
            if not self.alive:
                conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
            self.keepalived_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
        except Exception:  # noqa: BLE001 - as gthread: whatever went wrong, the connection is closed, the loop goes on
            self.nr_conns -= 1
            conn.close()

    def linger(self, conn: _Conn) -> None:
        """Close after an answer as RFC 9112 section 9.6 asks, on the loop: when the client still
        sends, send FIN, drain what comes, then close, so that no RST destroys the answer."""
        try:
            if conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                raise ConnectionResetError  # the client closed first: nothing to wait for
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except BlockingIOError:
            util.close(conn.sock)  # nothing unread: a plain close sends FIN, not RST
            return
        except OSError:
            util.close(conn.sock)
            return
        conn.linger_until = time.monotonic() + LINGER_SECONDS
        conn.drained = 0
        self.lingering[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger_bytes, conn))

    def _on_linger_bytes(self, conn: _Conn, sock: socket.socket) -> None:
        data = _receive(sock)
        if data is None:
            return
        conn.drained += len(data)
        if not data or conn.drained >= LINGER_MAX_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn: _Conn) -> None:
        del self.lingering[conn]
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(conn.sock)
        util.close(conn.sock)

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """gunicorn's error page, as JSON; a client's error is one line at INFO, a bug a traceback."""
        status, error, detail = describe(exc, self.limits)
        if (status, error, detail) == INTERNAL_ERROR:
            log.error("error handling a request from %s", _address(addr), exc_info=exc)
        else:
            method, path = getattr(req, "method", None) or "-", getattr(req, "path", None) or "-"
            logs.rejected(log, status, error, detail, method=method, path=path, remote=_address(addr))
        answer = json_error(status, error, detail)
        if req is not None:  # the access log, when on, shows it as gunicorn's own pages
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"] = _address(addr)
            resp = Response(req, client, self.cfg)
            resp.status = f"{status} {HTTPStatus(status).phrase}"
            resp.response_length = len(answer)
            self.log.access(resp, req, environ, datetime.timedelta(0))
        try:
            util.write_nonblock(client, answer)
        except OSError:
            log.debug("could not send the %d answer to %s", status, _address(addr))


def _address(addr: Any) -> str:
    return str(addr[0]) if isinstance(addr, tuple) and addr else "a unix socket"


def _receive(sock: socket.socket) -> bytes | None:
    """What a readable socket holds: b"" at its end (or when it failed), None when nothing came after all."""
    try:
        return sock.recv(RECV_SIZE)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
