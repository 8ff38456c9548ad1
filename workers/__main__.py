"""`python -m workers`: the Procfile's worker process: a reader of the inbox stream
(workers/drain.py) and an RQ worker, for retries, sweeps, probes and replays, that does not fork
per job.

RQ's default Worker forks for every job (~12 ms of CPU each here); SimpleWorker runs jobs in
this process (~3 ms). SIGTERM asks for a warm shutdown: the job in hand and the inbox batch in
hand finish, deliveries in flight are recorded, then it exits.
"""

import argparse
import logging
import sys

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from config.errors import ConfigError
from config.loader import load
from config.rules import rule_warnings
from relay import logs
from relay.store import jobs
from workers import runtime, sweeper
from workers.drain import Drain

log = logging.getLogger("workers")


class _Worker(SimpleWorker):
    """RQ's SimpleWorker, starting the inbox reader once its own signal handlers are in place: a
    SIGTERM before that would end the process (Python's default) in the middle of a batch."""

    inbox: Drain | None = None

    def _install_signal_handlers(self) -> None:
        # RQ's hook point (pinned RQ): if it were renamed, the reader would never start, and
        # tests/test_processes.py would fail at once.
        super()._install_signal_handlers()
        if self.inbox is not None:
            self.inbox.start()


def main(argv: list[str] | None = None) -> int:
    """Check settings and config, then read the inbox and work the RQ queue until told to stop."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit once the inbox and the queue are empty")
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
    runtime.install(rt)  # for RQ's entry points (workers/runtime.py)
    redis = rt.redis
    queue = jobs.queue(redis)
    # Deliveries lost with a worker that was killed are sent again now, not a sweep later.
    sweeper.sweep_now(rt)
    # A minute, not RQ's ten: maintenance is when a worker takes over the scheduler of one that
    # died, and when RQ re-queues jobs abandoned by it.
    inbox = Drain(rt)
    worker = _Worker([queue], connection=redis, serializer=JSONSerializer, maintenance_interval=60)
    if args.burst:
        inbox.drain_all()
    else:
        worker.inbox = inbox
    # The scheduler moves retry jobs to the queue when they are due; RQ runs one per Redis, so
    # every worker may start one and only one of them is active at a time.
    worker.work(burst=args.burst, logging_level=settings.log_level, with_scheduler=True)
    # A warm shutdown ends the job loop; then the inbox batch in hand, then the deliveries
    # already handed to threads finish.
    inbox.stop()
    rt.wait_idle()
    return 0


if __name__ == "__main__":
    sys.exit(main())
