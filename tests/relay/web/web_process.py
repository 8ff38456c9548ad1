"""The Procfile's web process on a free loopback port, and raw HTTP/1.1 exchanges with it: what a
client library would refuse to send (a malformed request line, a broken chunk) goes over a socket.
"""

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import requests

from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from tests.test_processes import process_env, start, stop, wait_for


@dataclass
class Web:
    """A running Procfile web process."""

    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connect(self, timeout: float = 5) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)


class WebProcess:
    """Start the Procfile's web line with `env` on top of the tests' environment; on exit, stop it
    with SIGTERM and require a clean exit (0), as a platform's restart does."""

    def __init__(self, log_path: Path, **env: str):
        self.port = free_port()
        self.log_path = log_path
        self.env = process_env(PORT=str(self.port), BIND_HOST="127.0.0.1", **env)

    def __enter__(self) -> Web:
        self.process = start(procfile_command("web"), self.env, self.log_path)
        web = Web(self.port, self.log_path)
        try:
            wait_for(lambda: requests.get(f"{web.url}/readyz", timeout=1).ok, 20, "gunicorn to answer /readyz")
        except AssertionError:
            stop(self.process)
            raise AssertionError(web.log()) from None
        return web

    def __exit__(self, *exc_info) -> None:
        code = stop(self.process)
        assert code == 0, self.log_path.read_text(errors="replace")


@dataclass
class Answer:
    """One HTTP response as it came off the socket."""

    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self):
        return json.loads(self.body)


class AnswerReader:
    """Responses one after another off a socket, keeping what one recv() brought of the next
    (pipelined answers can come in one segment)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.pending = b""

    def next(self, timeout: float = 5) -> Answer:
        """Read one response: up to the end of its Content-Length body, or to EOF."""
        self.sock.settimeout(timeout)
        data = self.pending
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"the server closed the connection before a whole response head: {data!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if status < 200 else int(headers.get("content-length", -1))  # an interim answer has no body
        while length < 0 or len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        body, self.pending = (rest, b"") if length < 0 else (rest[:length], rest[length:])
        return Answer(status, headers, body)


def read_answer(sock: socket.socket, timeout: float = 5) -> Answer:
    """Read one response from `sock` (nothing is expected after it)."""
    return AnswerReader(sock).next(timeout)


def exchange(web: Web, data: bytes, timeout: float = 5) -> Answer:
    """Send `data` on a new connection, read the answer, close."""
    with web.connect(timeout) as sock:
        sock.sendall(data)
        return read_answer(sock, timeout)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes `sock` (EOF or reset) within `timeout` seconds, sending nothing."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
