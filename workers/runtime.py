"""What a worker process builds once and every job shares: config, adapters, an HTTP session.

Reusing one requests.Session keeps connections to Slack and callback hosts open between jobs;
that only pays because the worker does not fork per job (see workers/__main__.py).
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from config.loader import load
from config.model import RelayConfig
from config.settings import Settings
from workers.destinations import build_adapter
from workers.destinations.base import Adapter

# Deliveries of one event to several destinations run side by side, so a slow one does not
# hold up the others.
PARALLEL_DELIVERIES = 8


@dataclass
class Runtime:
    """The worker process's shared state."""

    settings: Settings
    config: RelayConfig
    adapters: dict[str, Adapter]
    pool: ThreadPoolExecutor

    @classmethod
    def build(cls, settings: Settings, config: RelayConfig) -> "Runtime":
        """Adapters for every configured destination, sharing one HTTP session."""
        session = requests.Session()
        adapters = {name: build_adapter(dest, settings, session) for name, dest in config.destinations.items()}
        return cls(settings, config, adapters, ThreadPoolExecutor(PARALLEL_DELIVERIES, thread_name_prefix="deliver"))


_current: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    """Make `runtime` the one jobs use (python -m workers does this at start-up; tests too); None forgets it."""
    global _current
    _current = runtime


def current() -> Runtime:
    """The installed runtime; built from the environment on first use under a plain `rq worker`."""
    if _current is None:
        install(Runtime.build(*load()))
    return _current
