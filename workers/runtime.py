"""What a worker process builds once and hands to everything it runs: settings, config, the
Redis client, adapters sharing one HTTP session, and one sending lane per destination.

Every worker function takes the Runtime as its first argument. Only RQ's entry points (the job
functions named in relay/store/jobs.py) fetch it, with current(): RQ calls them by name with
JSON arguments, so the process's runtime cannot be passed to them.

Reusing one requests.Session keeps connections to Slack and callback hosts open between sends;
that only pays because the worker does not fork per job (see workers/__main__.py).
"""

import threading
import time
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING

import requests
import requests.adapters
from redis import Redis
from rq.suspension import is_suspended

from config.loader import load
from config.model import RelayConfig
from config.settings import Settings
from relay.store.connection import connect
from relay.store.deliveries import Claim
from workers.destinations import build_adapter
from workers.destinations.base import Adapter
from workers.outage import Outage

if TYPE_CHECKING:
    from workers.lanes import Lane

SUSPENSION_CHECK_EVERY = 1.0  # seconds: how soon `rq suspend` is noticed, at one GET per second


def http_session(max_connections: int = 10) -> requests.Session:
    """One session for all HTTP destinations: no cookies carried between receivers, no proxy or
    .netrc credentials taken from the environment, and a pool that keeps as many connections to
    one host as sends to it can be in flight (requests keeps 10, and discards the rest)."""
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, max_connections))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass
class Runtime:
    """The worker process's shared state."""

    settings: Settings
    config: RelayConfig
    redis: Redis
    adapters: dict[str, Adapter]
    http: requests.Session | None = None  # the one the adapters share, when build() made them
    lanes: dict[str, "Lane"] = field(default_factory=dict)
    running: bool = False  # the lanes run on threads of their own (python -m workers), not in tests
    outage: Outage = field(init=False)  # the one account of Redis outages of this process
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _suspended: tuple[float, bool] = (0.0, False)  # (checked at, answer)
    _held: dict[str, Claim] = field(default_factory=dict)  # leases of sends in flight, by owner token

    def __post_init__(self) -> None:
        self.outage = Outage(self.redis)

    @classmethod
    def build(cls, settings: Settings, config: RelayConfig, redis: Redis | None = None) -> "Runtime":
        """Adapters for every configured destination, sharing one HTTP session, and their lanes;
        a Redis client for settings.redis_url unless one is given."""
        # Several destinations may share a host (a CRM's endpoints, Slack's hooks): size for all.
        session = http_session(sum(d.concurrency for d in config.destinations.values()))
        adapters = {name: build_adapter(name, d, settings, session) for name, d in config.destinations.items()}
        rt = cls(
            settings,
            config,
            redis if redis is not None else connect(settings.require_redis_url(), settings.redis_tls_verify),
            adapters,
            session,
        )
        for name in config.destinations:
            rt.lane(name)
        return rt

    def lane(self, name: str) -> "Lane":
        """The lane that sends to `name`, made on first use (a destination no longer configured
        gets one too: its deliveries still in Redis end as dead letters, not forgotten)."""
        from workers.lanes import Lane  # the lanes send through workers.delivery, which needs Runtime

        with self._lock:
            if name not in self.lanes:
                self.lanes[name] = Lane(self, name)
                if self.running:
                    self.lanes[name].start()
            return self.lanes[name]

    def find_lanes(self) -> None:
        """Make lanes for destinations that have deliveries in Redis but no lane here: one removed
        from the config, whose released or retried deliveries must still end as dead letters."""
        from relay.store import queues

        for name in sorted(queues.names_in_use(self.redis) - set(self.lanes)):
            self.lane(name)

    def wake(self, names: set[str] | list[str]) -> None:
        """Tell these destinations' lanes that deliveries were queued for them."""
        for name in names:
            self.lane(name).wake()

    def hold(self, claim: Claim) -> None:
        """A send holding `claim`'s lease starts (a capped shutdown gives back what is held)."""
        with self._lock:
            self._held[claim.owner] = claim

    def let_go(self, claim: Claim) -> None:
        """The send holding `claim`'s lease is over, recorded or not."""
        with self._lock:
            self._held.pop(claim.owner, None)

    def held(self) -> list[Claim]:
        """The leases of the sends in flight now."""
        with self._lock:
            return list(self._held.values())

    def suspended(self) -> bool:
        """Whether `rq suspend` is in force (asked of Redis at most once a second)."""
        checked_at, answer = self._suspended
        if time.monotonic() - checked_at >= SUSPENSION_CHECK_EVERY:
            answer = bool(is_suspended(self.redis))
            self._suspended = (time.monotonic(), answer)
        return answer

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no lane has a send in flight (a warm shutdown, or a test); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for lane in list(self.lanes.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not lane.wait_idle(left):
                return False
        return True


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
