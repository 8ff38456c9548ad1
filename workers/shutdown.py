"""The cap on a worker's warm shutdown: SHUTDOWN_TIMEOUT seconds after SIGTERM, the sends still in
flight are abandoned, their leases given back, and the process exits.

Why: a platform kills a process some time after asking it to stop (Heroku 30 s after SIGTERM,
Fly after the app's kill_timeout, 5 s unless set), and a send to a receiver that answers slowly
(or an RQ job, or a batch of the inbox) may take longer. Killed, the process would leave its
leases to run out by themselves (the destination's timeout plus lease_grace, 70 s by default).
Given back, the attempts are due at once: the next take of any worker sends them again
(lua/take.lua, "lost in flight"), and a receiver that did get the abandoned request gets the
event twice, as after any worker that dies mid-send (docs/delivery.md).

Nothing else needs giving back: an inbox batch in hand stays pending and is taken over after
lease_grace, a timer in hand is due again when its 5 s lease ends, and RQ's maintenance
re-queues a job whose worker is gone.
"""

import logging
import os
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError, WatchError

from relay.store import keys
from relay.store.deliveries import Claim
from workers.runtime import Runtime

log = logging.getLogger(__name__)

WRAP_UP = 2.0  # seconds the giving back may take (Redis away: a connect timeout) before the exit


class Deadline:
    """Exits the process `seconds` after start(), giving back the leases of the sends in flight;
    `last_words` runs just before (marking the worker gone), within the same WRAP_UP."""

    def __init__(self, rt: Runtime, seconds: float, last_words: Callable[[], None] = lambda: None):
        self.rt = rt
        self.seconds = seconds
        self.last_words = last_words
        self._started = threading.Event()

    def start(self) -> None:
        """Start the clock (again: no effect)."""
        if self._started.is_set():
            return
        self._started.set()
        threading.Thread(target=self._watch, name="shutdown-deadline", daemon=True).start()

    def _watch(self) -> None:
        time.sleep(self.seconds)
        self.expire()

    def expire(self, end: Callable[[int], object] = os._exit) -> None:
        """Give back what is in flight and end the process now, whatever its threads are doing.
        os._exit: a normal exit would wait for the sending threads (concurrent.futures joins them)."""
        held = self.rt.held()
        log.warning(
            "shutdown: %d send(s) still in flight after SHUTDOWN_TIMEOUT (%g s); their leases are given back "
            "for another worker to send them; exiting",
            len(held),
            self.seconds,
            extra={"outcome": "shutdown_capped", "in_flight": len(held)},
        )
        wrap_up = threading.Thread(target=self._wrap_up, args=(held,), name="shutdown-wrap-up", daemon=True)
        wrap_up.start()
        wrap_up.join(WRAP_UP)
        if wrap_up.is_alive():
            log.warning("shutdown: giving back did not finish within %g s; their leases run out instead", WRAP_UP)
        for handler in logging.getLogger().handlers:
            handler.flush()  # os._exit does not
        end(0)

    def _wrap_up(self, held: list[Claim]) -> None:
        try:
            given = sum(give_back(self.rt.redis, claim) for claim in held)
            if given:
                log.info("shutdown: gave back %d lease(s)", given)
        except RedisError as exc:
            log.warning("shutdown: could not give the leases back (%s); they run out instead", exc)
        self.last_words()


def give_back(redis: Redis, claim: Claim, now: float | None = None) -> bool:
    """End the lease of `claim`'s attempt now, if the attempt still owns its delivery (another
    attempt's lease on the same member is left alone); True if it was ended."""
    delivery = keys.delivery_key(claim.event_id)
    with redis.pipeline(transaction=True) as pipe:
        for _ in range(10):  # the hash changes when other destinations of the event finish
            try:
                pipe.watch(delivery)
                if pipe.hget(delivery, f"{claim.destination}:owner") != claim.owner.encode():
                    return False
                pipe.multi()
                pipe.zadd(
                    keys.inflight_key(claim.destination), {claim.lease: time.time() if now is None else now}, xx=True
                )
                pipe.execute()
                return True
            except WatchError:
                continue
    return False
