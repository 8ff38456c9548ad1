"""Isolation: what a slow neighbour costs a fast destination, and how soon delayed work runs
after every worker was killed.

- Slow neighbour: signed events posted at a steady rate to the Procfile's web process, each
  routed to two HTTP callbacks on the sink: /fast answers at once, /slow after 2 s. Measured: the
  fast destination's latency from each event's 202 to its arrival at the sink (p50, p99), beside
  the same run without the slow neighbour.
- Kill: events whose first attempt gets a 503 (retry after 1 s); once every first attempt has
  failed, every worker is killed with SIGKILL and one new worker is started. Measured: the time
  from the kill to the first retry's arrival, and how late each retry arrived after its due time.
"""

import json
import os
import signal
import time
from pathlib import Path

import requests
from redis import Redis

from bench.processes import Process, wait_http, web_command
from bench.workload import SECRET, SOURCE, signed_bodies
from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from relay.domain.event import parse_event
from relay.store import keys, queues
from relay.store.inbox import Inbox

SIGNING = "bench-signing-secret"


def _config(path: Path, sink_url: str, destinations: dict[str, dict]) -> Path:
    config = {
        "sources": {SOURCE: {"mac_secrets": [SECRET]}},
        "destinations": {
            name: {"type": "http", "url": f"{sink_url}/{name}", "signing_secret": SIGNING, **extra}
            for name, extra in destinations.items()
        },
        "rules": [{"name": "everything", "match": {}, "to": list(destinations)}],
        "operations": {"lease_grace": "1s"},
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def _sink_log(sink_url: str) -> list[tuple[str, str, float, int]]:
    text = requests.get(sink_url + "/log", timeout=10).text
    return [tuple(json.loads(line)) for line in text.splitlines() if line]  # type: ignore[misc]


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def slow_neighbour(
    redis: Redis,
    env: dict,
    workdir: Path,
    sink_url: str,
    *,
    rate: float,
    seconds: float,
    workers: int,
    neighbour: bool,
    offset: int,
) -> dict:
    """Post `rate` events/s for `seconds` through the web process; the fast destination's latency."""
    redis.flushall()
    destinations: dict[str, dict] = {"fast": {}, **({"slow": {}} if neighbour else {})}
    tag = "with" if neighbour else "without"
    config = _config(workdir / f"relay-isolation-{tag}.yaml", sink_url, destinations)
    run_env = {**env, "RELAY_CONFIG": str(config)}
    port = free_port()
    web = Process(web_command(), {**run_env, "PORT": str(port), "BIND_HOST": "127.0.0.1"}, workdir / f"web-{tag}.log")
    pool = [Process(procfile_command("worker"), run_env, workdir / f"worker-{tag}-{i}.log") for i in range(workers)]
    acked: dict[str, float] = {}
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", web)
        bodies = signed_bodies(int(rate * seconds), offset)
        session = requests.Session()
        start = time.monotonic()
        for i, (mac, body) in enumerate(bodies):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            answer = session.post(
                f"http://127.0.0.1:{port}/hooks/{SOURCE}",
                data=body,
                headers={"Content-Type": "application/json", "X-WMS-Content-MAC": mac},
                timeout=10,
            )
            if answer.status_code != 202:
                raise RuntimeError(f"the relay answered {answer.status_code}: {answer.text}")
            acked[answer.json()["id"]] = time.time()
        deadline = time.monotonic() + 120
        while True:
            log = _sink_log(sink_url)
            fast = {hook_id: at for path, hook_id, at, _ in log if path == "/fast" and hook_id in acked}
            if len(fast) == len(acked) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        slow_received = sum(1 for path, hook_id, _, _ in log if path == "/slow" and hook_id in acked)
        slow_waiting = queues.backlog(redis, "slow").waiting if neighbour else 0
    finally:
        web.stop()
        for process in pool:
            process.stop()
    latencies = [(fast[i] - acked[i]) * 1000 for i in fast]
    return {
        "neighbour": neighbour,
        "events": len(acked),
        "fast_received": len(fast),
        "fast_p50_ms": round(_percentile(latencies, 0.5), 1),
        "fast_p99_ms": round(_percentile(latencies, 0.99), 1),
        "fast_max_ms": round(max(latencies), 1),
        "slow_received_when_fast_done": slow_received,
        "slow_waiting_when_fast_done": slow_waiting,
    }


def kill_all_workers(redis: Redis, env: dict, workdir: Path, sink_url: str, *, events: int, workers: int) -> dict:
    """Kill every worker while retries are pending; time from the kill to the first retry run."""
    redis.flushall()
    config = _config(
        workdir / "relay-kill.yaml",
        sink_url,
        {"fail-once": {"retry": {"delays": ["1s"] * 3, "jitter": 0}, "pause": {"after_failures": 0}}},
    )
    run_env = {**env, "RELAY_CONFIG": str(config)}
    bodies = signed_bodies(events, 5_000_000)
    inbox = Inbox(redis, dedup_window_seconds=86400)
    for _, body in bodies:
        inbox.accept(parse_event(SOURCE, body), body)
    ids = {parse_event(SOURCE, body).id for _, body in bodies}
    pool = [Process(procfile_command("worker"), run_env, workdir / f"worker-kill-{i}.log") for i in range(workers)]
    second = None
    try:
        deadline = time.monotonic() + 60
        while len({h for p, h, _, s in _sink_log(sink_url) if p == "/fail-once" and s == 503 and h in ids}) < events:
            if time.monotonic() > deadline:
                raise RuntimeError("the first attempts did not all fail within 60 s")
            time.sleep(0.02)
        for process in pool:
            os.killpg(process.pid, signal.SIGKILL)
        killed_at = time.time()
        due = {
            queues.parse_member(member)[0]: score
            for member, score in redis.zrange(keys.queue_key("fail-once"), 0, -1, withscores=True)
        }
        second = Process(procfile_command("worker"), run_env, workdir / "worker-kill-new.log")
        deadline = time.monotonic() + 60
        while True:
            retries = {h: at for p, h, at, s in _sink_log(sink_url) if p == "/fail-once" and s == 200 and h in ids}
            if len(retries) == events or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        for process in pool:
            process.stop()
        if second is not None:
            second.stop()
    late = [retries[i] - due[i] for i in retries if i in due]
    return {
        "events": events,
        "retried": len(retries),
        "kill_to_first_retry_s": round(min(retries.values()) - killed_at, 2) if retries else None,
        "retry_late_max_s": round(max(late), 2) if late else None,
        "retries_due_within_s_of_kill": round(max(due.values()) - killed_at, 2) if due else None,
    }


def run(redis: Redis, env: dict, workdir: Path, sink_url: str, *, rate: float, seconds: float, workers: int) -> dict:
    """Both scenarios; the slow neighbour beside its baseline in the same run."""
    without = slow_neighbour(
        redis, env, workdir, sink_url, rate=rate, seconds=seconds, workers=workers, neighbour=False, offset=7_000_000
    )
    with_slow = slow_neighbour(
        redis, env, workdir, sink_url, rate=rate, seconds=seconds, workers=workers, neighbour=True, offset=8_000_000
    )
    kill = kill_all_workers(redis, env, workdir, sink_url, events=50, workers=workers)
    return {"without_neighbour": without, "with_slow_neighbour": with_slow, "kill": kill}
