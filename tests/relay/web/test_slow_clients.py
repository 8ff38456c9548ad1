"""Slow and stalled clients against the real Procfile web process: with 36 of them open, signed
POSTs and /readyz still answer at once; a request not received within RELAY_READ_TIMEOUT gets a
JSON 408, and nothing of it reaches Redis."""

import socket
import threading
import time

import pytest
import requests

from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from relay.domain.samples import sample_event, to_body
from relay.domain.signature import compute
from relay.store.inbox import waiting
from tests.conftest import SECRET
from tests.relay.web.web_process import AnswerReader, Web, WebProcess, closed_by_server, read_answer
from tests.test_processes import process_env, start, stop

pytestmark = pytest.mark.slow  # starts the Procfile's web process

READ_TIMEOUT = 3.0  # short, so that the test waits little for it; the default is longer
PROMPT = 1.0  # seconds: what "at once" means on a shared, noisy 2-core machine
EACH_KIND = 6


def signed_event(session: str, sequence: int = 0) -> tuple[bytes, str]:
    body = to_body(sample_event("WMS_LOADED", session, sequence, timestamp=int(time.time())))
    return body, compute(SECRET, body)


def post_head(body: bytes, mac: str, framing: str | None = None) -> bytes:
    framing = framing or f"Content-Length: {len(body)}"
    return (
        f"POST /hooks/wms HTTP/1.1\r\nHost: relay.test\r\nContent-Type: application/json\r\n"
        f"X-WMS-Content-MAC: {mac}\r\n{framing}\r\n\r\n"
    ).encode()


class Trickler:
    """Send one byte to each of its sockets every `interval` seconds, from one thread, until
    stopped; a socket the server closed is dropped."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.pending: dict[socket.socket, bytes] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add(self, sock: socket.socket, rest: bytes) -> None:
        self.pending[sock] = rest

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            for sock, rest in list(self.pending.items()):
                if not rest:
                    continue
                try:
                    sock.send(rest[:1])
                    self.pending[sock] = rest[1:]
                except OSError:
                    self.pending[sock] = b""


@pytest.fixture
def web(tmp_path, settings, redis):
    env = {"REDIS_URL": settings.redis_url.reveal(), "RELAY_CONFIG": settings.config_path}
    with WebProcess(tmp_path / "web.log", WEB_CONCURRENCY="2", RELAY_READ_TIMEOUT=f"{READ_TIMEOUT:g}", **env) as web:
        yield web


def test_ingest_answers_at_once_beside_36_slow_clients_and_the_slow_ones_get_408(web: Web, redis):
    trickler = Trickler()
    kinds: dict[str, list[socket.socket]] = {}

    def opened(kind: str, first: bytes, rest: bytes = b"") -> None:
        sock = web.connect()
        if first:
            sock.sendall(first)
        trickler.add(sock, rest)
        kinds.setdefault(kind, []).append(sock)

    for _ in range(EACH_KIND):  # an answered request, then an idle kept-alive connection
        sock = web.connect()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: relay.test\r\n\r\n")
        assert read_answer(sock).status == 200
        kinds.setdefault("idle keep-alive", []).append(sock)
    for i in range(EACH_KIND):
        body, mac = signed_event(f"slow-body-{i}")
        # Headers that never end: a byte every 0.25 s of one long header field.
        opened("slow headers", b"POST /hooks/wms HTTP/1.1\r\nHost: relay.test\r\n", b"X-Slow: " + b"a" * 1000)
        opened("slow body", post_head(body, mac), body)  # the whole head, then the body byte by byte
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        opened("slow chunked body", post_head(body, mac, "Transfer-Encoding: chunked"), chunked)
        opened("stalled after headers", post_head(body, mac))  # then nothing
        opened("silent", b"")  # connected, nothing sent
    opened_at = time.monotonic()
    trickler.thread.start()
    slow_clients = sum(len(socks) for socks in kinds.values())
    assert slow_clients >= 32

    try:
        latencies = []
        for sequence in range(10):
            body, mac = signed_event("prompt", sequence)
            headers = {"X-WMS-Content-MAC": mac, "Content-Type": "application/json"}
            started = time.monotonic()
            try:
                response = requests.post(f"{web.url}/hooks/wms", data=body, headers=headers, timeout=3)
                ready = requests.get(f"{web.url}/readyz", timeout=3)
            except requests.RequestException as exc:
                pytest.fail(f"request {sequence} beside {slow_clients} slow clients: {exc!r}")
            latencies.append(time.monotonic() - started)
            assert (response.status_code, ready.status_code) == (202, 200), response.text
        assert max(latencies) < PROMPT, f"a POST + /readyz took {max(latencies):.2f}s: {latencies}"
        # All of that happened while the slow clients were open: none was answered or closed yet.
        assert time.monotonic() - opened_at < READ_TIMEOUT
        for kind in ("slow headers", "slow body", "slow chunked body", "stalled after headers"):
            for sock in kinds[kind]:
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(1)
                sock.setblocking(True)

        # Past the deadline, every request that had begun to arrive gets its 408, in JSON.
        expected = {"error": "request_timeout", "detail": f"the request was not received within {READ_TIMEOUT:g}s"}
        for kind in ("slow headers", "slow body", "slow chunked body", "stalled after headers"):
            for sock in kinds[kind]:
                answer = read_answer(sock, timeout=READ_TIMEOUT + 3)
                assert (answer.status, answer.json()) == (408, expected), kind
                assert answer.headers["connection"] == "close"
                assert closed_by_server(sock, timeout=2), kind
        took = time.monotonic() - opened_at
        assert READ_TIMEOUT - 0.5 < took < READ_TIMEOUT + 2.5, took
        # A connection that sent nothing, or nothing more after its answer, is closed without one.
        for kind in ("silent", "idle keep-alive"):
            for sock in kinds[kind]:
                assert closed_by_server(sock, timeout=READ_TIMEOUT + 3), kind
    finally:
        trickler.stopped.set()
        for socks in kinds.values():
            for sock in socks:
                sock.close()

    # Only the prompt POSTs were queued; of the slow bodies, not one byte reached Redis.
    assert [e["id"] for e in waiting(redis)] == [f"wms:prompt:{i}" for i in range(10)]
    assert not redis.keys("*slow-body*")
    # One line each at INFO, no traceback.
    assert web.log().count(": 408 request_timeout: the request was not received within 3s") == 4 * EACH_KIND, web.log()
    assert "Traceback" not in web.log() and " ERROR " not in web.log()


def test_a_body_that_arrives_slowly_but_in_time_is_accepted(web: Web, redis):
    body, mac = signed_event("in-time")
    with web.connect() as sock:
        sock.sendall(post_head(body, mac))
        for start in range(0, len(body), len(body) // 4 + 1):
            time.sleep(0.3)
            sock.sendall(body[start : start + len(body) // 4 + 1])
        answer = read_answer(sock)
    assert (answer.status, answer.json()) == (202, {"status": "accepted", "id": "wms:in-time:0"})
    assert [e["id"] for e in waiting(redis)] == ["wms:in-time:0"]


def test_a_bad_read_timeout_is_reported_once_with_the_other_problems_and_exits_3(tmp_path, settings):
    env = process_env(
        PORT=str(free_port()),
        REDIS_URL=settings.redis_url.reveal(),
        RELAY_CONFIG=str(tmp_path / "missing.yaml"),
        RELAY_READ_TIMEOUT="soon",
    )
    process = start(procfile_command("web"), env, tmp_path / "web.log")
    try:
        code = process.wait(timeout=30)
    finally:
        stop(process)
    log = (tmp_path / "web.log").read_text()
    assert code == 3, log
    assert log.count(f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory") == 1, log
    assert log.count("RELAY_READ_TIMEOUT: must be a number of seconds, more than 0 and at most 300, got 'soon'") == 1
    assert "Traceback" not in log and "Booting worker" not in log


def test_a_body_announced_over_the_limit_is_refused_at_once_not_waited_for(web: Web, redis, relay_config):
    limit = relay_config.ingest.max_body_bytes
    body, mac = signed_event("too-big")
    with web.connect() as sock:
        # Over MAX_CONTENT_LENGTH (the limit + 1, relay.web.app), so Flask refuses it unread.
        sock.sendall(post_head(body, mac, f"Content-Length: {limit + 2}"))  # and then nothing
        started = time.monotonic()
        answer = read_answer(sock, timeout=READ_TIMEOUT)
    assert time.monotonic() - started < PROMPT
    detail = f"request body is larger than {limit} bytes"
    assert (answer.status, answer.json()) == (413, {"error": "payload_too_large", "detail": detail})
    assert [k for k in redis.keys("*") if not k.startswith(b"relay:stats:")] == []  # but its count


def test_pipelined_requests_on_a_kept_alive_connection_are_all_answered_in_order(web: Web, redis):
    bodies = [signed_event("pipelined", sequence) for sequence in range(3)]
    with web.connect() as sock:
        requests_bytes = b"".join(post_head(body, mac) + body for body, mac in bodies)
        sock.sendall(requests_bytes + b"GET /healthz HTTP/1.1\r\nHost: relay.test\r\n\r\n")
        reader = AnswerReader(sock)
        answers = [reader.next() for _ in range(4)]
    assert [(a.status, a.json()["id"]) for a in answers[:3]] == [(202, f"wms:pipelined:{i}") for i in range(3)]
    assert answers[3].status == 200
    assert [e["id"] for e in waiting(redis)] == [f"wms:pipelined:{i}" for i in range(3)]


def test_expect_100_continue_is_answered_before_the_body_is_read_and_only_once(web: Web, redis):
    body, mac = signed_event("continue")
    with web.connect() as sock:
        sock.sendall(post_head(body, mac, f"Expect: 100-continue\r\nContent-Length: {len(body)}"))
        reader = AnswerReader(sock)
        interim = reader.next()  # the client waits for it before it sends the body
        sock.sendall(body)
        answer = reader.next()
    assert interim.status == 100
    assert (answer.status, answer.json()) == (202, {"status": "accepted", "id": "wms:continue:0"})
