"""Real peers on 127.0.0.1 for the destinations to talk to: an HTTP recorder and an SMTP server."""

import asyncio
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from devtools.local_redis import free_port


@dataclass
class Request:
    """One request the HTTP peer received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    status: int = 0  # what the peer answered


@dataclass
class Reply:
    """What the HTTP peer answers: status, body, headers, and an optional delay before answering."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    on_receipt: Callable[[], None] | None = None  # run when the request has arrived, before answering


class HttpPeer:
    """Records every request; answers each path from its script of replies, then 200 'ok'."""

    def __init__(self):
        self.requests: list[Request] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._limits: dict[str, tuple[float, str]] = {}  # path -> (min interval, Retry-After)
        self._accepted_at: dict[str, float] = {}  # path -> when its last request within the limit arrived
        self._lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with peer._lock:
                    now = time.monotonic()
                    reply = peer._refusal(self.path, now)
                    if reply is None:
                        script = peer._scripts.get(self.path)
                        reply = script.pop(0) if script else Reply()
                    peer.requests.append(
                        Request("POST", self.path, dict(self.headers.items()), body, now, reply.status)
                    )
                if reply.on_receipt is not None:
                    reply.on_receipt()
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.errors: list[str] = []

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # The relay opens up to `concurrency` connections per destination and worker: more than
            # http.server's default backlog of 5, whose overflow stalls a connection for a second.
            request_queue_size = 128

            def handle_error(self, request, client_address):
                # A client that hung up (a timeout test) is expected; keep it off stderr.
                peer.errors.append(traceback.format_exc(limit=1))

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to `path` with `replies`, in order."""
        self._scripts[path] = list(replies)

    def limit(self, path: str, min_interval: float, retry_after: str = "1") -> None:
        """Rate-check `path` as a rate-limited receiver such as Slack does: a request arriving
        sooner than `min_interval` seconds after the previous accepted one is answered 429 with
        Retry-After (recorded with that status; it takes no scripted reply and does not count as
        accepted)."""
        with self._lock:
            self._limits[path] = (min_interval, retry_after)
            self._accepted_at.pop(path, None)

    def _refusal(self, path: str, now: float) -> Reply | None:
        """The 429 for a request to `path` arriving at `now` too soon, else None (call under the lock)."""
        if path not in self._limits:
            return None
        min_interval, retry_after = self._limits[path]
        last = self._accepted_at.get(path)
        if last is not None and now - last < min_interval:
            return Reply(429, b"rate_limited", {"Retry-After": retry_after})
        self._accepted_at[path] = now
        return None

    def to(self, path: str) -> list[Request]:
        """The requests received on `path`."""
        return [r for r in self.requests if r.path == path]

    def start(self) -> "HttpPeer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Recorder:
    def __init__(self, peer: "SmtpPeer"):
        self._peer = peer

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self._peer.rcpt_reply:
            return self._peer.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self._peer.delay)
        if self._peer.data_reply:
            return self._peer.data_reply
        message = message_from_bytes(envelope.content, policy=policy.default)
        self._peer.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class SmtpPeer:
    """aiosmtpd on a free port; records every mail, or refuses with a scripted reply.

    With `credentials`, it requires AUTH (over plain text: loopback only) with that user and password.
    """

    def __init__(self, credentials: tuple[str, str] | None = None):
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.rcpt_reply: str | None = None  # e.g. "550 5.1.1 no such user"
        self.data_reply: str | None = None  # e.g. "451 4.3.0 try again later"
        self.delay = 0.0  # seconds to wait, once the mail has arrived, before answering it
        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        auth = {}
        if credentials:

            def check(server, session, envelope, mechanism, auth_data):
                ok = (auth_data.login.decode(), auth_data.password.decode()) == credentials
                return AuthResult(success=ok, handled=False)

            auth = {"authenticator": check, "auth_required": True, "auth_require_tls": False}
        self._controller = Controller(_Recorder(self), hostname="127.0.0.1", port=self.port, **auth)

    def start(self) -> "SmtpPeer":
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        if getattr(self, "_running", False):
            self._controller.stop()
            self._running = False
