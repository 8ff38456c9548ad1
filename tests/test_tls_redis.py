"""Redis over TLS (rediss://) for every process, against a real `redis-server --tls-port` whose
certificate the test makes with openssl: the Procfile's worker (its inbox reader and RQ's job
loop on the same TLS client), the release check, and /readyz, with REDIS_TLS_VERIFY set to the
test CA, to none, and to a CA that did not sign the server's certificate."""

import subprocess
import time

import pytest
import requests
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from config.loader import load_config
from config.secret import Secret
from config.settings import Settings
from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from relay.domain.samples import sample_event
from relay.store import presence
from relay.store.connection import connect
from relay.store.inbox import waiting
from relay.store.jobs import QUEUE_NAME
from relay.web.app import create_app
from tests.conftest import CONFIG_ENV
from tests.test_processes import BIN, ROOT, process_env, signed, start, stop, wait_for

pytestmark = pytest.mark.slow  # real processes on a TLS redis-server


@pytest.fixture
def tls_redis(tls_server, certs):
    """A client of the TLS server, verified with the test CA, flushed around the test."""
    client = connect(Secret(tls_server.url("rediss")), str(certs.ca))
    client.flushall()
    yield client
    client.flushall()
    client.close()


def tls_env(tls_server, config_path, verify: str, **extra) -> dict:
    return process_env(
        REDIS_URL=tls_server.url("rediss"), REDIS_TLS_VERIFY=verify, RELAY_CONFIG=str(config_path), **extra
    )


def test_procfile_worker_runs_over_tls_verified_with_a_ca_file(tmp_path, tls_server, certs, tls_redis, config_path):
    settings = Settings.from_env(
        {"REDIS_URL": tls_server.url("rediss"), "REDIS_TLS_VERIFY": str(certs.ca), "RELAY_CONFIG": str(config_path)}
    )
    client = create_app(settings, load_config(str(config_path), CONFIG_ENV, settings), tls_redis).test_client()
    for sequence in range(3):
        body, headers = signed(sample_event("WMS_LOADED", "tls-1", sequence, timestamp=1_700_000_000 + sequence))
        assert client.post("/hooks/wms", data=body, headers=headers).status_code == 202
    job = Queue(QUEUE_NAME, connection=tls_redis, serializer=JSONSerializer).enqueue("tests.jobs.slow_job", "tls", 0.1)
    process = start(procfile_command("worker"), tls_env(tls_server, config_path, str(certs.ca)), tmp_path / "w.log")
    log = (tmp_path / "w.log").read_text
    try:
        wait_for(lambda: log().count("matches no rule; not delivered anywhere") == 3, 30, "3 events read over TLS")
        wait_for(lambda: tls_redis.get("tls") == b"done", 30, "RQ's job run over TLS")
        assert waiting(tls_redis) == []
        assert len(presence.status(tls_redis, 60).running) == 1  # its heartbeat, over TLS too
    finally:
        code = stop(process)
    assert code == 0, log()
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert [w.left for w in presence.workers(tls_redis)] == [True]  # its clean exit marked it gone


def test_worker_with_verification_off_runs_over_tls(tmp_path, tls_server, tls_redis, config_path):
    result = subprocess.run(
        [str(BIN / "python"), "-m", "workers", "--burst"],
        cwd=ROOT,
        env=tls_env(tls_server, config_path, "none"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert [w.left for w in presence.workers(tls_redis)] == [True]  # it was seen, and left


@pytest.mark.parametrize("verify", ["required", "other"])
def test_worker_refusing_the_certificate_says_why_and_exits_1(tls_server, certs, config_path, verify):
    value = str(certs.other_ca) if verify == "other" else verify
    against = f"the CA file {certs.other_ca}" if verify == "other" else "the system's CA certificates"
    result = subprocess.run(
        [str(BIN / "python"), "-m", "workers", "--burst"],
        cwd=ROOT,
        env=tls_env(tls_server, config_path, value),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        f"TLS certificate verification failed for redis at 127.0.0.1:{tls_server.port} "
        f"(self-signed certificate in certificate chain; checked against {against}): set REDIS_TLS_VERIFY to the "
        "path of the CA file that signed the server's certificate, or to none for a Redis with a self-signed "
        "certificate (Heroku Redis)"
    ) in result.stderr


def test_release_check_over_tls(tls_server, certs, config_path):
    command = [str(BIN / "relay"), "check-config", "--connect"]
    ok = subprocess.run(command, env=tls_env(tls_server, config_path, str(certs.ca)), capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1].startswith(f"redis at 127.0.0.1:{tls_server.port}: OK (Redis ")
    bad = subprocess.run(command, env=tls_env(tls_server, config_path, "required"), capture_output=True, text=True)
    assert bad.returncode == 3
    assert bad.stderr.startswith(f"error: TLS certificate verification failed for redis at 127.0.0.1:{tls_server.port}")


def test_readyz_over_tls_and_why_it_is_not_ready(tls_server, certs, tls_redis, config_path):
    settings = Settings.from_env({"REDIS_URL": tls_server.url("rediss"), "RELAY_CONFIG": str(config_path)})
    config = load_config(str(config_path), CONFIG_ENV, settings)
    ready = create_app(settings, config, tls_redis).test_client().get("/readyz")
    assert (ready.status_code, ready.json["status"]) == (200, "ready")
    unverified = connect(Secret(tls_server.url("rediss")), "none")
    assert create_app(settings, config, unverified).test_client().get("/readyz").status_code == 200
    refused = create_app(settings, config, connect(Secret(tls_server.url("rediss")))).test_client().get("/readyz")
    assert (refused.status_code, refused.json) == (
        503,
        {
            "error": "not_ready",
            "detail": f"TLS certificate verification failed for redis at 127.0.0.1:{tls_server.port} "
            "(self-signed certificate in certificate chain; checked against the system's CA certificates): "
            "set REDIS_TLS_VERIFY to the path of the CA file that signed the server's certificate, "
            "or to none for a Redis with a self-signed certificate (Heroku Redis)",
        },
    )


def test_procfile_web_takes_events_over_tls_with_verification_off(tmp_path, tls_server, tls_redis, config_path):
    # Heroku Redis: rediss:// with a self-signed certificate, REDIS_TLS_VERIFY=none. The app factory
    # (relay/web/app.py) must pass settings.redis_tls_verify to connect() for this to pass.
    port = free_port()
    env = tls_env(tls_server, config_path, "none", PORT=str(port))
    process = start(procfile_command("web"), env, tmp_path / "web.log")
    log = (tmp_path / "web.log").read_text
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(lambda: requests.get(f"{url}/readyz", timeout=1).ok, 30, "gunicorn to be ready over TLS")
        except AssertionError:
            raise AssertionError(f"{requests.get(f'{url}/readyz', timeout=10).text}\n{log()}") from None
        body, headers = signed(sample_event("WMS_LOADED", "tls-web", 0, timestamp=int(time.time())))
        response = requests.post(f"{url}/hooks/wms", data=body, headers=headers, timeout=5)
        assert response.status_code == 202, response.text
    finally:
        code = stop(process)
    assert code == 0, log()
    assert [e["id"] for e in waiting(tls_redis)] == ["wms:tls-web:0"]
