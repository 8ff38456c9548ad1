"""The Procfile's processes and `./dev up`, run as real subprocesses on loopback."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from config.loader import load
from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from relay.domain.samples import sample_event, to_body
from relay.domain.signature import compute
from relay.store.inbox import waiting
from relay.store.jobs import QUEUE_NAME
from relay.web.app import create_app
from tests.conftest import CONFIG_ENV, SECRET
from tests.peers import Reply

pytestmark = pytest.mark.slow  # every test here runs the Procfile's processes

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def process_env(**extra) -> dict:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONUNBUFFERED="1", **CONFIG_ENV)
    env.update(extra)
    return env


def start(command: str, env: dict, log_path: Path) -> subprocess.Popen:
    """Run `command` through a shell, as honcho and PaaS runners do, in its own process group."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        ["bash", "-c", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


# Past gunicorn's graceful timeout (30 s): a web worker that was booting when SIGTERM came (a
# worker replaced at that moment, seen once in CI) is waited for that long before the master
# exits, cleanly. A normal stop takes well under a second.
STOP_TIMEOUT = 40.0


def stop(process: subprocess.Popen, sig=signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
    """Signal the process group and wait for it; fail if it does not end in time."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    return process.wait(timeout=timeout)


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (requests.RequestException, RedisError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def signed(event: dict) -> tuple[bytes, dict]:
    body = to_body(event)
    return body, {"Content-Type": "application/json", "X-WMS-Content-MAC": compute(SECRET, body)}


@pytest.fixture
def web(tmp_path, settings, redis):
    """The Procfile's web process: a real gunicorn on a free port."""
    port = free_port()
    env = process_env(PORT=str(port), REDIS_URL=settings.redis_url.reveal(), RELAY_CONFIG=settings.config_path)
    process = start(procfile_command("web"), env, tmp_path / "web.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/readyz", timeout=1).ok, 20, "gunicorn to answer /readyz")
    except AssertionError:
        stop(process)
        raise AssertionError((tmp_path / "web.log").read_text()) from None
    yield url
    assert stop(process) == 0, (tmp_path / "web.log").read_text()


def test_procfile_web_answers_a_signed_post(web, redis):
    body, headers = signed(sample_event("CONSTRAINT_VIOLATION", "proc-1", 0, timestamp=int(time.time())))
    response = requests.post(f"{web}/hooks/wms", data=body, headers=headers, timeout=5)
    assert (response.status_code, response.json()) == (202, {"status": "accepted", "id": "wms:proc-1:0"})
    assert [e["id"] for e in waiting(redis)] == ["wms:proc-1:0"]


def _chunks(body: bytes):
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


def test_procfile_web_limits_chunked_bodies_too(web, redis, relay_config):
    limit = relay_config.ingest.max_body_bytes
    head = to_body(sample_event("WMS_LOADED", "proc-chunked", 0, timestamp=int(time.time())))[:-1] + b',"pad":"'
    for size, expected in [(limit, 202), (limit + 1, 413)]:
        body = head + b"x" * (size - len(head) - 2) + b'"}'
        assert len(body) == size
        headers = {"X-WMS-Content-MAC": compute(SECRET, body)}
        response = requests.post(f"{web}/hooks/wms", data=_chunks(body), headers=headers, timeout=10)
        assert response.status_code == expected, response.text
    assert response.json() == {"error": "payload_too_large", "detail": f"request body is larger than {limit} bytes"}
    assert [e["id"] for e in waiting(redis)] == ["wms:proc-chunked:0"]


def test_procfile_web_keeps_one_event_of_concurrent_duplicates(web, redis):
    body, headers = signed(sample_event("WMS_LOADED", "proc-2", 0, timestamp=int(time.time())))
    statuses = []
    barrier = threading.Barrier(12)

    def post():
        barrier.wait()
        statuses.append(requests.post(f"{web}/hooks/wms", data=body, headers=headers, timeout=10).status_code)

    threads = [threading.Thread(target=post) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 11 + [202]
    assert [e["id"] for e in waiting(redis)] == ["wms:proc-2:0"]


def test_procfile_worker_drains_the_inbox_and_stops_cleanly_on_sigterm(tmp_path, app, settings, redis):
    client = app.test_client()
    for sequence in range(3):
        body, headers = signed(sample_event("WMS_LOADED", "proc-3", sequence, timestamp=int(time.time())))
        assert client.post("/hooks/wms", data=body, headers=headers).status_code == 202
    env = process_env(REDIS_URL=settings.redis_url.reveal(), RELAY_CONFIG=settings.config_path)
    process = start(procfile_command("worker"), env, tmp_path / "worker.log")
    try:
        # The test config has no rules: each event is routed nowhere, and says so.
        log = (tmp_path / "worker.log").read_text
        wait_for(lambda: log().count("matches no rule; not delivered anywhere") == 3, 20, "the worker to read 3 events")
        # Each line is written as its event is routed; the entries are deleted a round trip later,
        # once their sessions have recorded them.
        wait_for(lambda: waiting(redis) == [], 5, "the inbox entries deleted")
    finally:
        code = stop(process)
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, log
    assert "warm shut down requested" in log, log


def test_procfile_worker_retries_a_failed_delivery_through_its_scheduler(tmp_path, settings, redis, http_peer):
    config = tmp_path / "retry.yaml"
    config.write_text(
        'sources: {wms: {mac_secrets: ["${WMS_MAC_SECRET}"]}}\n'
        f'destinations: {{crm: {{type: http, url: "{http_peer.url}/in", signing_secret: s}}}}\n'
        "rules: [{name: all, match: {}, to: [crm]}]\n"
    )
    http_peer.script("/in", Reply(500, b"not yet"))
    env = process_env(REDIS_URL=settings.redis_url.reveal(), RELAY_CONFIG=str(config))
    app = create_app(*load(env))
    body, headers = signed(sample_event("API_ERROR", "proc-retry", 0, timestamp=int(time.time())))
    assert app.test_client().post("/hooks/wms", data=body, headers=headers).status_code == 202
    process = start(procfile_command("worker"), env, tmp_path / "worker.log")
    try:
        wait_for(lambda: len(http_peer.to("/in")) == 2, 30, "the retry, about 5 s after the first attempt")
    finally:
        stop(process)
    first, second = http_peer.to("/in")
    assert 3.5 <= second.at - first.at <= 10  # 5 s +-20%, plus the scheduler's polling
    assert second.body == first.body == body


def test_procfile_worker_finishes_the_job_in_hand_on_sigterm(tmp_path, settings, redis):
    queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
    job = queue.enqueue("tests.jobs.slow_job", "slow", 2.0)
    env = process_env(REDIS_URL=settings.redis_url.reveal(), RELAY_CONFIG=settings.config_path)
    process = start(procfile_command("worker"), env, tmp_path / "worker.log")
    try:
        wait_for(lambda: redis.get("slow:started"), 20, "the slow job to start")
        os.killpg(process.pid, signal.SIGTERM)  # as a platform restart does, mid-job
        code = process.wait(timeout=20)
    finally:
        stop(process)
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert redis.get("slow") == b"done"
    assert job.get_status(refresh=True) == JobStatus.FINISHED


def test_procfile_release_checks_the_config_and_redis(tmp_path, settings, redis_server):
    env = process_env(REDIS_URL=settings.redis_url.reveal(), RELAY_CONFIG=settings.config_path)
    ok = subprocess.run(["bash", "-c", procfile_command("release")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert (ok.returncode, ok.stderr) == (0, "")
    config_line, redis_line = ok.stdout.splitlines()
    assert config_line == f"{settings.config_path}: OK (1 source(s), 0 destination(s), 0 rule(s))"
    assert redis_line.startswith(f"redis at 127.0.0.1:{redis_server.port}: OK (Redis ")
    assert redis_line.endswith(", maxmemory-policy noeviction)")
    port = free_port()
    down = subprocess.run(
        ["bash", "-c", procfile_command("release")],
        cwd=ROOT,
        env=dict(env, REDIS_URL=f"redis://127.0.0.1:{port}/0"),
        capture_output=True,
        text=True,
    )
    assert (down.returncode, down.stderr) == (
        3,
        f"error: redis at 127.0.0.1:{port} is unreachable (connection refused)\n",
    )
    env.pop("WMS_MAC_SECRET")
    bad = subprocess.run(["bash", "-c", procfile_command("release")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert (
        bad.stderr
        == f"{settings.config_path}: sources.wms.mac_secrets[0]: environment variable WMS_MAC_SECRET is not set\n"
    )


def test_web_refuses_to_start_on_a_bad_config(tmp_path, settings):
    env = process_env(
        PORT=str(free_port()), REDIS_URL=settings.redis_url.reveal(), RELAY_CONFIG=str(tmp_path / "missing.yaml")
    )
    process = start(procfile_command("web"), env, tmp_path / "web.log")
    try:
        code = process.wait(timeout=30)
    finally:
        stop(process)
    log = (tmp_path / "web.log").read_text()
    assert code == 3
    assert f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory" in log
    # --preload: the config is checked once, before any worker is forked.
    assert "Traceback" not in log and "Booting worker" not in log


def test_dev_up_runs_everything_with_a_private_redis(tmp_path):
    port = free_port()
    state = tmp_path / "dev.env"
    env = process_env(PORT=str(port), RELAY_CONFIG=str(ROOT / "config" / "relay.dev.yaml"), RELAY_DEV_STATE=str(state))
    env.pop("REDIS_URL", None)
    process = start(f"{BIN / 'python'} -m devtools.up", env, tmp_path / "dev.log")
    log = (tmp_path / "dev.log").read_text
    try:
        redis_url = wait_for(
            lambda: re.search(r"started a private Redis at (\S+)", log()), 20, "the private Redis"
        ).group(1)
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok, 30, "the web process")
        sinks = dict(
            re.search(
                r"local sinks: Slack and callbacks at (?P<DEV_SINK_URL>\S+), mail at (?P<SMTP_URL>\S+)", log()
            ).groupdict()
        )
        written = dict(line.split("=", 1) for line in state.read_text().splitlines())
        assert written == {"REDIS_URL": redis_url, **sinks, "EMAIL_FROM": "relay@example.com", "PORT": str(port)}
        assert state.stat().st_mode & 0o777 == 0o600
        assert f"Listening at: http://127.0.0.1:{port}" in log()  # the public dev secret stays off the network
        sample = subprocess.run(
            [str(BIN / "relay"), "send-sample", "--session", "dev-1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sample.returncode == 0, sample.stdout + sample.stderr
        assert sample.stdout.splitlines()[-1] == '-> 202 {"status":"accepted","id":"wms:dev-1:0"}'
        # The sinks show what was sent: a Slack-shaped request, a signed callback, a mail.
        wait_for(lambda: "sink     | POST /slack" in log(), 20, "the Slack request at the sink")
        wait_for(lambda: "sink     |   webhook-id: wms:dev-1:0" in log(), 20, "the callback at the sink")
        wait_for(lambda: "Subject: [WMS ERROR] CONSTRAINT_VIOLATION - session dev-1" in log(), 20, "the mail")
        assert '"type": "header"' in log() and '":red_circle: [ERROR] CONSTRAINT_VIOLATION - session dev-1' in log()
    finally:
        code = stop(process)
    assert code == 0, log()
    assert "stopped the private Redis" in log()
    assert not state.exists()
    with pytest.raises(RedisError):
        Redis.from_url(redis_url, socket_connect_timeout=0.5).ping()
