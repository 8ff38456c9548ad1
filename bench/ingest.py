"""Ingest: POST /hooks/<source> of the relay against a bare Flask hello and the naive relay, all
served by the Procfile's web line: closed-loop throughput (wrk) and open-loop latency. Then the
relay alone, with and without slow clients (bench.loadgen.SlowClients) holding connections open.
"""

import contextlib
import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.loadgen import SlowClients, open_loop
from bench.processes import ROOT, Process, wait_http, web_command
from bench.workload import SOURCE, signed_bodies, write_wrk_input
from devtools.local_redis import free_port

TARGETS = {"hello": "bench.baselines:hello", "naive": "bench.baselines:naive", "relay": "wsgi:app"}
SLOW_CLIENTS = 36  # issue 11 asks for 32 or more, of every kind
# The open loop beside slow clients runs at a fifth of the main latency rate: well below what the
# machine can serve, so that what shows is the slow clients' effect, not the machine's limit.
SLOW_RATE_SHARE = 0.2


def run(
    redis,
    env: dict,
    workdir: Path,
    *,
    rounds: int,
    seconds: float,
    rate: float,
    latency_seconds: float,
    connections: int,
    threads: int,
) -> dict:
    """Throughput (medians of `rounds`, targets interleaved) and latency at `rate` for each target."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench: wrk is needed for the ingest benchmark (apt-get install wrk)")
    # Enough distinct events that no run wraps around into duplicates, even at 3x the hello rate.
    bodies = signed_bodies(int(max(30_000, 20_000 * seconds)))
    wrk_input = workdir / "wrk-input.tsv"
    write_wrk_input(wrk_input, bodies)
    servers = {}
    try:
        for name, target in TARGETS.items():
            port = free_port()
            process = Process(
                web_command(target),
                {**env, "PORT": str(port), "BIND_HOST": "127.0.0.1", "WEB_CONCURRENCY": "2"},
                workdir / f"web-{name}.log",
            )
            servers[name] = (port, process)
        for port, process in servers.values():
            wait_http(f"http://127.0.0.1:{port}/", process)
        throughput: dict[str, list[float]] = {name: [] for name in TARGETS}
        errors: dict[str, int] = dict.fromkeys(TARGETS, 0)
        for port, _ in servers.values():  # warm up every worker (imports, connections)
            redis.flushall()
            _wrk(wrk, port, wrk_input, 1, connections, threads)
        for _ in range(rounds):
            for name, (port, process) in servers.items():
                redis.flushall()
                rps, non_2xx = _wrk(wrk, port, wrk_input, seconds, connections, threads)
                process.check_alive()
                throughput[name].append(rps)
                errors[name] += non_2xx
        # Latency in rounds too, the relay first: a saturated target (the naive relay cannot keep
        # up with 1,000 req/s here) leaves the machine busy for a moment after its run.
        runs: dict[str, list] = {name: [] for name in TARGETS}
        for _ in range(rounds):
            for name in ("relay", "hello", "naive"):
                redis.flushall()
                runs[name].append(
                    open_loop("127.0.0.1", servers[name][0], f"/hooks/{SOURCE}", bodies, rate, latency_seconds)
                )
                time.sleep(2)
        latency = {name: _latency_summary(results) for name, results in runs.items()}
        port, process = servers["relay"]
        beside_slow = _beside_slow_clients(
            redis,
            port,
            process,
            wrk,
            wrk_input,
            bodies,
            rounds=rounds,
            seconds=seconds,
            rate=rate,
            latency_seconds=latency_seconds,
            connections=connections,
            threads=threads,
        )
    finally:
        for _, process in servers.values():
            process.stop()
    medians = {name: statistics.median(values) for name, values in throughput.items()}
    return {
        "throughput_rps": throughput,
        "median_rps": medians,
        "non_2xx": errors,
        "ratio_vs_hello": {name: medians[name] / medians["hello"] for name in TARGETS},
        "latency_at_rate": latency,
        "rate": rate,
        "slow_clients": beside_slow,
    }


def _beside_slow_clients(
    redis, port: int, process: Process, wrk: str, wrk_input: Path, bodies: list, *, rounds: int, **load
) -> dict:
    """The relay's throughput and latency without, then with, SLOW_CLIENTS slow connections open."""
    seconds, latency_seconds = load["seconds"], load["latency_seconds"]
    rate = load["rate"] * SLOW_RATE_SHARE
    # Bodies of their own: the slow requests never complete, but must not collide with the load.
    slow_bodies = signed_bodies(SLOW_CLIENTS, offset=len(bodies))
    rps: dict[str, list[float]] = {"without": [], "with": []}
    errors: dict[str, int] = {"without": 0, "with": 0}
    runs: dict[str, list] = {"without": [], "with": []}
    slow_stats = []
    for _ in range(rounds):
        for condition in ("without", "with"):
            with contextlib.ExitStack() as stack:
                if condition == "with":
                    slow = stack.enter_context(SlowClients("127.0.0.1", port, f"/hooks/{SOURCE}", slow_bodies))
                    slow_stats.append(slow.result)
                    time.sleep(1.5)  # every one open and trickling
                redis.flushall()
                measured, non_2xx = _wrk(wrk, port, wrk_input, seconds, load["connections"], load["threads"])
                rps[condition].append(measured)
                errors[condition] += non_2xx
                redis.flushall()
                runs[condition].append(open_loop("127.0.0.1", port, f"/hooks/{SOURCE}", bodies, rate, latency_seconds))
            process.check_alive()
            time.sleep(2)
    medians = {condition: statistics.median(values) for condition, values in rps.items()}
    latency = {condition: _latency_summary(results) for condition, results in runs.items()}
    result = {
        "slow_clients": SLOW_CLIENTS,
        "throughput_rps": rps,
        "median_rps": medians,
        "non_2xx": errors,
        "throughput_ratio": medians["with"] / medians["without"],
        "latency_at_rate": latency,
        "p50_ratio": latency["with"]["p50_ms"] / latency["without"]["p50_ms"],
        "p99_ratio": latency["with"]["p99_ms"] / latency["without"]["p99_ms"],
        "slow_open_min": min(s.open_min for s in slow_stats),
        "slow_opened": sum(s.opened for s in slow_stats),
        "slow_answered": {
            status: sum(s.answered.get(status, 0) for s in slow_stats)
            for status in sorted({status for s in slow_stats for status in s.answered})
        },
        "slow_closed_silently": sum(s.closed_silently for s in slow_stats),
        "rate": rate,
    }
    _print_slow(result)
    return result


def _print_slow(result: dict) -> None:
    print(f"\n## Ingest beside {result['slow_clients']} slow clients (the relay; the same load without and with them)")
    rps = result["median_rps"]
    print(
        f"  throughput (wrk)  without {rps['without']:8.0f} req/s  with {rps['with']:8.0f} req/s"
        f"  {result['throughput_ratio']:.2f}x  non-2xx {result['non_2xx']}"
    )
    for condition in ("without", "with"):
        lat = result["latency_at_rate"][condition]
        print(
            f"  open loop at {result['rate']:.0f} req/s, {condition:7s}  p50 {lat['p50_ms']:6.1f} ms"
            f"  p99 {lat['p99_ms']:6.1f} ms {lat['p99_ms_each_round']}  max {lat['max_ms']:6.1f} ms"
            f"  statuses {lat['statuses']}  errors {lat['errors']}"
        )
    print(f"  latency with / without: p50 {result['p50_ratio']:.2f}x, p99 {result['p99_ratio']:.2f}x")
    print(
        f"  slow clients: at least {result['slow_open_min']} open at every tick; {result['slow_opened']} opened"
        f" (reopened when the server let one go); answered {result['slow_answered']},"
        f" closed without an answer {result['slow_closed_silently']}"
    )


def _latency_summary(results: list) -> dict:
    """Medians over the rounds of each round's p50, p99 and max, and everything each round saw."""
    return {
        "p50_ms": statistics.median(r.percentile(50) for r in results) * 1000,
        "p99_ms": statistics.median(r.percentile(99) for r in results) * 1000,
        "max_ms": statistics.median(max(r.latencies, default=float("nan")) for r in results) * 1000,
        "p99_ms_each_round": [round(r.percentile(99) * 1000, 1) for r in results],
        "sent": sum(r.sent for r in results),
        "statuses": {
            status: sum(r.statuses.get(status, 0) for r in results)
            for status in sorted({s for r in results for s in r.statuses})
        },
        "errors": sum(r.errors for r in results),
        "generator_behind_s": max(r.behind for r in results),
        "generator_cpu_share": statistics.median(r.cpu_share for r in results),
    }


def _wrk(wrk: str, port: int, wrk_input: Path, seconds: float, connections: int, threads: int) -> tuple[float, int]:
    env = {**os.environ, "BENCH_INPUT": str(wrk_input), "BENCH_THREADS": str(threads)}
    out = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(ROOT / "bench" / "post.lua"),
            f"http://127.0.0.1:{port}/hooks/{SOURCE}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, int(non_2xx.group(1)) if non_2xx else 0
