"""The timers every worker process runs (relay:due, relay/store/due.py): probes of paused
destinations and the expiry of old dead letters, with the carrying over of earlier versions'
scheduled jobs beside it. A ticker thread takes what is due every TICK seconds; a worker that
dies while running a timer leaves it due again when its lease ends, for any other worker.

Beside it, the heartbeat: the process's entry in relay:workers (relay/store/presence.py),
written every third of WORKER_PRESENCE_TTL on a thread of its own (a long timer or `rq suspend`
does not make a running worker look gone), and marked gone when the process stops cleanly.
"""

import contextlib
import logging
import threading
import time

from redis.exceptions import RedisError

from relay.store import dead_letters, destination_state, due, presence
from relay.store import sessions as session_records
from relay.store.connection import explain
from workers import grouping, migrate, ordering, sessions
from workers.outage import waits_out
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


def run(rt: Runtime, member: str, now: float | None = None) -> float | None:
    """Run one timer; return when it is due next (unix s), None when it is done for good. `now`:
    the time a session's, ordering or group timer takes as the present (tests move it)."""
    kind, args = due.parse_timer(member)
    if kind == due.PROBE:
        return probe_due(rt, args[0])
    if kind == due.SESSION:
        source, session_id = args
        return sessions.run_timer(rt, source, session_id, now=now)
    if kind == due.ORDER:
        destination, source, session_id = args
        return ordering.run_timer(rt, destination, source, session_id, now=now)
    if kind == due.GROUP:
        destination, source, session_id = args
        return grouping.run_timer(rt, destination, source, session_id, now=now)
    if kind == due.EXPIRE_DEAD_LETTERS:
        dead_letters.expire(rt.redis, rt.config.dead_letters.retention)
        session_records.trim(rt.redis, rt.config.sessions.retention)
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
        started = rt.outage.clock()
        try:
            following = run(rt, member)
        except Exception as exc:
            if waits_out(exc):
                rt.outage.failed(exc, started)
            else:
                log.exception("timer %s failed; it runs again in %g s", member, LEASE)
            continue  # its lease ends and it is due again
        if not due.done(rt.redis, member, token, following):
            if due.parse_timer(member)[0] in (due.PROBE, due.EXPIRE_DEAD_LETTERS):
                log.warning("timer %s outlasted its %g s lease and was taken over", member, LEASE)
            else:  # a session's timers are set again by its events, also while one runs
                log.debug("timer %s was set again while it ran", member)
        log.debug("timer %s ran", member)
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
            self.step()
            self._stop.wait(TICK)

    def step(self) -> None:
        """One look at relay:due; an error is logged (Redis away: to the process's outage account)."""
        rt = self.rt
        started = rt.outage.clock()
        try:
            if not rt.suspended():
                tick(rt)
                rt.outage.ok(started)
        except Exception as exc:
            if waits_out(exc):
                rt.outage.failed(exc, started)
            else:
                log.exception("running timers failed; trying again in %g s", ERROR_PAUSE)
            self._stop.wait(ERROR_PAUSE)

    def stop(self) -> None:
        """Stop ticking (a timer in hand finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Heartbeat:
    """Writes this process's presence every third of the settings' WORKER_PRESENCE_TTL."""

    def __init__(self, rt: Runtime, worker_id: str | None = None):
        self.rt = rt
        self.id = worker_id or presence.worker_id()
        self.ttl = float(rt.settings.worker_presence_ttl)
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """Write the entry now; a failure goes to the process's outage account (Redis away) or
        is logged."""
        started = self.rt.outage.clock()
        try:
            presence.beat(self.rt.redis, self.id, self.started, self.ttl)
        except RedisError as exc:
            if waits_out(exc):
                self.rt.outage.failed(exc, started)
            else:
                log.warning("cannot record this worker's heartbeat: %s", explain(exc, self.rt.redis))
            return False
        self.rt.outage.ok(started)
        return True

    def start(self) -> None:
        """Beat now (the worker is seen as soon as it starts), then on a thread of its own."""
        self.beat()
        with contextlib.suppress(RedisError):  # the next start tries again; a stale entry only lingers
            presence.forget_old(self.rt.redis)
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.beat()

    def stop(self) -> None:
        """Stop beating and mark this worker gone at once (a clean exit)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            presence.leave(self.rt.redis, self.id)
        except RedisError as exc:
            log.warning(
                "cannot mark this worker gone (it is presumed gone %g s after its last heartbeat): %s",
                self.ttl,
                explain(exc, self.rt.redis),
            )
