"""`python -m workers`: the Procfile's worker process: a reader of the inbox stream
(workers/drain.py), one sending lane per destination (workers/lanes.py), a ticker for timers
(workers/timers.py), and an RQ worker for announcements that does not fork per job.

RQ's default Worker forks for every job (~12 ms of CPU each here); SimpleWorker runs jobs in
this process (~3 ms). RQ's scheduler is not run: retries wait in their destination's queue and
timers in relay:due, where any worker takes them (relay/store/jobs.py says why). SIGTERM asks
for a warm shutdown: the job in hand and the inbox batch in hand finish, the lanes take nothing
more and the sends in flight are recorded, then it exits.
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
from workers import migrate, runtime, timers
from workers.drain import Drain
from workers.lanes import Lane
from workers.timers import Ticker

log = logging.getLogger("workers")


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
    runtime.install(rt)  # for RQ's entry points (workers/runtime.py)
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
    if args.burst:
        timers.tick(rt)
        while inbox.drain_all() + sum(lane.start_due() for lane in list(rt.lanes.values())):
            rt.wait_idle()
    else:
        rt.running = True  # lanes found later (workers/timers.py) start at once
        worker.background = [*lanes, ticker, inbox]
    worker.work(burst=args.burst, logging_level=settings.log_level, with_scheduler=False)
    # A warm shutdown ends the job loop; then the inbox batch in hand finishes, the lanes and the
    # ticker take nothing more, and the sends already taken finish and are recorded.
    inbox.stop()
    ticker.stop()
    for lane in list(rt.lanes.values()):
        lane.stop()
    rt.wait_idle()
    return 0


if __name__ == "__main__":
    sys.exit(main())
