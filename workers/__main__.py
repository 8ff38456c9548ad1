"""`python -m workers`: the Procfile's worker process: a reader of the inbox stream
(workers/drain.py), one sending lane per destination (workers/lanes.py), a ticker for timers
(workers/timers.py), and an RQ worker for announcements that does not fork per job.

RQ's default Worker forks for every job (~12 ms of CPU each here); SimpleWorker runs jobs in
this process (~3 ms). RQ's scheduler is not run: retries wait in their destination's queue and
timers in relay:due, where any worker takes them (relay/store/jobs.py says why). SIGTERM asks
for a warm shutdown: the job in hand and the inbox batch in hand finish, the lanes take nothing
more and the sends in flight are recorded, then it exits.

At start it checks Redis as `relay check-config --connect` does (relay/store/preflight.py): it
exits 1 with the reason when Redis cannot be used, and warns when its maxmemory-policy evicts
keys. From then until it exits, its heartbeat shows it in `relay status` (workers/timers.py).
"""

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from config.errors import ConfigError
from config.loader import load
from config.rules import rule_warnings
from relay import logs
from relay.store import jobs, preflight
from workers import migrate, runtime, timers
from workers.drain import Drain
from workers.lanes import Lane
from workers.timers import Heartbeat, Ticker

log = logging.getLogger("workers")

REDIS_ERROR_PAUSE = 1.0  # seconds between RQ's tries while Redis is unreachable


class _Worker(SimpleWorker):
    """RQ's SimpleWorker, starting the inbox reader, the lanes and the ticker once its own signal
    handlers are in place: a SIGTERM before that would end the process (Python's default) in the
    middle of a batch."""

    background: list[Drain | Lane | Ticker] | None = None

    def _install_signal_handlers(self) -> None:
        # RQ's hook point (pinned RQ): if it were renamed, nothing would start, and
        # tests/test_processes.py would fail at once.
        super()._install_signal_handlers()
        for part in self.background or []:
            part.start()

    # RQ's job loop waits out a Redis outage only while it waits for a job: an error in these
    # steps ends the loop ("found an unhandled exception, quitting"), and with it the worker, for a
    # blip the inbox reader, the lanes and the timers ride out (found by bench/chaos.py). A
    # platform restarts a process that exits, but Heroku backs off crash loops for up to 20 min.
    def check_for_suspension(self, burst: bool) -> None:
        """RQ's, surviving a Redis outage."""
        _outlive_redis_errors(self, "checking for `rq suspend`", super().check_for_suspension, burst)

    def run_maintenance_tasks(self) -> None:
        """RQ's, surviving a Redis outage (they run again a minute later)."""
        _outlive_redis_errors(self, "RQ's maintenance", super().run_maintenance_tasks)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's, surviving a Redis outage."""
        _outlive_redis_errors(self, "RQ's heartbeat", super().heartbeat, timeout, pipeline)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """RQ's; a job whose bookkeeping fails in an outage is left to RQ's maintenance, which
        finds it abandoned (an announcement: the lanes find their work without it anyway)."""
        _outlive_redis_errors(self, f"running job {job.id}", super().execute_job, job, queue)


def _outlive_redis_errors(worker: SimpleWorker, what: str, step: Callable[..., Any], *args: Any) -> None:
    try:
        step(*args)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("%s failed, Redis is unreachable (%s); going on in %g s", what, exc, REDIS_ERROR_PAUSE)
        if not worker._stop_requested:
            time.sleep(REDIS_ERROR_PAUSE)


def main(argv: list[str] | None = None) -> int:
    """Check settings and config, then read the inbox, send and run timers until told to stop."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit once nothing is due now (later retries stay queued)")
    args = parser.parse_args(argv)
    try:
        settings, config = load()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    for warning in rule_warnings(config.rules):
        log.warning("%s: %s", settings.config_path, warning)
    rt = runtime.Runtime.build(settings, config)
    if not _redis_usable(rt):
        return 1
    runtime.install(rt)  # for RQ's entry points (workers/runtime.py)
    heartbeat = Heartbeat(rt)
    heartbeat.start()  # `relay status` and /healthz/workers see this worker from now on
    try:
        _run(rt, burst=args.burst)
    finally:
        heartbeat.stop()  # gone at once, not after its presence TTL
    return 0


def _redis_usable(rt: runtime.Runtime) -> bool:
    """Check Redis as `relay check-config --connect` does; say what is wrong and return False when
    it cannot be used. An evicting maxmemory-policy is a warning here: the release phase refuses it."""
    report = preflight.check(rt.redis, allow_eviction=True)
    for finding in report.findings:
        level = {preflight.ERROR: logging.ERROR, preflight.WARNING: logging.WARNING}.get(finding.level, logging.INFO)
        log.log(level, "%s", finding.message)
    return report.ok


def _run(rt: runtime.Runtime, burst: bool) -> None:
    """Read the inbox, send and run timers until told to stop (or, in burst mode, until nothing is due)."""
    # Deliveries may wait for destinations since removed from the config: their lanes end them
    # as dead letters. An earlier version's scheduled jobs and leases move to where they are taken.
    rt.find_lanes()
    migrate.carry_over(rt)
    timers.ensure(rt)
    inbox = Drain(rt)
    ticker = Ticker(rt)
    lanes = list(rt.lanes.values())
    # A minute, not RQ's ten: maintenance is when RQ re-queues jobs abandoned by a dead worker.
    worker = _Worker([jobs.queue(rt.redis)], connection=rt.redis, serializer=JSONSerializer, maintenance_interval=60)
    if burst:
        timers.tick(rt)
        while inbox.drain_all() + sum(lane.start_due() for lane in list(rt.lanes.values())):
            rt.wait_idle()
    else:
        rt.running = True  # lanes found later (workers/timers.py) start at once
        worker.background = [*lanes, ticker, inbox]
    worker.work(burst=burst, logging_level=rt.settings.log_level, with_scheduler=False)
    # A warm shutdown ends the job loop; then the inbox batch in hand finishes, the lanes and the
    # ticker take nothing more, and the sends already taken finish and are recorded.
    inbox.stop()
    ticker.stop()
    for lane in list(rt.lanes.values()):
        lane.stop()
    rt.wait_idle()


if __name__ == "__main__":
    sys.exit(main())
