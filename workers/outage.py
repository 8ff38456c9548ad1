"""One account per worker process of Redis being away: the inbox reader, every lane, the ticker,
the heartbeat and RQ's loop each retry on their own, and report here; the log gets one line when
an outage starts and one when it ends, with how long it lasted and how many tries failed.

Why: each of those threads retries about once a second, with a traceback each time, so a minute
without Redis was hundreds of lines per process (Heroku's log buffer holds 1,500), for one fact.

An outage is what waiting fixes (waits_out): Redis unreachable, not answering, loading its data,
out of memory, or a replica after a failover. Any other error is a bug or a misconfiguration, and
its callers log it with its traceback as before.
"""

import logging
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.store.connection import explain

log = logging.getLogger(__name__)

# Replies of a Redis that is up but cannot serve for now (the rest of ResponseError is our bug).
_PASSING_REPLIES = ("OOM", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


def waits_out(exc: BaseException) -> bool:
    """Whether `exc` is Redis away or unable to serve for now: an outage, not a bug."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ReadOnlyError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_PASSING_REPLIES)


class Outage:
    """The process's account of Redis outages; thread-safe."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.monotonic):
        self.redis = redis
        self.clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # when the outage in progress began
        self._unreachable = True  # what its first failure was: unreachable, or failing otherwise
        self._failures = 0
        self._ended_at = float("-inf")

    @property
    def down(self) -> bool:
        """Whether an outage is in progress."""
        return self._since is not None

    def failed(self, exc: BaseException, started: float | None = None) -> None:
        """A step failed with `exc` (waits_out); `started`: when the step began (clock()), so that
        a step begun before an outage ended, and failing after, does not start another.

        Threads report late: a step's news, good or bad, may arrive after another thread's news
        of a later state. Each side is taken as news only when its step began after the last
        change was seen, so a race between threads never splits one outage into several."""
        with self._lock:
            if self._since is not None:
                self._failures += 1
                log.debug("redis still failing: %s", exc)
                return
            if started is not None and started < self._ended_at:
                log.debug("a step begun before redis came back failed: %s", exc)
                return
            self._since, self._failures = self.clock(), 1
            self._unreachable = isinstance(exc, RedisConnectionError | RedisTimeoutError)
            # Under the lock, so that no "again" line can come before this one; explain() takes at
            # most a second (one look at the port), and the other threads are waiting anyway.
            log.warning(
                "redis %s: %s; retrying",
                "unreachable" if self._unreachable else "failing",
                self._describe(exc),
                extra={"outcome": "redis_unreachable" if self._unreachable else "redis_failing"},
            )

    def _describe(self, exc: BaseException) -> str:
        """What is wrong with Redis, from one fresh look: how the failed step's connection ended
        ("Connection closed by server", as a server stops) says less than "connection refused"."""
        try:
            self.redis.ping()
        except RedisError as now:
            return explain(now, self.redis)
        return explain(exc, self.redis)

    def ok(self, started: float) -> None:
        """A step begun at `started` (clock()) used Redis and succeeded: an outage in progress ends,
        unless the step began before the outage was seen (its reply may have come before it)."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._since is None:
                return
            if started < self._since:
                log.debug("a step begun before redis failed succeeded; the outage goes on")
                return
            now = self.clock()
            lasted, failures = now - self._since, self._failures
            self._since, self._failures, self._ended_at = None, 0, now
            log.warning(
                "redis %s again after %.1f s (%d failed %s)",
                "reachable" if self._unreachable else "working",
                lasted,
                failures,
                "try" if failures == 1 else "tries",
                extra={"outcome": "redis_back", "duration_ms": round(lasted * 1000, 1), "failed_tries": failures},
            )
