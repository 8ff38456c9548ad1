"""Worker presence with the Procfile's real worker processes and a real Redis: `relay status`,
/readyz and /healthz/workers with no worker, a running one, one that stopped cleanly (gone at
once) and one killed with SIGKILL (gone when its presence TTL ends); and the warning a worker
logs at start on a Redis that evicts keys."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest
from redis import Redis

from config.loader import load_config
from config.settings import Settings
from devtools.procfile import procfile_command
from relay.domain.samples import sample_event
from relay.store import presence
from relay.store.preflight import eviction_message
from relay.web.app import create_app
from tests.conftest import CONFIG_ENV
from tests.redis_servers import Server
from tests.test_processes import BIN, ROOT, process_env, signed, start, stop, wait_for

pytestmark = pytest.mark.slow  # the Procfile's worker, started and stopped

TTL = 2  # WORKER_PRESENCE_TTL for these workers: a killed one is gone 2 s after its last heartbeat
ABSENT_AFTER = 1
HINT = "scale the worker process (heroku ps:scale worker=1)"


@pytest.fixture
def env(settings):
    return process_env(
        REDIS_URL=settings.redis_url.reveal(),
        RELAY_CONFIG=settings.config_path,
        WORKER_PRESENCE_TTL=str(TTL),
        WORKER_ABSENT_AFTER=str(ABSENT_AFTER),
    )


@pytest.fixture
def client(env, redis):
    settings = Settings.from_env(env)
    return create_app(settings, load_config(settings.config_path, CONFIG_ENV, settings), redis).test_client()


def accept(client, session: str, count: int = 2) -> None:
    for sequence in range(count):
        body, headers = signed(sample_event("WMS_LOADED", session, sequence, timestamp=int(time.time())))
        assert client.post("/hooks/wms", data=body, headers=headers).status_code == 202


def relay_status(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "relay"), "status", *args], env=env, capture_output=True, text=True, timeout=30)


def test_no_worker_events_wait_absent_reported_with_the_inbox_lag(env, client, redis):
    accept(client, "nobody-1")
    time.sleep(ABSENT_AFTER + 0.1)  # never seen a worker: the oldest event's wait is the measure
    result = relay_status(env)
    assert result.returncode == 1, result.stdout + result.stderr
    head, inbox, problem = result.stdout.splitlines()
    assert head == "workers: 0 running"
    assert re.fullmatch(r"inbox: 2 waiting, the oldest for \d+\.\d s", inbox), inbox
    pattern = re.escape("events are being accepted but no worker has been seen (the oldest has waited ") + r"\d+"
    pattern += re.escape(f" s): {HINT}")
    assert re.fullmatch(pattern, problem), problem

    ready = client.get("/readyz")  # the web process is ready: no worker is not its problem
    assert ready.status_code == 200
    assert ready.json["status"] == "ready"
    assert ready.json["workers"]["running"] == 0
    assert ready.json["workers"]["inbox"]["waiting"] == 2
    assert re.fullmatch(pattern, ready.json["workers"]["problem"])
    absent = client.get("/healthz/workers")
    assert (absent.status_code, absent.json["error"]) == (503, "workers_absent")
    assert re.fullmatch(pattern, absent.json["detail"])


def test_a_running_worker_is_seen_and_a_clean_exit_is_gone_at_once(tmp_path, env, client, redis):
    accept(client, "seen-1")
    process = start(procfile_command("worker"), env, tmp_path / "worker.log")
    log = (tmp_path / "worker.log").read_text
    try:
        wait_for(lambda: log().count("matches no rule") == 2, 30, "the worker to read both events")
        found = presence.status(redis, ABSENT_AFTER)
        (worker,) = found.running
        assert worker.host == socket.gethostname()
        os.kill(worker.pid, 0)  # the pid it reported is a live process
        result = relay_status(env)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "workers: 1 running"
        assert lines[1].startswith(f"  {worker.id} (host {worker.host}, pid {worker.pid}): running, last seen ")
        assert lines[2] == "inbox: 0 waiting"
        healthy = client.get("/healthz/workers")
        assert (healthy.status_code, healthy.json["status"], healthy.json["workers"]["running"]) == (200, "ok", 1)
        # Heartbeats go on: the entry is rewritten every third of the TTL.
        first_seen = worker.seen
        wait_for(lambda: presence.status(redis, ABSENT_AFTER).running[0].seen > first_seen, 5, "a second heartbeat")
    finally:
        code = stop(process)
    assert code == 0, log()
    found = presence.status(redis, ABSENT_AFTER)  # at once: no waiting for the TTL
    assert found.running == []
    assert [(w.id, w.left) for w in found.workers] == [(worker.id, True)]
    assert relay_status(env).stdout.splitlines()[1].startswith(f"  {worker.id} (host {worker.host}, pid ")


def test_a_killed_worker_is_gone_when_its_ttl_ends(tmp_path, env, client, redis):
    process = start(procfile_command("worker"), env, tmp_path / "worker.log")
    try:
        wait_for(lambda: presence.status(redis, ABSENT_AFTER).running, 30, "the worker's first heartbeat")
    finally:
        assert stop(process, signal.SIGKILL) == -signal.SIGKILL
    killed_at = time.time()
    (worker,) = presence.status(redis, ABSENT_AFTER).running  # nothing said it left: still presumed running
    assert not worker.left
    wait_for(lambda: not presence.status(redis, ABSENT_AFTER).running, TTL + 2, "the worker to be presumed gone")
    assert time.time() >= worker.seen + TTL  # gone by its TTL, not before
    assert time.time() - killed_at <= TTL + 2

    accept(client, "killed-1", count=1)
    time.sleep(ABSENT_AFTER)
    result = relay_status(env)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1].startswith(
        f"  {worker.id} (host {worker.host}, pid {worker.pid}): presumed gone"
    )
    assert result.stdout.splitlines()[-1].startswith("events are being accepted but no worker has been seen for ")
    assert client.get("/healthz/workers").status_code == 503
    assert client.get("/readyz").status_code == 200


def test_a_worker_warns_at_start_when_redis_evicts_keys(tmp_path, settings):
    with Server() as server:
        with Redis.from_url(server.url()) as admin:
            admin.config_set("maxmemory-policy", "allkeys-lru")
        env = process_env(REDIS_URL=server.url(), RELAY_CONFIG=settings.config_path)
        result = subprocess.run(
            [str(BIN / "python"), "-m", "workers", "--burst"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "maxmemory-policy" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0]
    assert warnings[0].endswith(eviction_message(f"127.0.0.1:{server.port}", "allkeys-lru"))
