"""`./dev bench` (python -m bench): measure ingest, delivery and footprint against baselines in
one run, size Redis for a day's traffic, print a report with each target's verdict, and keep the
raw figures as JSON.

The relay, its baselines and the load all share this machine, and machines are noisy: only the
ratios within one run mean anything, never the absolute figures of different runs.

`chaos` is a soak under faults, not a measurement (bench/chaos.py): it fails the command (exit 1)
when anything accepted was lost or the relay answered a 5xx other than 503 (docs/delivery.md).
"""

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

from redis import Redis

from bench import chaos, delivery, ingest, isolation, sizing
from bench.processes import ROOT
from devtools.local_redis import LocalRedis

PARTS = ("ingest", "delivery", "isolation", "soak", "sizing", "chaos")
TARGETS = {
    "ingest": 0.50,
    "p99_ms": 25.0,
    "delivery": 0.80,
    "bytes_per_event": 1024,
    "rss_growth": 0.10,
    "fast_p99_ms": 250.0,
    "kill_to_retry_s": 5.0,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "parts", nargs="*", metavar="{ingest,delivery,isolation,soak,sizing,chaos}", help="what to run (default: all)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run: it proves the harness, not the figures"
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per delivery run (default 20000)")
    parser.add_argument("--soak-events", type=int, default=100_000, help="events for the RSS soak (default 100000)")
    parser.add_argument("--workers", type=int, default=2, help="Procfile worker processes (default 2)")
    parser.add_argument("--sessions", type=int, default=2_000, help="sizing: WMS sessions delivered (default 2000)")
    parser.add_argument(
        "--fail-rate", type=float, default=0.02, help="sizing: deliveries whose first attempt fails (default 0.02)"
    )
    parser.add_argument(
        "--dead-rate", type=float, default=0.002, help="sizing: deliveries that become dead letters (default 0.002)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds; the median counts (default 3)")
    parser.add_argument(
        "--rate", type=float, help="open-loop requests/s: ingest latency (default 1000), chaos (default 100)"
    )
    parser.add_argument("--duration", type=float, help="chaos: seconds of sending (default 60, --quick 8)")
    parser.add_argument(
        "--redis-kill", action="store_true", help="chaos: SIGKILL Redis (a crash) instead of a clean shutdown"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part {unknown[0]!r} (choose from {', '.join(PARTS)})")
    if args.sessions < 1:
        parser.error(f"--sessions: must be at least 1, got {args.sessions}")
    if min(args.fail_rate, args.dead_rate) < 0 or args.fail_rate + args.dead_rate > 1:
        parser.error(
            f"--fail-rate and --dead-rate: must be shares from 0 to 1 in all, got {args.fail_rate} and {args.dead_rate}"
        )
    parts = args.parts or list(PARTS)
    if args.quick:
        args.events, args.soak_events, args.rounds, args.sessions = 500, 2_000, 1, 100
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = ROOT / ".relay" / "bench" / stamp
    workdir.mkdir(parents=True)
    report: dict = {"date": stamp, "machine": _machine(), "args": vars(args)}
    if set(parts) - {"chaos"}:
        _measure(parts, args, workdir, report)
    if "chaos" in parts:
        plan = chaos.plan(args.duration, args.rate, args.workers, quick=args.quick, redis_kill=args.redis_kill)
        report["chaos"] = chaos.run(workdir / "chaos", plan)
        _print_chaos(report["chaos"])
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\nraw figures and process logs: {workdir.relative_to(ROOT)}")
    return 0 if report.get("chaos", {"ok": True})["ok"] else 1


def _measure(parts: list[str], args: argparse.Namespace, workdir: Path, report: dict) -> None:
    """The performance parts, on one private Redis."""
    with LocalRedis() as server:
        redis = Redis.from_url(server.url)
        env = {
            "REDIS_URL": server.url,
            "RELAY_CONFIG": str(delivery.relay_config(workdir / "relay.yaml", "http://127.0.0.1:9", 1)),
        }
        if "ingest" in parts:
            quick = {"seconds": 2, "latency_seconds": 2} if args.quick else {"seconds": 8, "latency_seconds": 10}
            report["ingest"] = ingest.run(
                redis, env, workdir, rounds=args.rounds, rate=args.rate or 1000, connections=32, threads=2, **quick
            )
            _print_ingest(report["ingest"])
        if "delivery" in parts or "soak" in parts or "isolation" in parts:
            sink = delivery.Sink(workdir)
            try:
                if "delivery" in parts:
                    report["delivery"] = _delivery(redis, env, workdir, sink, args)
                if "isolation" in parts:
                    seconds = 3 if args.quick else 15
                    report["isolation"] = isolation.run(
                        redis, env, workdir, sink.url, rate=100, seconds=seconds, workers=args.workers
                    )
                    _print_isolation(report["isolation"])
                if "soak" in parts:
                    report["soak"] = delivery.soak(
                        redis,
                        env,
                        workdir,
                        sink,
                        events=args.soak_events,
                        workers=args.workers,
                        warmup=min(2000, args.soak_events),
                    )
                    _print_soak(report["soak"])
            finally:
                sink.stop()
        if "sizing" in parts:
            report["sizing"] = sizing.run(
                redis,
                server.url,
                workdir,
                sessions=args.sessions,
                workers=args.workers,
                fail_rate=args.fail_rate,
                dead_rate=args.dead_rate,
            )
            print("\n".join(sizing.report_lines(report["sizing"])))


def _delivery(redis: Redis, env: dict, workdir: Path, sink: delivery.Sink, args: argparse.Namespace) -> dict:
    noop = delivery.noop_run(redis, env, workdir, jobs_count=args.events, workers=args.workers)
    one = delivery.relay_run(redis, env, workdir, sink, events=args.events, destinations=1, workers=args.workers)
    three = delivery.relay_run(
        redis, env, workdir, sink, events=args.events, destinations=3, workers=args.workers, offset=args.events
    )
    result = {
        "noop": noop,
        "one_destination": one,
        "three_destinations": three,
        "ratio_one": one["steady_per_s"] / noop["steady_per_s"],
        "ratio_three": three["steady_per_s"] / noop["steady_per_s"],
    }
    print(f"\n## Delivery ({args.events} events, {args.workers} Procfile workers; steady = 10%..90% of the run)")
    print(f"  no-op RQ jobs          {noop['steady_per_s']:8.0f}/s   ({noop['per_s']:.0f}/s overall)")
    for name, run in (("1 destination", one), ("3 destinations", three)):
        ratio = run["steady_per_s"] / noop["steady_per_s"]
        print(
            f"  relay, {name:15s} {run['steady_per_s']:8.0f} events/s ({run['per_s']:.0f}/s overall)"
            f"  {ratio:.2f}x  {_verdict(ratio >= TARGETS['delivery'], '>= 0.80x')}"
        )
    for name, run in (("1 destination", one), ("3 destinations", three)):
        for state in ("queued", "delivered"):
            usage = run[f"bytes_per_event_{state}"]
            total = sum(usage.values())
            print(
                f"  Redis bytes/event, {name}, {state}: {total:.0f} (body {run['body_bytes']:.0f})  "
                + ", ".join(f"{k} {v:.0f}" for k, v in usage.items())
            )
    return result


def _print_ingest(result: dict) -> None:
    print("\n## Ingest (Procfile web line, gunicorn --workers 2; wrk -t2 -c32; median of rounds)")
    for name, rps in result["median_rps"].items():
        ratio = result["ratio_vs_hello"][name]
        verdict = _verdict(ratio >= TARGETS["ingest"], ">= 0.50x") if name == "relay" else ""
        print(f"  {name:6s} {rps:8.0f} req/s  {ratio:.2f}x hello  non-2xx {result['non_2xx'][name]}  {verdict}")
    print(f"  open loop at {result['rate']:.0f} req/s (latency from when each request was due; medians of rounds):")
    for name, lat in result["latency_at_rate"].items():
        verdict = _verdict(lat["p99_ms"] <= TARGETS["p99_ms"], "p99 <= 25 ms") if name == "relay" else ""
        print(
            f"  {name:6s} p50 {lat['p50_ms']:6.1f} ms  p99 {lat['p99_ms']:6.1f} ms {lat['p99_ms_each_round']}"
            f"  max {lat['max_ms']:6.1f} ms"
            f"  statuses {lat['statuses']}  errors {lat['errors']}  generator CPU {lat['generator_cpu_share']:.0%}"
            f"  {verdict}"
        )


def _print_isolation(result: dict) -> None:
    print("\n## Isolation (Procfile web + workers; events posted at 100/s; /slow answers after 2 s)")
    for name in ("without_neighbour", "with_slow_neighbour"):
        run = result[name]
        verdict = _verdict(run["fast_p99_ms"] <= TARGETS["fast_p99_ms"], "p99 <= 250 ms") if run["neighbour"] else ""
        slow = (
            f"; slow had {run['slow_received_when_fast_done']} and {run['slow_waiting_when_fast_done']} waiting"
            if run["neighbour"]
            else ""
        )
        print(
            f"  fast destination {name.replace('_', ' ')}: 202 -> receipt p50 {run['fast_p50_ms']:.1f} ms, "
            f"p99 {run['fast_p99_ms']:.1f} ms, max {run['fast_max_ms']:.1f} ms "
            f"({run['fast_received']}/{run['events']} received{slow})  {verdict}"
        )
    kill = result["kill"]
    first = kill["kill_to_first_retry_s"]
    print(
        f"  SIGKILL of every worker with {kill['events']} retries due within {kill['retries_due_within_s_of_kill']} s,"
        f" one new worker: first retry {first} s after the kill, latest retry {kill['retry_late_max_s']} s after"
        f" its due time, {kill['retried']}/{kill['events']} retried  "
        f"{_verdict(first is not None and first <= TARGETS['kill_to_retry_s'], '<= 5 s')}"
    )


def _print_soak(result: dict) -> None:
    growth = max(result["growth"])
    print(f"\n## Worker RSS over {result['events_after_warmup']} events after warm-up ({result['workers']} workers)")
    print(
        f"  after warm-up {result['rss_kib_after_warmup']} KiB, after {result['rss_kib_after']} KiB, "
        f"growth {', '.join(f'{g:+.1%}' for g in result['growth'])}  "
        f"{_verdict(growth < TARGETS['rss_growth'], '< 10%')}"
    )


def _print_chaos(result: dict) -> None:
    p, t = result["plan"], result["timeline"]
    print(
        f"\n## Chaos soak ({p['rate']:.0f} events/s for {p['duration']:.0f} s through the Procfile's web and "
        f"{p['workers']} workers; a worker SIGKILLed at {t['worker_killed_at_s']} s, the callback receiver down "
        f"{t['receiver_down_s']} s, Redis {'killed' if p['redis_kill'] else 'stopped'} {t['redis_down_s']} s)"
    )
    print(
        f"  sent {result['events']} events in {result['requests']} requests: answers {result['answers']}; "
        f"accepted {result['accepted']}, never accepted {result['never_accepted']}, "
        f"accepted twice {result['accepted_twice']}"
    )
    print(
        f"  503 {result['refused_503']} ({result['refused_503_while_redis_down']} while Redis was down), "
        f"2xx while Redis was down {result['accepted_while_redis_down']}, other 5xx {result['other_5xx']}, "
        f"no answer {result['no_answer']}; duplicates answered 200: {result['duplicates_answered']} "
        f"({result['resent']} sent again on purpose)"
    )
    print(
        f"  2xx answered in (ms, from when each request left) {result['answer_ms']}; the sender started "
        f"events up to {result['sender_behind_s']} s late; CPU seconds {result['cpu_s']}"
    )
    for name, d in result["destinations"].items():
        print(
            f"  {name:8s} expected {d['expected']:6d}  delivered {d['delivered']:6d}  lost {d['lost']}  "
            f"duplicate deliveries {d['duplicate_deliveries']}  unexpected {d['unexpected']}  "
            f"failed attempts {d['failed_attempts']} ({d['failed_then_delivered']} events delivered later)  "
            f"dead letters {d['dead_letters']}  202 to arrival (ms) {d['latency_ms']}"
        )
    r, k = result["receiver_restart"], result["killed_worker"]
    print(
        f"  receiver restart: {r['failed_events']} events refused while it was down, {r['later_delivered']} "
        f"delivered after; paused {result['pauses'] or 'never'}"
    )
    print(
        f"  killed worker pid {k['pid']} (exit {k['returncode']}, gone: {k['gone']}), replaced by pid "
        f"{k['replacement']}; sends resent after a lost lease {result['resends_after_lost_lease']}, inbox "
        f"take-overs {result['inbox_takeovers']}; workers that exited by themselves "
        f"{result['unexpected_worker_exits'] or 'none'}; worker threads that crashed "
        f"{result['crashed_threads'] or 'none'}"
    )
    left = "; still queued or leased at the end" if result["backlog_left"] else ""
    print(
        f"  lost {result['lost']}; drained {result['drain_s']} s after the last event was accepted{left}  "
        f"{_verdict(result['ok'], 'nothing accepted lost, no 5xx but 503')}"
    )


def _verdict(ok: bool, target: str) -> str:
    return f"[target {target}: {'met' if ok else 'MISSED'}]"


def _machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {sys.platform}"


if __name__ == "__main__":
    sys.exit(main())
