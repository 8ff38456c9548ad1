"""An open-loop load generator: requests leave on a fixed schedule whether or not earlier ones
have been answered, and each latency is counted from when its request was due, not from when it
could leave (so a stalled server cannot hide its queue: no coordinated omission).

It shares the machine with the server it measures, so it is kept cheap: one thread, a selector,
one non-blocking connection per request (each asks the server to close it after the answer), no
HTTP library. Its own CPU share is reported with the figures.

SlowClients keeps slow and stalled connections open beside it, for the figures with slow clients.
"""

import errno
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class OpenLoopResult:
    rate: float  # requests per second asked for
    sent: int
    latencies: list[float] = field(default_factory=list)  # seconds, of the answered requests
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    behind: float = 0.0  # how late the last request left, in seconds: > 0.01 means the generator lagged
    cpu_share: float = 0.0  # of one core, used by the generator itself

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


@dataclass
class _Request:
    due: float
    data: bytes
    sock: socket.socket
    reply: bytearray = field(default_factory=bytearray)


def open_loop(
    host: str,
    port: int,
    path: str,
    bodies: list[tuple[str, bytes]],
    rate: float,
    duration: float,
    max_in_flight: int = 512,
) -> OpenLoopResult:
    """POST `bodies` (MAC, body) at `rate` per second for `duration` seconds; latencies from due time."""
    total = min(len(bodies), int(rate * duration))
    requests = [
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"X-WMS-Content-MAC: {mac}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
        for mac, body in bodies[:total]
    ]
    result = OpenLoopResult(rate, total)
    selector = selectors.DefaultSelector()
    cpu, wall = time.process_time(), time.perf_counter()
    start = wall + 0.1
    next_index = 0
    while next_index < total or selector.get_map():
        now = time.perf_counter()
        while next_index < total and start + next_index / rate <= now and len(selector.get_map()) < max_in_flight:
            due = start + next_index / rate
            if next_index == total - 1:
                result.behind = max(0.0, now - due)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex((host, port))
            if code not in (0, errno.EINPROGRESS):
                result.errors += 1
                sock.close()
            else:
                selector.register(sock, selectors.EVENT_WRITE, _Request(due, requests[next_index], sock))
            next_index += 1
        timeout = max(0.0, start + next_index / rate - time.perf_counter()) if next_index < total else 0.5
        for key, events in selector.select(timeout):
            _advance(selector, key.data, events, result)
    result.cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return result


def _advance(selector, request: _Request, events: int, result: OpenLoopResult) -> None:
    """Send the request when connected; read the reply until the server closes."""
    try:
        if events & selectors.EVENT_WRITE:
            sent = request.sock.send(request.data)
            request.data = request.data[sent:]
            if not request.data:
                selector.modify(request.sock, selectors.EVENT_READ, request)
            return
        chunk = request.sock.recv(65536)
        if chunk:
            request.reply += chunk
            return
    except OSError:
        result.errors += 1
        selector.unregister(request.sock)
        request.sock.close()
        return
    selector.unregister(request.sock)
    request.sock.close()
    try:
        status = int(bytes(request.reply).split(b" ", 2)[1])
    except (IndexError, ValueError):
        result.errors += 1
        return
    result.statuses[status] = result.statuses.get(status, 0) + 1
    result.latencies.append(time.perf_counter() - request.due)


# The slow and stalled clients of issue 11, each the way a client that sends too slowly (or not at
# all) holds a connection: a head that never ends, a body at 1 byte/s (with Content-Length and
# chunked), headers and then nothing, a connection that sends nothing, and an idle kept-alive one.
SLOW_KINDS = ("slow headers", "slow body", "slow chunked body", "stalled after headers", "silent", "idle keep-alive")


@dataclass
class _SlowConnection:
    kind: str
    sock: socket.socket
    rest: bytes  # what is still to trickle, a byte per tick


@dataclass
class SlowClientsResult:
    opened: int = 0  # connections opened, reopenings included
    answered: dict[int, int] = field(default_factory=dict)  # what the server answered them, by status
    closed_silently: int = 0  # closed by the server without an answer
    open_min: int = 0  # the fewest open at any tick, once all were open


class SlowClients:
    """Keep `count` slow or stalled connections open to host:port, in equal shares of SLOW_KINDS,
    from one thread, trickling a byte per connection every `interval` seconds; any the server
    answers or closes is counted and opened again, so that `count` stay open throughout."""

    def __init__(self, host: str, port: int, path: str, bodies: list[tuple[str, bytes]], count: int = 36):
        self.host, self.port, self.path = host, port, path
        self.bodies = bodies
        self.count = count
        self.interval = 1.0
        self.result = SlowClientsResult(open_min=count)
        self._connections: list[_SlowConnection] = []
        self._next_body = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "SlowClients":
        for i in range(self.count):
            self._connections.append(self._open(SLOW_KINDS[i % len(SLOW_KINDS)]))
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._connections:
            connection.sock.close()

    def _open(self, kind: str) -> _SlowConnection:
        mac, body = self.bodies[self._next_body % len(self.bodies)]
        self._next_body += 1
        host = f"{self.host}:{self.port}"
        post = (
            f"POST {self.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-WMS-Content-MAC: {mac}\r\n"
        )
        sock = socket.create_connection((self.host, self.port), timeout=5)
        first, rest = b"", b""
        if kind == "slow headers":
            first, rest = post.encode(), b"X-Slow: " + b"a" * 4000
        elif kind == "slow body":
            first, rest = f"{post}Content-Length: {len(body)}\r\n\r\n".encode(), body
        elif kind == "slow chunked body":
            first = f"{post}Transfer-Encoding: chunked\r\n\r\n".encode()
            rest = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        elif kind == "stalled after headers":
            first = f"{post}Content-Length: {len(body)}\r\n\r\n".encode()
        elif kind == "idle keep-alive":
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            _read_answer(sock)  # then the connection is kept open, idle
        sock.sendall(first)
        sock.setblocking(False)
        self.result.opened += 1
        return _SlowConnection(kind, sock, rest)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            open_now = 0
            for index, connection in enumerate(self._connections):
                if self._ended(connection):
                    connection.sock.close()
                    try:
                        self._connections[index] = self._open(connection.kind)
                    except OSError:
                        continue  # counted as not open; tried again next tick
                open_now += 1
                if connection.rest and connection is self._connections[index]:
                    try:
                        connection.sock.send(connection.rest[:1])
                        connection.rest = connection.rest[1:]
                    except OSError:
                        pass
            self.result.open_min = min(self.result.open_min, open_now)

    def _ended(self, connection: _SlowConnection) -> bool:
        """Whether the server answered or closed the connection; counted."""
        try:
            data = connection.sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.result.closed_silently += 1
            return True
        try:
            status = int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            status = 0
        self.result.answered[status] = self.result.answered.get(status, 0) + 1
        return True


def _read_answer(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, from a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return data
