"""`python -m workers`: the Procfile's worker process: a reader of the inbox stream
(workers/drain.py), one sending lane per destination (workers/lanes.py), a ticker for timers
(workers/timers.py), and an RQ worker for announcements that does not fork per job.

RQ's default Worker forks for every job (~12 ms of CPU each here); SimpleWorker runs jobs in
this process (~3 ms). RQ's scheduler is not run: retries wait in their destination's queue and
timers in relay:due, where any worker takes them (relay/store/jobs.py says why). SIGTERM asks
for a warm shutdown: the job in hand and the inbox batch in hand finish, the lanes take nothing
more and the sends in flight are recorded, then it exits; SHUTDOWN_TIMEOUT seconds after the
SIGTERM it gives back the leases of the sends still in flight and exits anyway
(workers/shutdown.py), within the platform's window.

At start it checks Redis as `relay check-config --connect` does (relay/store/preflight.py).
While Redis is unreachable (restarting, failing over, still being provisioned) it waits, and
says so in one line: exiting would put it in the platform's crash loop, which Heroku backs off
for up to 20 minutes. What waiting cannot fix (a refused password, a TLS or certificate
mismatch, a Redis older than 6.2) exits 1 at once with the reason, as does any Redis problem of
a --burst run. An evicting maxmemory-policy is a warning. From then until it exits, its
heartbeat shows it in `relay status` (workers/timers.py).

Once running, a Redis outage is one line when it starts and one when it ends, for the whole
process (workers/outage.py), and each part retries on its own.
"""

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.client import Pipeline, PubSub, PubSubWorkerThread
from redis.exceptions import AuthenticationError, RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import DequeueTimeout
from rq.job import Job
from rq.serializers import JSONSerializer

from config.errors import ConfigError
from config.loader import load
from config.rules import rule_warnings
from relay import logs
from relay.store import jobs, preflight
from relay.store.connection import connect, explain
from workers import migrate, runtime, timers
from workers.drain import Drain
from workers.lanes import Lane
from workers.outage import Outage, waits_out
from workers.shutdown import Deadline
from workers.timers import Heartbeat, Ticker

log = logging.getLogger("workers")

REDIS_ERROR_PAUSE = 1.0  # seconds between tries while Redis is unreachable (RQ's steps, and at start)
# RQ's routine INFO lines, logged at DEBUG: its maintenance alone wrote two a minute while idle.
RQ_ROUTINE = (
    "Worker %s: cleaning registries for queue: %s",
    "Worker %s: cleaning group registries",
    "Worker %s: subscribing to channel %s",
    "Worker %s: unsubscribing from channel %s",
    "Worker %s: job %s result discarded immediately",
    "Worker %s: job %s result is kept for %s seconds",
    "Successfully completed %s job in %ss on worker %s",  # beside its "Job OK" line
    "Successfully completed job %s in %ss on worker %s",
)


class _Worker(SimpleWorker):
    """RQ's SimpleWorker, starting the inbox reader, the lanes and the ticker once its own signal
    handlers are in place: a SIGTERM before that would end the process (Python's default) in the
    middle of a batch. Its steps ride out a Redis outage, reported to `outage`."""

    background: list[Drain | Lane | Ticker] | None = None
    deadline: Deadline | None = None  # started by the first SIGTERM
    stop_asked: threading.Event | None = None  # set by a SIGTERM that came before RQ's handlers

    def __init__(self, *args: Any, outage: Outage | None = None, **kwargs: Any):
        kwargs.setdefault("queue_class", _queue_class(self))
        super().__init__(*args, **kwargs)
        self.outage = outage or Outage(self.connection)

    def _install_signal_handlers(self) -> None:
        # RQ's hook point (pinned RQ): if it were renamed, nothing would start, and
        # tests/test_processes.py would fail at once.
        super()._install_signal_handlers()
        if self.stop_asked is not None and self.stop_asked.is_set():
            self._stop_requested = True  # the loop ends before it takes a job; nothing was started
            if self.deadline is not None:
                self.deadline.start()
            return
        for part in self.background or []:
            part.start()
        if self.background:
            # The one line that says this worker works (RQ's own start-up lines are DEBUG).
            lanes = sorted(part.name for part in self.background if isinstance(part, Lane))
            log.info("worker %s ready: reading the inbox, sending to %s", self.name, ", ".join(lanes) or "nothing yet")

    def request_stop(self, signum: int, frame: Any) -> None:
        """RQ's warm shutdown, capped: the deadline starts with the first signal."""
        if self.deadline is not None:
            self.deadline.start()
        super().request_stop(signum, frame)

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

    def teardown(self) -> None:
        """RQ's, surviving a Redis outage: a worker stopped while Redis is away still exits 0
        (its entry expires with RQ's worker TTL)."""
        _outlive_redis_errors(self, "RQ's teardown", super().teardown, pause=False)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: PubSub, pubsub_thread: PubSubWorkerThread) -> None:
        # RQ's listener for `rq` commands logs each failed reconnection at ERROR; ours are counted.
        if not waits_out(exc):
            super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)
            return
        self.outage.failed(exc)
        time.sleep(2 * REDIS_ERROR_PAUSE)


def _queue_class(worker: _Worker) -> type[Queue]:
    """RQ's Queue, whose wait for a job reports a Redis outage to the worker's account and tries
    again a second later (RQ logs each try at ERROR, and backs off to a try a minute)."""

    class _Queue(Queue):
        @classmethod
        def dequeue_any(cls, *args: Any, **kwargs: Any) -> tuple[Job, Queue] | None:
            started = worker.outage.clock()
            try:
                found = super().dequeue_any(*args, **kwargs)
            except RedisError as exc:
                if not waits_out(exc):
                    raise
                worker.outage.failed(exc, started)
                if not worker._stop_requested:
                    time.sleep(REDIS_ERROR_PAUSE)
                raise DequeueTimeout(0) from None  # RQ's loop: a wait that found nothing; it waits again
            worker.outage.ok(started)
            return found

    return _Queue


def _outlive_redis_errors(worker: _Worker, what: str, step: Callable[..., Any], *args: Any, pause: bool = True) -> None:
    started = worker.outage.clock()
    try:
        step(*args)
    except RedisError as exc:
        if not waits_out(exc):
            raise
        worker.outage.failed(exc, started)
        log.debug("%s failed: %s", what, exc)
        if pause and not worker._stop_requested:
            time.sleep(REDIS_ERROR_PAUSE)
        return
    worker.outage.ok(started)


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
    logs.configure(settings.log_level, settings.log_format)
    logs.route_uncaught()
    logs.demote_to_debug("rq.worker", RQ_ROUTINE)
    for warning in rule_warnings(config.rules):
        log.warning("%s: %s", settings.config_path, warning)
    rt = runtime.Runtime.build(settings, config)
    # Until RQ installs its handlers: a SIGTERM while waiting for Redis ends the wait, exit 0.
    stop_asked = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_asked.set())
    code = _wait_until_usable(rt, stop_asked, wait=not args.burst)
    if code is not None:
        if code == 0:
            log.info("stopped before redis could be used; nothing was started")
        return code
    runtime.install(rt)  # for RQ's entry points (workers/runtime.py)
    heartbeat = Heartbeat(rt)
    heartbeat.start()  # `relay status` and /healthz/workers see this worker from now on
    try:
        _run(rt, burst=args.burst, stop_asked=stop_asked, heartbeat=heartbeat)
    finally:
        heartbeat.stop()  # gone at once, not after its presence TTL
    return 0


def _wait_until_usable(rt: runtime.Runtime, stop_asked: threading.Event, wait: bool) -> int | None:
    """Check Redis as `relay check-config --connect` does; None once it can be used, else the exit
    code: 1 (said why) for what waiting cannot fix, or when not told to `wait`; 0 if a signal
    came while waiting. An evicting maxmemory-policy is a warning here: the release phase refuses it."""
    while not stop_asked.is_set():
        started = rt.outage.clock()
        try:
            rt.redis.ping()
        except RedisError as exc:
            reason = explain(exc, rt.redis)
            if not wait or not _passes(exc, reason):
                log.error("%s", reason)
                return 1
            rt.outage.failed(exc, started)  # one line: "redis unreachable: ...; retrying"
            stop_asked.wait(REDIS_ERROR_PAUSE)
            continue
        rt.outage.ok(started)
        report = preflight.check(rt.redis, allow_eviction=True)
        if not report.ok and wait and _still_away(rt):
            continue  # it went away again between the two: wait for it
        for finding in report.findings:
            level = {preflight.ERROR: logging.ERROR, preflight.WARNING: logging.WARNING}.get(
                finding.level, logging.INFO
            )
            log.log(level, "%s", finding.message)
        return None if report.ok else 1
    return 0


def _passes(exc: RedisError, reason: str) -> bool:
    """Whether waiting may fix what `exc` (explained as `reason`) says: not a refused password, nor
    a TLS mismatch or certificate (a connection reset, to explain(), until it looks at the port)."""
    return waits_out(exc) and not isinstance(exc, AuthenticationError) and "TLS" not in reason


def _still_away(rt: runtime.Runtime) -> bool:
    try:
        rt.redis.ping()
    except RedisError as exc:
        return _passes(exc, explain(exc, rt.redis))
    return False


def _run(rt: runtime.Runtime, burst: bool, stop_asked: threading.Event, heartbeat: Heartbeat) -> None:
    """Read the inbox, send and run timers until told to stop (or, in burst mode, until nothing is due)."""
    # Deliveries may wait for destinations since removed from the config: their lanes end them
    # as dead letters. An earlier version's scheduled jobs and leases move to where they are taken.
    rt.find_lanes()
    migrate.carry_over(rt)
    timers.ensure(rt)
    inbox = Drain(rt)
    ticker = Ticker(rt)
    lanes = list(rt.lanes.values())
    # A client of its own: RQ raises its client's read timeout to 415 s for its blocking wait,
    # which the lanes and the reader must not inherit (a Redis that stops answering would hold
    # each of their calls that long).
    rq_redis = connect(rt.settings.require_redis_url(), rt.settings.redis_tls_verify)
    # A minute, not RQ's ten: maintenance is when RQ re-queues jobs abandoned by a dead worker.
    worker = _Worker(
        [jobs.QUEUE_NAME], connection=rq_redis, serializer=JSONSerializer, maintenance_interval=60, outage=rt.outage
    )
    worker.stop_asked = stop_asked
    worker.deadline = Deadline(rt, rt.settings.shutdown_timeout, heartbeat.stop)
    if burst:
        timers.tick(rt)
        while inbox.drain_all() + sum(lane.start_due() for lane in list(rt.lanes.values())):
            rt.wait_idle()
    else:
        rt.running = True  # lanes found later (workers/timers.py) start at once
        worker.background = [*lanes, ticker, inbox]
    worker.work(burst=burst, logging_level=rt.settings.log_level, with_scheduler=False)
    # A warm shutdown ends the job loop; then the inbox batch in hand finishes, the lanes and the
    # ticker take nothing more, and the sends already taken finish and are recorded, unless the
    # deadline comes first.
    inbox.stop()
    ticker.stop()
    for lane in list(rt.lanes.values()):
        lane.stop()
    rt.wait_idle()


if __name__ == "__main__":
    sys.exit(main())
