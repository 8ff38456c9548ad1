"""One lane per destination in every worker process: it takes that destination's due deliveries
from Redis (lua/take.lua) and sends them on threads of its own, at most `concurrency` at a time.

A slow, failing, rate-limited or paused destination therefore fills its own lane and its own
queue and nothing else: the inbox keeps being read, and the other destinations' lanes keep
taking and sending. Nothing is buffered in the process: a delivery is either waiting in Redis or
taken with a lease, so a worker that dies loses no work, and what it had in flight is due again
when its leases end. A lane wakes when the local fan-out queued something for it, when one of
its sends ends, when the take said something will be due (a retry, a lease's end, a rate
limit's next turn), and at least every IDLE_POLL seconds for work queued by other processes.

Digests: a Slack or email destination with a rate limit and `digest_max` > 1 has the
deliveries its rate limit held back taken together at its next turn (lua/take.lua), and sends
them as one message (the adapter's deliver_digest) on one thread. The one outcome is then
recorded for each of them (workers/delivery.record): each follows its own retry or dead-letter
path, as if sent alone. A probe of a paused destination never folds: it claims one delivery.
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import count

from config.destinations import Folding
from relay.domain.outcome import Outcome
from relay.store import deliveries, queues
from relay.store.deliveries import Claim
from relay.store.queues import Take, Taken
from workers.delivery import Attempt, read_envelope, record, send_and_record
from workers.outage import waits_out
from workers.runtime import Runtime

log = logging.getLogger(__name__)

IDLE_POLL = 1.0  # seconds between takes of a lane with nothing due: work queued by other processes
ERROR_PAUSE = 1.0  # seconds after a take that failed (Redis away)


class Lane:
    """Sends one destination's deliveries from this process."""

    def __init__(self, rt: Runtime, name: str):
        self.rt = rt
        self.name = name
        config = rt.config.destinations.get(name)
        # A destination no longer configured: one at a time, each ends as a dead letter at once.
        self.concurrency = config.concurrency if config else 1
        self.lease = (config.timeout if config else 0.0) + rt.config.operations.lease_grace
        self.interval = config.rate_limit.interval if config and config.rate_limit else 0.0
        # Only a rate limit holds deliveries back, and only chat and mail can fold them.
        self.fold = config.digest_max if isinstance(config, Folding) and self.interval else 1
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"send-{name}")
        self._idle = threading.Condition()
        self._in_flight = 0
        self._probing = False  # a probe is waiting for a thread or sending (workers/pausing.py)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner = uuid.uuid4().hex[:12]
        self._takes = count()

    @property
    def in_flight(self) -> int:
        """Sends of this lane running now."""
        return self._in_flight

    def take(self, now: float | None = None) -> Take:
        """Take what is due, up to the free threads, and start sending it."""
        free = max(0, self.concurrency - self._in_flight)
        result = queues.take(
            self.rt.redis,
            self.name,
            free,
            self.lease,
            self.interval,
            f"{self._owner}-{next(self._takes)}",
            self.rt.config.state_ttl,
            now,
            self.fold,
        )
        for event_id, number in result.reclaimed:
            log.warning(
                "%s -> %s attempt %d was lost in flight (its worker stopped?); trying it again",
                event_id,
                self.name,
                number,
                extra={"event_id": event_id, "destination": self.name, "attempt": number, "outcome": "lost"},
            )
        for event_id, number in result.missing:
            log.error(
                "%s -> %s attempt %d: the event is no longer stored (it waited longer than its TTL); marked dead,"
                " it cannot be sent",
                event_id,
                self.name,
                number,
                extra={"event_id": event_id, "destination": self.name, "attempt": number, "outcome": "expired"},
            )
        if result.parked:
            # DEBUG: a line per take while events arrive for a paused destination; its pause and
            # resumption (relay/store/destination_state.py) are logged, with the count released.
            log.debug(
                "%s is paused: %d due deliveries wait for it",
                self.name,
                result.parked,
                extra={"destination": self.name, "outcome": "parked"},
            )
        if self.fold > 1 and len(result.taken) > 1:
            # Taken together at one rate-limit turn (lua/take.lua): one message for them all.
            self._start_digest(result.taken)
        else:
            for taken in result.taken:
                self._start(taken)
        return result

    def _start(self, taken: Taken) -> None:
        attempt = self._attempt(taken)
        if attempt is not None:
            self.submit(attempt)

    def _attempt(self, taken: Taken) -> Attempt | None:
        """The attempt of a taken delivery; None (dead-lettered) if its envelope cannot be read."""
        try:
            event = read_envelope(taken.envelope)
        except Exception as exc:  # noqa: BLE001 - written by our own fan-out: only a bug gets here
            self._bury(taken, exc)
            return None
        return Attempt(taken.envelope, event, self.name, taken.number, taken.deferrals, owner=taken.owner)

    def _start_digest(self, taken: list[Taken]) -> None:
        attempts = [a for a in map(self._attempt, taken) if a is not None]
        if len(attempts) == 1:
            self.submit(attempts[0])
        elif attempts:
            self.submit_digest(attempts)

    def _bury(self, taken: Taken, exc: Exception) -> None:
        """A taken delivery whose envelope cannot be read: a dead letter, never taken again."""
        log.error(
            "%s -> %s: the stored event cannot be read (%s: %s); dead-lettered",
            taken.event_id,
            self.name,
            exc.__class__.__name__,
            exc,
            extra={"event_id": taken.event_id, "destination": self.name, "attempt": taken.number},
        )
        claim = Claim(taken.event_id, self.name, taken.number, taken.deferrals, taken.owner)
        outcome = Outcome("permanent", "invalid event", f"{exc.__class__.__name__}: {exc}"[:500])
        deliveries.finish(
            self.rt.redis,
            claim,
            taken.envelope,
            outcome,
            None,
            0.0,
            probe_entry=None,
            state_ttl=self.rt.config.state_ttl,
        )

    def submit(self, attempt: Attempt) -> None:
        """Send `attempt` (already holding its lease) on one of this lane's threads."""
        claim = attempt.claim
        self.rt.hold(claim)  # from now: still waiting for a thread counts as in flight

        def send() -> None:
            try:
                send_and_record(self.rt, attempt)
            finally:
                self.rt.let_go(claim)

        try:
            self.submit_task(send)
        except BaseException:
            self.rt.let_go(claim)
            raise

    def submit_digest(self, attempts: list[Attempt]) -> None:
        """Send `attempts` (each holding its lease) as one digest on one of this lane's threads,
        then record its outcome for each of them."""
        claims = [attempt.claim for attempt in attempts]
        for claim in claims:
            self.rt.hold(claim)

        def send() -> None:
            try:
                self._send_digest(attempts)
            finally:
                for claim in claims:
                    self.rt.let_go(claim)

        try:
            self.submit_task(send)
        except BaseException:
            for claim in claims:
                self.rt.let_go(claim)
            raise

    def _send_digest(self, attempts: list[Attempt]) -> None:
        adapter = self.rt.adapters.get(self.name)
        started = time.monotonic()
        if adapter is None:  # only configured destinations fold: a bug, and each ends as a dead letter
            outcome = Outcome("permanent", "not configured", f"destination {self.name!r} is no longer configured")
        else:
            try:
                outcome = adapter.deliver_digest([attempt.event for attempt in attempts])
            except Exception as exc:
                # As for one delivery (workers/delivery.py): dead letters an operator can replay.
                log.exception(
                    "%s: the %s failed on a digest of %d deliveries",
                    self.name,
                    type(adapter).__name__,
                    len(attempts),
                    extra={"destination": self.name, "folded": len(attempts)},
                )
                outcome = Outcome("permanent", "adapter error", f"{exc.__class__.__name__} (see the worker log)")
        duration = time.monotonic() - started
        log.info(
            "%s: %d deliveries folded into one digest; %s (%s) in %.3f s",
            self.name,
            len(attempts),
            outcome.kind,
            outcome.status,
            duration,
            extra={
                "destination": self.name,
                "folded": len(attempts),
                "outcome": outcome.kind,
                "status": outcome.status,
                "duration_ms": round(duration * 1000, 1),
            },
        )
        for i, attempt in enumerate(attempts):
            record(self.rt, attempt, outcome, duration, health=i == 0)

    def start_probe(self, task: Callable[[], None]) -> bool:
        """Run a probe (`task`) on one of this lane's threads unless one is still waiting or
        sending; False if one is. Probes of a slow destination must not pile up behind each other."""
        with self._idle:
            if self._probing:
                return False
            self._probing = True

        def probe() -> None:
            try:
                task()
            finally:
                with self._idle:
                    self._probing = False

        try:
            self.submit_task(probe)
        except BaseException:
            with self._idle:
                self._probing = False
            raise
        return True

    def submit_task(self, task: Callable[[], None]) -> None:
        """Run `task` (a send) on one of this lane's threads, counted as in flight."""
        with self._idle:
            self._in_flight += 1

        def run() -> None:
            try:
                task()
            finally:
                with self._idle:
                    self._in_flight -= 1
                    self._idle.notify_all()
                self._wake.set()  # a thread is free: take more

        try:
            self._pool.submit(run)
        except BaseException:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
            raise

    def wake(self) -> None:
        """Take again now: something was queued for this destination."""
        self._wake.set()

    def step(self) -> None:
        """One turn of the lane's loop: take, then sleep until something may be due."""
        started = self.rt.outage.clock()
        try:
            # Inside the try: asking about `rq suspend` reads Redis too, and an error outside it
            # ended the lane's thread while the worker lived on (found by bench/chaos.py).
            if self.rt.suspended():
                # `rq suspend` pauses delivery too, until `rq resume`.
                self._stop.wait(1)
                return
            result = self.take()
        except Exception as exc:
            if waits_out(exc):
                self.rt.outage.failed(exc, started)  # one line for the process, not one per lane and try
            else:
                log.exception("taking deliveries for %s failed; trying again in %g s", self.name, ERROR_PAUSE)
            self._stop.wait(ERROR_PAUSE)
            return
        self.rt.outage.ok(started)
        if result.taken and self._in_flight < self.concurrency and not self.interval:
            return  # there may be more due right now
        timeout = IDLE_POLL if result.wait is None else min(result.wait, IDLE_POLL)
        self._wake.wait(timeout)
        self._wake.clear()

    def start(self) -> None:
        """Run the lane's loop on a thread of its own."""
        self._thread = threading.Thread(target=self._run, name=f"lane-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()

    def stop(self) -> None:
        """Take nothing more (the sends in flight finish: see wait_idle)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until this lane has no send in flight; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def start_due(self, now: float | None = None) -> int:
        """Take everything due now that the free threads can send, and start sending it, in the
        caller's thread (tests, `--burst`); return how many sends started."""
        started = 0
        while (result := self.take(now)).taken or result.parked or result.reclaimed or result.missing:
            started += len(result.taken)
        return started
