"""The timers every worker process runs (relay:due, relay/store/due.py): probes of paused
destinations and the expiry of old dead letters, with the carrying over of earlier versions'
scheduled jobs beside it. A ticker thread takes what is due every TICK seconds; a worker that
dies while running a timer leaves it due again when its lease ends, for any other worker.
"""

import logging
import threading
import time

from relay.store import dead_letters, destination_state, due
from workers import migrate
from workers.pausing import probe_due
from workers.runtime import Runtime

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between looks at relay:due: a timer runs at most this late (plus the take)
LEASE = 5.0  # seconds a taken timer is held: a dead taker's timer is due again after this
ERROR_PAUSE = 1.0
EXPIRY = due.timer(due.EXPIRE_DEAD_LETTERS)


def ensure(rt: Runtime) -> None:
    """Set the timers every deployment has (each exists once, whoever sets it)."""
    due.schedule(rt.redis, EXPIRY, time.time())


def run(rt: Runtime, member: str) -> float | None:
    """Run one timer; return when it is due next (unix s), None when it is done for good."""
    kind, args = due.parse_timer(member)
    if kind == due.PROBE:
        return probe_due(rt, args[0])
    if kind == due.EXPIRE_DEAD_LETTERS:
        dead_letters.expire(rt.redis, rt.config.dead_letters.retention)
        migrate.carry_over(rt)
        rt.find_lanes()
        for name in list(rt.lanes):
            destination_state.release_stranded(rt.redis, name, rt.config.state_ttl)
        return time.time() + rt.config.operations.sweep_every
    log.error("unknown timer %s in relay:due (written by a newer version?); dropped", member)
    return None


def tick(rt: Runtime, now: float | None = None, most: int = 50) -> int:
    """Take and run the timers due now, one at a time, each under a lease of its own (a long one
    cannot make the others look abandoned); return how many ran."""
    ran = 0
    while ran < most:
        members, token = due.take(rt.redis, LEASE, limit=1, now=now)
        if not members:
            break
        (member,) = members
        ran += 1
        try:
            following = run(rt, member)
        except Exception:
            log.exception("timer %s failed; it runs again in %g s", member, LEASE)
            continue  # its lease ends and it is due again
        if not due.done(rt.redis, member, token, following):
            log.warning("timer %s outlasted its %g s lease and was taken over", member, LEASE)
    return ran


class Ticker:
    """Runs `tick` on a thread of its own until stopped."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start ticking."""
        self._thread = threading.Thread(target=self._run, name="timers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.rt.suspended():
                    tick(self.rt)
            except Exception:
                log.exception("running timers failed; trying again in %g s", ERROR_PAUSE)
                self._stop.wait(ERROR_PAUSE)
            self._stop.wait(TICK)

    def stop(self) -> None:
        """Stop ticking (a timer in hand finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
