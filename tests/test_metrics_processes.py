"""GET /metrics through the Procfile's real processes: gunicorn with 2 web workers and 2 worker
processes; after known traffic, one scrape (answered by either web worker) has exact counts."""

import threading
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from relay.domain.samples import sample_event, to_body
from relay.domain.signature import compute
from tests.conftest import ADMIN_TOKEN, SECRET
from tests.peers import HttpPeer, Reply
from tests.test_processes import process_env, start, stop, wait_for

pytestmark = pytest.mark.slow

CONFIG = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  crm: {type: http, url: "%(http)s/crm", signing_secret: crm-secret, timeout: 2s}
  flaky:
    type: http
    url: "%(http)s/flaky"
    signing_secret: flaky-secret
    timeout: 2s
    retry: {delays: [1s], jitter: 0}
rules:
  - name: errors
    match: {severity: ">=WARN"}
    to: [flaky]
  - name: everything
    match: {}
    to: [crm]
sessions: {settle: 1s, idle_timeout: 60s}
"""
SESSIONS = 12  # each: WMS_LOADED then CONSTRAINT_VIOLATION, a failed session
FLAKY_FAILURES = 3  # the first answers of /flaky are 503s, retried once each


def post(url: str, body: bytes, secret: str = SECRET) -> int:
    mac = compute(secret, body)
    headers = {"X-WMS-Content-MAC": mac, "Content-Type": "application/json", "Connection": "close"}
    return requests.post(f"{url}/hooks/wms", data=body, headers=headers, timeout=10).status_code


def scrape(url: str) -> dict:
    response = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_a_scrape_sums_every_web_worker_and_every_worker_process(tmp_path: Path, redis_server):
    peer = HttpPeer().start()
    peer.script("/flaky", *[Reply(503, b"busy")] * FLAKY_FAILURES)
    config = tmp_path / "relay.yaml"
    config.write_text(CONFIG % {"secret": SECRET, "http": peer.url})
    multiproc = tmp_path / "metrics"
    port = free_port()
    env = process_env(
        PORT=str(port),
        REDIS_URL=redis_server.url,
        RELAY_CONFIG=str(config),
        RELAY_ADMIN_TOKEN=ADMIN_TOKEN,
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    redis = Redis.from_url(redis_server.url)
    redis.flushall()
    multiproc.mkdir()
    (multiproc / "counter_1.db").write_bytes(b"left by an earlier run")  # wiped at start
    processes = [start(procfile_command("web"), env, tmp_path / "web.log")]
    processes += [start(procfile_command("worker"), env, tmp_path / f"worker-{i}.log") for i in range(2)]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/readyz", timeout=1).ok, 20, "gunicorn to answer /readyz")
        wait_for(lambda: scrape(url)[("relay_workers_running", ())] == 2, 20, "both workers' heartbeats")
        bodies = [
            to_body(sample_event(code, f"m-{i}", seq))
            for i in range(SESSIONS)
            for seq, code in enumerate(["WMS_LOADED", "CONSTRAINT_VIOLATION"])
        ]
        statuses: list[int] = []

        def send(part: list[bytes]) -> None:
            statuses.extend(post(url, b) for b in part)

        # In parallel, each on a connection of its own: both web workers take some.
        threads = [threading.Thread(target=send, args=(bodies[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses.count(202) == 2 * SESSIONS
        assert [post(url, b) for b in bodies[:5]] == [200] * 5
        assert [post(url, bodies[0], secret="wrong") for _ in range(3)] == [401] * 3
        assert [post(url, b"[1]"), post(url, b"{")] == [400, 400]
        assert post(url, b"x" * 300_000) == 413

        def settled() -> dict | None:
            got = scrape(url)
            done = (
                got.get(("relay_delivery_attempts_total", (("destination", "crm"), ("outcome", "ok")))) == 2 * SESSIONS
                and got.get(("relay_delivery_attempts_total", (("destination", "flaky"), ("outcome", "ok"))))
                == SESSIONS
                and got.get(("relay_sessions_total", (("outcome", "failed"),))) == SESSIONS
            )
            return got if done else None

        got = wait_for(settled, 30, "every delivery and session counted")
        requests_total = {labels: v for (name, labels), v in got.items() if name == "relay_ingest_requests_total"}
        assert requests_total == {
            (("result", "accepted"), ("source", "wms")): 2 * SESSIONS,
            (("result", "duplicate"), ("source", "wms")): 5,
            (("result", "unauthorized"), ("source", "wms")): 3,
            (("result", "invalid"), ("source", "wms")): 2,
            (("result", "too_large"), ("source", "wms")): 1,
        }
        assert got[("relay_ingest_duration_seconds_count", ())] == 2 * SESSIONS + 11
        assert got[("relay_delivery_attempts_total", (("destination", "flaky"), ("outcome", "transient")))] == 3
        assert got[("relay_delivery_send_duration_seconds_count", (("destination", "flaky"),))] == SESSIONS + 3
        assert got[("relay_inbox_entries", ())] == 0
        assert got[("relay_destination_waiting", (("destination", "crm"),))] == 0
        assert got[("relay_destination_dead_letters", (("destination", "flaky"),))] == 0
        assert got[("relay_workers_running", ())] == 2
        # The two web workers both counted (a file each), and the scrape summed them.
        assert len(list(multiproc.glob("counter_*.db"))) == 2
        assert not (multiproc / "counter_1.db").exists()
        # Whichever web worker answers a scrape, the counts are the same.
        again = [scrape(url) for _ in range(4)]
        assert {a[("relay_ingest_requests_total", (("result", "accepted"), ("source", "wms")))] for a in again} == {
            2 * SESSIONS
        }
    finally:
        for process in processes:
            stop(process)
        peer.stop()
