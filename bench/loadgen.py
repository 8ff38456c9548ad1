"""An open-loop load generator: requests leave on a fixed schedule whether or not earlier ones
have been answered, and each latency is counted from when its request was due, not from when it
could leave (so a stalled server cannot hide its queue: no coordinated omission).

It shares the machine with the server it measures, so it is kept cheap: one thread, a selector,
one non-blocking connection per request (gunicorn's sync workers close every connection after
one response anyway), no HTTP library. Its own CPU share is reported with the figures.
"""

import errno
import selectors
import socket
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
