"""Delivery under faults, with the real Procfile processes on loopback: retries through RQ's
scheduler, Retry-After, a worker killed mid-delivery, and Redis stopped under a running web process."""

import signal
import time

import pytest
import requests

from devtools.local_redis import LocalRedis, free_port
from devtools.procfile import procfile_command
from relay.domain.samples import sample_event, sample_session
from relay.store import keys
from relay.store.event_log import every_attempt
from tests.peers import Reply
from tests.test_processes import process_env, signed, start, stop, wait_for

pytestmark = pytest.mark.slow  # every test here runs the Procfile's processes

CONFIG = """\
sources: {wms: {mac_secrets: ["${WMS_MAC_SECRET}"]}}
destinations:
  crm:
    type: http
    url: "%(url)s/in"
    signing_secret: s
    timeout: 2s
    retry: {delays: [1s, 1s, 1s], jitter: 0}
rules: [{name: all, match: {}, to: [crm]}]
operations: {lease_grace: 1s, sweep_every: 1s}
"""


@pytest.fixture
def fault_env(tmp_path, redis_server, redis, http_peer):
    """The environment for Procfile processes whose one destination is the HTTP peer at /in."""
    path = tmp_path / "faults.yaml"
    path.write_text(CONFIG % {"url": http_peer.url})
    return process_env(REDIS_URL=redis_server.url, RELAY_CONFIG=str(path))


def accept(app_env, events):
    """POST signed events through the real app; all must be accepted."""
    from config.loader import load
    from relay.web.app import create_app

    client = create_app(*load(app_env)).test_client()
    for event in events:
        body, headers = signed(event)
        assert client.post("/hooks/wms", data=body, headers=headers).status_code == 202


def settled(redis, event_id: str) -> bool:
    """The delivery of `event_id` to crm is recorded done, and nothing of crm's is queued or in
    flight: nothing is left that could send it again."""
    return (
        redis.hget(keys.delivery_key(event_id), "crm") == b"ok"
        and not redis.zcard(keys.queue_key("crm"))
        and not redis.zcard(keys.inflight_key("crm"))
    )


def test_503_twice_then_200_is_delivered_once(tmp_path, fault_env, http_peer, redis):
    http_peer.script("/in", Reply(503, b"busy"), Reply(503, b"busy"))
    (event,) = sample_session(("API_ERROR",))
    event_id = f"wms:{event['sessionId']}:0"
    accept(fault_env, [event])
    worker = start(procfile_command("worker"), fault_env, tmp_path / "worker.log")
    try:
        wait_for(lambda: len(http_peer.to("/in")) >= 3, 30, "two retries from the destination's queue")
        # Then nothing more may come: once nothing is left that could send it, count what came.
        wait_for(lambda: settled(redis, event_id), 10, "the delivery recorded, with no lease or retry left")
    finally:
        stop(worker)
    sent = http_peer.to("/in")
    assert len(sent) == 3 and len({r.body for r in sent}) == 1
    assert [(a["attempt"], a["outcome"]) for a in every_attempt(redis)] == [
        (1, "transient"),
        (2, "transient"),
        (3, "ok"),
    ]
    assert sent[2].at - sent[0].at >= 2.0  # two 1 s delays, each counted from the failure's record


def test_429_with_retry_after_waits_at_least_that_long(tmp_path, fault_env, http_peer):
    # Longer than the 1 s schedule, so only an honoured Retry-After passes.
    http_peer.script("/in", Reply(429, b"slow down", {"Retry-After": "3"}))
    accept(fault_env, sample_session(("API_ERROR",)))
    worker = start(procfile_command("worker"), fault_env, tmp_path / "worker.log")
    try:
        wait_for(lambda: len(http_peer.to("/in")) == 2, 30, "the deferred attempt")
    finally:
        stop(worker)
    first, second = http_peer.to("/in")
    assert second.at - first.at >= 3.0


def test_a_worker_killed_mid_delivery_is_covered_by_the_next_one(tmp_path, fault_env, http_peer, redis):
    http_peer.script("/in", Reply(delay=1.5))  # the first send is still in flight when the worker dies
    (event,) = sample_session(("API_ERROR",))
    accept(fault_env, [event])
    first = start(procfile_command("worker"), fault_env, tmp_path / "first.log")
    try:
        wait_for(lambda: len(http_peer.to("/in")) == 1, 20, "the first send")
    finally:
        stop(first, signal.SIGKILL)
    # The lease (timeout 2 s + grace 1 s) runs out; a new worker takes the attempt again as it
    # starts. Only time passing ends a lease: sleep until the expiry recorded in Redis, no longer.
    ((_, expires),) = redis.zrange(keys.inflight_key("crm"), 0, -1, withscores=True)
    time.sleep(max(0.0, expires - time.time()))
    second = start(procfile_command("worker"), fault_env, tmp_path / "second.log")
    try:
        wait_for(lambda: len(http_peer.to("/in")) == 2, 20, "the delivery by the second worker")
        # Then nothing more may come: once nothing is left that could send it, count what came.
        event_id = f"wms:{event['sessionId']}:0"
        wait_for(lambda: settled(redis, event_id), 10, "the delivery recorded, with no lease or retry left")
    finally:
        stop(second)
    sent = http_peer.to("/in")
    assert len(sent) == 2  # delivered, with exactly the one duplicate that the kill allows
    assert "was lost in flight (its worker stopped?); trying it again" in (tmp_path / "second.log").read_text()


def test_sigterm_lets_the_delivery_in_flight_finish(tmp_path, fault_env, http_peer, redis):
    http_peer.script("/in", Reply(delay=1.5))
    (event,) = sample_session(("API_ERROR",))
    accept(fault_env, [event])
    worker = start(procfile_command("worker"), fault_env, tmp_path / "worker.log")
    try:
        wait_for(lambda: len(http_peer.to("/in")) == 1, 20, "the send")
    finally:
        code = stop(worker, signal.SIGTERM)  # as a platform restart does, mid-send
    assert code == 0, (tmp_path / "worker.log").read_text()
    event_id = f"wms:{event['sessionId']}:0"
    assert redis.hget(f"relay:delivery:{event_id}", "crm") == b"ok"  # finished and recorded before exiting
    assert redis.zcard(keys.inflight_key("crm")) == 0  # its lease given back: nothing left to re-send


def test_redis_stopped_under_the_web_process_loses_nothing_it_accepted(tmp_path, http_peer):
    data = tmp_path / "redis-data"
    data.mkdir()
    server = LocalRedis(persist_in=str(data)).start()
    path = tmp_path / "faults.yaml"
    path.write_text(CONFIG % {"url": http_peer.url})
    port = free_port()
    env = process_env(REDIS_URL=server.url, RELAY_CONFIG=str(path), PORT=str(port))
    web = start(procfile_command("web"), env, tmp_path / "web.log")
    url = f"http://127.0.0.1:{port}/hooks/wms"
    events = sample_session(("WMS_LOADED", "CAMERA_STARTED", "MEASUREMENT_STARTED", "MEASUREMENT_CREATED"))
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok, 20, "the web process")
        for event in events:
            body, headers = signed(event)
            assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 202
        server.stop()
        body, headers = signed(sample_event("PAGE_UNLOADED", "other", 0, timestamp=int(time.time())))
        refused = requests.post(url, data=body, headers=headers, timeout=10)
        assert (refused.status_code, refused.headers["Retry-After"]) == (503, "5")
        server = LocalRedis(port=server.port, persist_in=str(data)).start()
        worker = start(procfile_command("worker"), env, tmp_path / "worker.log")
        try:
            wait_for(lambda: len(http_peer.to("/in")) == len(events), 30, "every accepted event")
        finally:
            stop(worker)
    finally:
        stop(web)
        server.stop()
    assert sorted(r.body for r in http_peer.to("/in")) == sorted(signed(e)[0] for e in events)
