"""A Redis outage is two lines per worker process, whatever number of its threads retry: one when
it starts, one when it ends, with how long and how many tries failed. A worker started while
Redis is unreachable waits for it; what waiting cannot fix still exits 1 at once."""

import json
import logging
import os
import signal
import threading
import time

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, BusyLoadingError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from config.loader import load
from config.secret import Secret
from devtools.local_redis import LocalRedis, free_port
from devtools.procfile import procfile_command
from relay.domain.samples import sample_event
from relay.store.connection import connect
from relay.web.app import create_app
from tests.redis_servers import Server, make_certs
from tests.test_processes import process_env, signed, start, stop, wait_for
from workers import __main__ as worker_main
from workers.outage import Outage, waits_out
from workers.runtime import Runtime


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def outage(redis, caplog):
    caplog.set_level(logging.DEBUG, logger="workers.outage")
    return Outage(redis, Clock())


def said(caplog) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]


def test_many_threads_failing_is_one_line_and_its_end_another(outage, caplog, redis_server):
    refused = RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    threads = [threading.Thread(target=lambda: [outage.failed(refused) for _ in range(10)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outage.down
    outage.clock.now += 12.34
    for _ in range(8):
        outage.ok(outage.clock())
    assert not outage.down
    # Redis is up here: the fresh look finds nothing wrong, and the failure it was told of is explained.
    where = redis_server.url.removeprefix("redis://").removesuffix("/0")
    assert said(caplog) == [
        ("WARNING", f"redis unreachable: redis at {where}: ConnectionError: {str(refused).rstrip('.')}; retrying"),
        ("WARNING", "redis reachable again after 12.3 s (80 failed tries)"),
    ]
    (back,) = [r for r in caplog.records if r.getMessage().startswith("redis reachable again")]
    assert (back.outcome, back.duration_ms, back.failed_tries) == ("redis_back", 12340.0, 80)


def test_news_from_a_step_begun_before_the_last_change_changes_nothing(outage, caplog):
    closed = RedisConnectionError("Connection closed by server.")
    begun_before = outage.clock()
    outage.clock.now += 0.1
    outage.failed(closed)  # Redis goes away, as one thread finds
    outage.ok(begun_before)  # a reply that came before it did, reported after: still down
    assert outage.down
    outage.clock.now += 3
    begun_while_down = outage.clock()
    outage.clock.now += 0.1
    outage.ok(outage.clock())  # Redis is back
    outage.failed(closed, begun_while_down)  # a failure from while it was down, reported after
    assert not outage.down
    assert len(said(caplog)) == 2
    outage.failed(closed, outage.clock())  # a new outage
    assert outage.down and len(said(caplog)) == 3


def test_an_outage_is_what_waiting_fixes():
    assert waits_out(RedisConnectionError("refused"))
    assert waits_out(BusyLoadingError("Redis is loading the dataset in memory"))
    assert waits_out(ReadOnlyError("You can't write against a read only replica."))
    assert waits_out(ResponseError("OOM command not allowed when used memory > 'maxmemory'."))
    assert waits_out(AuthenticationError("invalid password"))  # at start it is fatal (workers/__main__.py)
    assert not waits_out(ResponseError("ERR Error running script: attempt to compare nil with number"))
    assert not waits_out(ValueError("a bug"))


# At start (workers/__main__.py): what waiting fixes is waited for; the rest exits 1 at once.


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    with Server(tls=make_certs(tmp_path_factory.mktemp("certs"))) as server:
        yield server


def starting(relay, url: str, caplog, stop_after: float | None = None) -> int | None:
    """What the worker's start decides for a Redis at `url`, and what it said (in caplog)."""
    caplog.set_level(logging.INFO, logger="workers")
    rt = Runtime.build(relay.rt.settings, relay.rt.config, connect(Secret(url)))
    stop_asked = threading.Event()
    if stop_after is not None:
        threading.Timer(stop_after, stop_asked.set).start()
    return worker_main._wait_until_usable(rt, stop_asked, wait=True)


def test_a_redis_older_than_6_2_is_refused_at_once(relay, redis_server, caplog, monkeypatch):
    real_info = Redis.info
    monkeypatch.setattr(Redis, "info", lambda self, *a, **k: {**real_info(self, *a, **k), "redis_version": "6.0.16"})
    assert starting(relay, redis_server.url, caplog) == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        f"redis at 127.0.0.1:{redis_server.port} is Redis 6.0.16; the relay needs 6.2 or newer (XAUTOCLAIM "
        "on its inbox stream): upgrade the Redis server or plan"
    )


@pytest.mark.parametrize(
    ("scheme", "said"),
    [
        ("redis", "expects TLS: REDIS_URL must start with rediss://, not redis://"),
        ("rediss", "TLS certificate verification failed for redis at "),
    ],
)
def test_a_tls_mismatch_or_a_refused_certificate_is_refused_at_once(relay, tls_server, caplog, scheme, said):
    assert starting(relay, tls_server.url(scheme), caplog) == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert said in line


def test_an_unreachable_redis_is_waited_for_until_told_to_stop(relay, caplog):
    port = free_port()
    assert starting(relay, f"redis://127.0.0.1:{port}/0", caplog, stop_after=1.5) == 0
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    # One line, not one per try (about one a second).
    assert said == [f"redis unreachable: redis at 127.0.0.1:{port} is unreachable (connection refused); retrying"]


# Real worker processes on a Redis of their own, stopped and started under them.

CONFIG = """\
sources: {wms: {mac_secrets: ["${WMS_MAC_SECRET}"]}}
destinations:
  crm: {type: http, url: "http://127.0.0.1:9/in", signing_secret: s}
rules: [{name: none, match: {event: [API_ERROR]}, to: [crm]}]
"""


@pytest.fixture
def worker_env(tmp_path):
    """A config with one destination (so a lane runs too) that no event is routed to, in JSON logs."""
    path = tmp_path / "relay.yaml"
    path.write_text(CONFIG)

    def env(redis_url: str, **extra: str) -> dict:
        return process_env(REDIS_URL=redis_url, RELAY_CONFIG=str(path), LOG_FORMAT="json", **extra)

    return env


def records(path) -> list[dict]:
    """Every line of a worker's log, each one JSON record."""
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def messages(path, start: str) -> list[str]:
    return [r["message"] for r in records(path) if r["message"].startswith(start)]


def post(env: dict, session: str) -> None:
    """Accept one event through the real app (its Redis must be up)."""
    body, headers = signed(sample_event("WMS_LOADED", session, 0, timestamp=int(time.time())))
    assert create_app(*load(env)).test_client().post("/hooks/wms", data=body, headers=headers).status_code == 202


@pytest.mark.slow
def test_an_outage_under_a_running_worker_is_one_line_when_it_starts_and_one_when_it_ends(tmp_path, worker_env):
    server = LocalRedis().start()
    env = worker_env(server.url)
    log = tmp_path / "worker.log"
    worker = start(procfile_command("worker"), env, log)
    try:
        post(env, "before")
        wait_for(lambda: messages(log, "wms:before:0 (WMS_LOADED, INFO) matches no rule"), 20, "the worker to run")
        server.stop()  # under the inbox reader, the lane, the ticker, the heartbeat and RQ's loop
        wait_for(lambda: messages(log, "redis unreachable: "), 10, "the outage's first line")
        time.sleep(3)  # every part retries about once a second meanwhile
        server = LocalRedis(port=server.port).start()
        wait_for(lambda: messages(log, "redis reachable again after "), 10, "the outage's last line")
        post(env, "after")  # and it works again
        wait_for(lambda: messages(log, "wms:after:0 (WMS_LOADED, INFO) matches no rule"), 20, "the event after")
    finally:
        code = stop(worker)
        server.stop()
    assert code == 0, log.read_text()
    assert messages(log, "redis unreachable: ") == [
        f"redis unreachable: redis at 127.0.0.1:{server.port} is unreachable (connection refused); retrying"
    ]
    (back,) = messages(log, "redis reachable again after ")
    back_record = next(r for r in records(log) if r["message"] == back)
    assert back_record["failed_tries"] >= 5 and back_record["duration_ms"] >= 3000, back_record
    assert not [r for r in records(log) if "traceback" in r], "a traceback was logged"
    assert not [r for r in records(log) if r["level"] == "ERROR"], "an error was logged"


@pytest.mark.slow
def test_a_worker_started_while_redis_is_down_waits_for_it_then_serves(tmp_path, worker_env):
    port = free_port()
    env = worker_env(f"redis://127.0.0.1:{port}/0")
    log = tmp_path / "worker.log"
    worker = start(procfile_command("worker"), env, log)
    server = None
    try:
        wait_for(lambda: messages(log, "redis unreachable: "), 20, "the worker to say it waits")
        time.sleep(2)
        assert worker.poll() is None, log.read_text()  # still there: no crash loop for the platform
        server = LocalRedis(port=port).start()
        wait_for(lambda: messages(log, "redis reachable again after "), 10, "the worker to find Redis")
        post(env, "late")
        wait_for(lambda: messages(log, "wms:late:0 (WMS_LOADED, INFO) matches no rule"), 20, "the worker to serve")
    finally:
        code = stop(worker)
        if server is not None:
            server.stop()
    assert code == 0, log.read_text()
    assert messages(log, "redis unreachable: ") == [
        f"redis unreachable: redis at 127.0.0.1:{port} is unreachable (connection refused); retrying"
    ]


@pytest.mark.slow
def test_sigterm_while_waiting_for_redis_ends_the_worker_at_once(tmp_path, worker_env):
    log = tmp_path / "worker.log"
    worker = start(procfile_command("worker"), worker_env(f"redis://127.0.0.1:{free_port()}/0"), log)
    try:
        wait_for(lambda: messages(log, "redis unreachable: "), 20, "the worker to say it waits")
        os.killpg(worker.pid, signal.SIGTERM)
        code = worker.wait(timeout=3)
    finally:
        stop(worker)
    assert code == 0, log.read_text()
    assert messages(log, "stopped before redis could be used")


@pytest.mark.slow
def test_what_waiting_cannot_fix_still_exits_1_at_once(tmp_path, worker_env):
    with Server("--requirepass", "right-password") as server:
        log = tmp_path / "worker.log"
        worker = start(procfile_command("worker"), worker_env(server.url()), log)
        try:
            code = worker.wait(timeout=10)
        finally:
            stop(worker)
    assert code == 1, log.read_text()
    where = f"127.0.0.1:{server.port}"
    assert [r["message"] for r in records(log)] == [
        f"redis at {where} requires a password, and REDIS_URL has none (redis://:<password>@{where})"
    ]
