"""What a worker process builds once and hands to everything it runs: settings, config, the
Redis client, adapters sharing one HTTP session, and the pool of threads that send deliveries.

Every worker function takes the Runtime as its first argument. Only RQ's entry points (the job
functions named in relay/store/jobs.py) fetch it, with current(): RQ calls them by name with
JSON arguments, so the process's runtime cannot be passed to them.

Reusing one requests.Session keeps connections to Slack and callback hosts open between jobs;
that only pays because the worker does not fork per job (see workers/__main__.py).
"""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy

import requests
from redis import Redis
from rq import get_current_job

from config.loader import load
from config.model import RelayConfig
from config.settings import Settings
from relay.store.connection import connect
from workers.destinations import build_adapter
from workers.destinations.base import Adapter

# Deliveries are sent from these threads, so the fan-out hands them over and goes on to the
# next events: a slow destination holds up neither the other destinations nor later events.
# When this many are in flight, handing over waits, and the fan-out claims nothing before it
# has a thread for it: the worker takes no more work than it can send.
MAX_IN_FLIGHT = 32


def http_session() -> requests.Session:
    """One session for all HTTP destinations: no cookies carried between receivers, and no
    proxy or .netrc credentials taken from the environment."""
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


@dataclass
class Runtime:
    """The worker process's shared state."""

    settings: Settings
    config: RelayConfig
    redis: Redis
    adapters: dict[str, Adapter]
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="deliver")
    )
    _in_flight: int = 0
    _idle: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def build(cls, settings: Settings, config: RelayConfig, redis: Redis | None = None) -> "Runtime":
        """Adapters for every configured destination, sharing one HTTP session; a Redis client
        for settings.redis_url unless one is given."""
        session = http_session()
        adapters = {name: build_adapter(name, d, settings, session) for name, d in config.destinations.items()}
        return cls(settings, config, redis if redis is not None else connect(settings.require_redis_url()), adapters)

    def submit(self, task: Callable[[], None]) -> None:
        """Run `task` on a delivery thread; wait for a free one when MAX_IN_FLIGHT are busy."""
        self.reserve(1)
        self.submit_reserved(task)

    def reserve(self, count: int) -> None:
        """Wait until `count` delivery threads are free and hold them for submit_reserved.

        The fan-out reserves before it claims: a claim starts the delivery's lease, which must
        not run out while the send waits for a thread. All at once, never a part: two callers
        each holding part of what they wait for would wait for ever.
        """
        count = min(count, MAX_IN_FLIGHT)
        with self._idle:
            self._idle.wait_for(lambda: MAX_IN_FLIGHT - self._in_flight >= count)
            self._in_flight += count

    def unreserve(self, count: int) -> None:
        """Give back threads reserved for deliveries that will not be sent here."""
        with self._idle:
            self._in_flight -= count
            self._idle.notify_all()

    def submit_reserved(self, task: Callable[[], None]) -> None:
        """Run `task` on a thread reserved for it."""

        def run() -> None:
            try:
                task()
            finally:
                self.unreserve(1)

        try:
            self.pool.submit(run)
        except BaseException:
            self.unreserve(1)
            raise

    def wait_until_fewer_in_flight_than(self, limit: int) -> None:
        """Wait until fewer than `limit` deliveries are in flight."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight < limit)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no delivery is in flight (a warm shutdown, or a test); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


_current: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    """Make `runtime` the one jobs use (python -m workers does this at start-up; tests too); None forgets it."""
    global _current  # noqa: PLW0603 - the one process-wide runtime, for RQ entry points only
    _current = runtime


def current() -> Runtime:
    """The installed runtime, for RQ's entry points only; built from the environment on first use
    under a plain `rq worker`."""
    if _current is None:
        built = Runtime.build(*load())
        install(built)
        return built
    return _current


def current_job_id() -> str:
    """The id of the RQ job being run, for RQ's entry points only (RQ runs them inside a job)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("an RQ entry point was called outside an RQ job")
    return job.id
