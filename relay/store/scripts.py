"""The Lua scripts of relay/store/lua, and the one way every process runs them.

A script runs by EVALSHA, loaded into Redis on first use (and again after a Redis restart or
SCRIPT FLUSH). `run` calls EVALSHA straight through execute_command: redis-py's Script wrapper
costs ~45 us of CPU a call, a tenth of a whole request on the ingest path (docs/performance.md).
`queue` adds the call to a pipeline, which loads the script before it executes.
"""

import importlib.resources
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class LuaScript:
    """One script: its file, after the files it needs (e.g. all_done.lua before delivered.lua)."""

    def __init__(self, *names: str):
        folder = importlib.resources.files("relay.store").joinpath("lua")
        self.name = names[-1]
        self.text = "\n".join(folder.joinpath(name).read_text() for name in names)
        # Hashed from bytes, so no client is needed; pipelines load it through this object.
        self._script = Script(None, self.text.encode("utf-8"))  # type: ignore[arg-type]

    @property
    def sha(self) -> str:
        """The SHA1 that EVALSHA names the script by."""
        return self._script.sha

    def run(self, redis: Redis, keys: list, args: list) -> Any:
        """Run the script now and return its answer."""
        try:
            return redis.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted, or SCRIPT FLUSH
            redis.script_load(self.text)
            return redis.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Pipeline, keys: list, args: list) -> None:
        """Add a call of the script to `pipe`; its answer is among pipe.execute()'s."""
        pipe.scripts.add(self._script)
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


ACCEPT = LuaScript("accept.lua")
CLAIM = LuaScript("claim.lua")
RELEASE_PARKED = LuaScript("release_parked.lua")
DELIVERED = LuaScript("all_done.lua", "delivered.lua")
FORGET = LuaScript("all_done.lua", "forget.lua")
FORGET_READERS = LuaScript("forget_readers.lua")
ENQUEUE = LuaScript("enqueue.lua")
TAKE = LuaScript("take.lua")
TAKE_DUE = LuaScript("take_due.lua")
DONE_DUE = LuaScript("done_due.lua")
SESSION_FINAL = LuaScript("session_final.lua")
SESSION_TRACK = LuaScript("session_track.lua")
GROUP_ADD = LuaScript("group_add.lua")
GROUP_FLUSH = LuaScript("group_flush.lua")
ORDER_SETTLE = LuaScript("order_settle.lua")
EVENT_LOG = LuaScript("event_log.lua")
EVENT_ATTEMPT = LuaScript("event_attempt.lua")
