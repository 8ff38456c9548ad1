"""Delivery: N events routed to HTTP callbacks on a local sink, drained by the Procfile's worker
processes, against the same number of no-op RQ jobs drained by the same processes.

Workers start suspended (RQ's `suspend`), so the clock starts with every event already queued and
every process warm; it stops when the sink has every delivery and no attempt is still in flight.
"""

import time
from pathlib import Path

import requests
from redis import Redis
from rq import Queue, Worker
from rq.registry import StartedJobRegistry
from rq.suspension import resume, suspend

from bench.footprint import per_event, usage_by_kind
from bench.processes import Process, rss_kib, wait_http
from bench.workload import SOURCE, relay_config, signed_bodies
from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from relay.domain.event import parse_event
from relay.store import jobs, keys
from relay.store.inbox import Inbox

NOOP = "os.getpid"  # a real importable function that does nothing worth measuring


class Sink:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(f"python -m bench.sink {self.port}", {}, workdir / "sink.log")
        wait_http(self.url + "/count", self.process)

    def count(self) -> int:
        return int(requests.get(self.url + "/count", timeout=5).text)

    def stop(self) -> None:
        self.process.stop()


class Workers:
    """`count` Procfile worker processes, started while RQ is suspended."""

    def __init__(self, redis: Redis, env: dict, workdir: Path, count: int):
        suspend(redis)
        self.processes = [Process(procfile_command("worker"), env, workdir / f"worker-{i}.log") for i in range(count)]
        deadline = time.monotonic() + 30
        while Worker.count(connection=redis) < count:
            for p in self.processes:
                p.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not register within 30 s")
            time.sleep(0.05)

    def rss_kib(self) -> list[int]:
        return [rss_kib(p.pid) for p in self.processes]

    def stop(self) -> None:
        for p in self.processes:
            p.stop()


def _load_events(redis: Redis, bodies) -> None:
    inbox = Inbox(redis, dedup_window_seconds=86400)
    for _, body in bodies:
        inbox.accept(parse_event(SOURCE, body), body)


def _load_noops(redis: Redis, count: int) -> None:
    pipe = redis.pipeline(transaction=False)
    for i in range(count):
        jobs.enqueue(redis, jobs.make(redis, NOOP, [], f"no-op {i}"), pipe)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def _drain(progress, total: int, done, timeout: float) -> dict:
    """Poll `progress()` until it reaches `total` and `done()`; rates overall and from 10% to 90%."""
    start = time.monotonic()
    marks = {}
    while True:
        now, value = time.monotonic(), progress()
        for fraction in (0.1, 0.9):
            if value >= fraction * total and fraction not in marks:
                marks[fraction] = now
        if value >= total and done():
            elapsed = now - start
            steady = (0.8 * total) / max(marks[0.9] - marks[0.1], 1e-6)
            return {"seconds": round(elapsed, 2), "per_s": total / elapsed, "steady_per_s": steady}
        if now - start > timeout:
            raise RuntimeError(f"only {value} of {total} done after {timeout:.0f} s")
        time.sleep(0.05)


def relay_run(
    redis: Redis, env: dict, workdir: Path, sink: Sink, *, events: int, destinations: int, workers: int, offset: int = 0
) -> dict:
    """Deliver `events` events to `destinations` callbacks each; footprint queued and after."""
    redis.flushall()
    config = relay_config(workdir / f"relay-{destinations}.yaml", sink.url, destinations)
    env = {**env, "RELAY_CONFIG": str(config)}
    before_sink = sink.count()
    pool = Workers(redis, env, workdir, workers)
    try:
        bodies = signed_bodies(events, offset)
        _load_events(redis, bodies)
        queued = usage_by_kind(redis)
        resume(redis)
        expected = events * destinations
        result = _drain(
            lambda: sink.count() - before_sink,
            expected,
            lambda: _nothing_in_flight(redis) and Queue(jobs.QUEUE_NAME, connection=redis).count == 0,
            timeout=max(120, events / 20),
        )
        delivered = usage_by_kind(redis)
    finally:
        pool.stop()
    result.update(
        {
            "events": events,
            "destinations": destinations,
            "workers": workers,
            "body_bytes": sum(len(b) for _, b in bodies) / events,
            "bytes_per_event_queued": per_event(queued, events),
            "bytes_per_event_delivered": per_event(delivered, events),
        }
    )
    return result


def noop_run(redis: Redis, env: dict, workdir: Path, *, jobs_count: int, workers: int) -> dict:
    """The same worker processes draining `jobs_count` no-op RQ jobs: the baseline."""
    redis.flushall()
    pool = Workers(redis, env, workdir, workers)
    try:
        _load_noops(redis, jobs_count)
        queue = jobs.queue(redis)
        resume(redis)
        result = _drain(
            lambda: jobs_count - queue.count,
            jobs_count,
            lambda: StartedJobRegistry(queue=queue).count == 0,
            timeout=max(120, jobs_count / 20),
        )
    finally:
        pool.stop()
    result.update({"jobs": jobs_count, "workers": workers})
    return result


def soak(
    redis: Redis,
    env: dict,
    workdir: Path,
    sink: Sink,
    *,
    events: int,
    workers: int,
    warmup: int = 2000,
    chunk: int = 10_000,
) -> dict:
    """Worker RSS after a warm-up and after `events` more events, delivered in chunks."""
    redis.flushall()
    config = relay_config(workdir / "relay-soak.yaml", sink.url, 1)
    env = {**env, "RELAY_CONFIG": str(config)}
    pool = Workers(redis, env, workdir, workers)
    resume(redis)
    samples = []
    try:
        sent = 0
        for size in [warmup] + [chunk] * (events // chunk) + ([events % chunk] if events % chunk else []):
            base = sink.count()
            _load_events(redis, signed_bodies(size, 10_000_000 + sent))
            _drain(
                lambda base=base: sink.count() - base,
                size,
                lambda: _nothing_in_flight(redis),
                timeout=max(120, size / 20),
            )
            sent += size
            samples.append((sent, pool.rss_kib()))
    finally:
        pool.stop()
    before, after = samples[0][1], samples[-1][1]
    return {
        "events_after_warmup": sent - warmup,
        "workers": workers,
        "rss_kib_after_warmup": before,
        "rss_kib_after": after,
        "growth": [round(a / b - 1, 4) for a, b in zip(after, before, strict=False)],
        "samples": samples,
    }


def _nothing_in_flight(redis: Redis) -> bool:
    """No delivery is queued or being sent, for any destination."""
    pattern_keys = [*redis.scan_iter(match=keys.queue_key("*")), *redis.scan_iter(match=keys.inflight_key("*"))]
    return all(redis.zcard(key) == 0 for key in pattern_keys)
