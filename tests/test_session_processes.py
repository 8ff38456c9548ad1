"""Scripted WMS sessions, played by `relay simulate` through the Procfile's real web and worker
processes: outcomes and reasons, one derived event per session, one grouped Slack message per
session, per-session order at an ordered callback, and a burst folded into digests."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from redis import Redis

from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from relay.domain.scenarios import SCENARIOS
from relay.store import keys
from tests.conftest import SECRET
from tests.peers import HttpPeer
from tests.test_processes import process_env, start, stop, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  outcomes: {type: http, url: "%(http)s/outcomes", signing_secret: outcomes-secret, timeout: 2s}
  ops-slack: {type: slack, webhook_url: "%(http)s/slack/T000/B000/XXXX"}
  burst-slack: {type: slack, webhook_url: "%(http)s/burst/T000/B000/XXXX", rate_limit: 1/s}
  crm: {type: http, url: "%(http)s/crm", signing_secret: crm-secret, ordered: true, gap_timeout: 2s, timeout: 2s}
rules:
  - name: outcomes
    match: {event: ["SESSION_*"]}
    to: [outcomes]
  - name: burst
    match: {event: [SESSION_FAILED]}
    to: [burst-slack]
  - name: grouped-alerts
    match: {severity: ">=WARN"}
    group_by: session
    group_wait: 1s
    group_interval: 60s
    to: [ops-slack]
  - name: everything
    match: {}
    to: [crm]
sessions: {settle: 1s, idle_timeout: 4s}
"""
PLAYED = re.compile(r"^session (\S+) \(([a-z-]+)\): ", re.MULTILINE)


@pytest.fixture(scope="module")
def relay_processes(tmp_path_factory, redis_server):
    """gunicorn and two workers, as the Procfile runs them, around one Redis and one HTTP peer."""
    tmp = tmp_path_factory.mktemp("sessions")
    peer = HttpPeer().start()
    config = tmp / "relay.yaml"
    config.write_text(CONFIG % {"secret": SECRET, "http": peer.url})
    port = free_port()
    env = process_env(PORT=str(port), REDIS_URL=redis_server.url, RELAY_CONFIG=str(config), LOG_LEVEL="INFO")
    Redis.from_url(redis_server.url).flushall()
    processes = [start(procfile_command("web"), env, tmp / "web.log")]
    processes += [start(procfile_command("worker"), env, tmp / f"worker-{i}.log") for i in range(2)]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/readyz", timeout=1).ok, 20, "gunicorn to answer /readyz")
        yield url, env, peer, Redis.from_url(redis_server.url)
    finally:
        for process in processes:
            stop(process)
        peer.stop()


def simulate(env: dict, url: str, *args: str) -> dict[str, str]:
    """Run `relay simulate` against the running relay; return sessionId -> scenario."""
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", "simulate", *args, "--url", f"{url}/hooks/wms"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(PLAYED.findall(result.stdout))


def _bodies(peer: HttpPeer, path: str) -> list[dict]:
    return [json.loads(r.body) for r in peer.to(path)]


def test_every_scenario_in_order_and_shuffled_comes_to_its_outcome(relay_processes):
    url, env, peer, _ = relay_processes
    played = simulate(env, url, "all")
    played |= simulate(env, url, "all", "--shuffle", "--seed", "7")
    assert sorted(played.values()) == sorted(list(SCENARIOS) * 2)

    def outcomes():
        return {b["sessionId"]: b for b in _bodies(peer, "/outcomes") if b["sessionId"] in played}

    wait_for(lambda: len(outcomes()) == len(played), 30, "an outcome for every session")
    # Exactly one derived event per session, with the scenario's outcome and reason.
    derived = [b for b in _bodies(peer, "/outcomes") if b["sessionId"] in played]
    assert len(derived) == len(played)
    for session_id, body in outcomes().items():
        scenario = SCENARIOS[played[session_id]]
        assert (body["payload"]["outcome"], body["payload"]["reason"]) == (scenario.outcome, scenario.reason)
        assert body["event"] == f"SESSION_{scenario.outcome.upper()}"

    # The ordered callback got every WMS event of each session once, in sequence order, and no
    # derived event.
    crm = _bodies(peer, "/crm")
    for session_id, name in played.items():
        sequences = [b["sequence"] for b in crm if b["sessionId"] == session_id]
        assert sequences == list(range(len(SCENARIOS[name].steps))), (name, sequences)
    assert not [b for b in crm if "derived" in b]

    # One grouped Slack message per session with a WARN or ERROR event, listing all of them.
    def grouped(session_id: str) -> list[dict]:
        return [b for b in _bodies(peer, "/slack/T000/B000/XXXX") if session_id in json.dumps(b)]

    with_alerts = {sid for sid, name in played.items() if any(s.code in WARN_OR_ERROR for s in SCENARIOS[name].steps)}
    wait_for(lambda: all(grouped(sid) for sid in with_alerts), 15, "a grouped message per alerting session")
    for session_id in played:
        assert len(grouped(session_id)) == (session_id in with_alerts), played[session_id]


WARN_OR_ERROR = {
    "CAMERA_PERMISSION_DENIED",
    "CONSTRAINT_VIOLATION",
    "MEASUREMENT_CANCELED",
    "WEBSOCKET_DISCONNECTED",
    "WEBSOCKET_RECONNECTION_FAILED",
    "API_ERROR",
}


def test_a_burst_of_50_failed_sessions_folds_into_digests(relay_processes):
    url, env, peer, redis = relay_processes

    def idle() -> bool:
        busy = (keys.queue_key("burst-slack"), keys.inflight_key("burst-slack"))
        timers = [json.loads(m)[0] for m in redis.zrange(keys.DUE, 0, -1)]
        return not any(redis.zcard(key) for key in busy) and not {"session", "group", "order"} & set(timers)

    # What earlier sessions (another test) sent to burst-slack is done, so that only ours is counted.
    wait_for(idle, 30, "no earlier delivery or timer pending")
    before = len(peer.to("/burst/T000/B000/XXXX"))
    played = simulate(env, url, "camera-denied", "--sessions", "50")
    assert len(played) == 50

    def delivered() -> int:
        states = [redis.hget(keys.delivery_key(f"wms:{sid}:session"), "burst-slack") for sid in played]
        return sum(state == b"ok" for state in states)

    wait_for(lambda: delivered() == 50, 30, "all 50 SESSION_FAILED delivered to the rate-limited Slack")
    messages = _bodies(peer, "/burst/T000/B000/XXXX")[before:]
    # At 1 message a second, 50 alerts would take 50 s; folded, a handful of messages say them all.
    assert len(messages) <= 6, len(messages)
    digests = [m for m in messages if "failed sessions" in m["text"]]
    assert digests
    counts = [int(re.search(r"(\d+) failed sessions", m["text"]).group(1)) for m in digests]
    assert sum(counts) + (len(messages) - len(digests)) == 50
