"""The workers' Lua scripts (workers/*.lua): read once, registered once per Redis client."""

import functools
import importlib.resources

from redis import Redis
from redis.commands.core import Script


def source(*names: str) -> str:
    """The text of one script, after the files it needs (e.g. all_done.lua before delivered.lua)."""
    return "\n".join(importlib.resources.files("workers").joinpath(name).read_text() for name in names)


@functools.lru_cache(maxsize=16)
def script(redis: Redis, text: str) -> Script:
    # One Script per client: registering hashes the source, work a delivery need not repeat.
    return redis.register_script(text)
