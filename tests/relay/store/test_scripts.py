"""The one way Lua scripts run: now, or on a pipeline, loaded whenever Redis has forgotten them."""

from relay.store import scripts
from relay.store.scripts import LuaScript


def test_run_loads_a_script_redis_has_forgotten(redis):
    redis.hset("d", "crm", "ok")
    redis.set("e", "envelope")
    assert scripts.FORGET.run(redis, ["d", "e"], []) == 1
    redis.script_flush()  # as after a Redis restart
    redis.set("e", "envelope")
    assert scripts.FORGET.run(redis, ["d", "e"], []) == 1
    assert not redis.exists("e")


def test_queue_on_a_transaction_loads_a_script_redis_has_forgotten(redis):
    redis.script_flush()
    redis.hset("d", "crm", "2.0")
    redis.set("e", "envelope")
    pipe = redis.pipeline(transaction=True)
    scripts.FORGET.queue(pipe, ["d", "e"], [])
    pipe.get("e")
    assert pipe.execute() == [0, b"envelope"]  # a delivery still pending: the envelope stays


def test_every_script_file_is_loaded_by_one_script():
    """A script file nothing runs is dead code; prepended helpers (all_done.lua) count as used."""
    import importlib.resources

    files = {
        f.name for f in importlib.resources.files("relay.store").joinpath("lua").iterdir() if f.name.endswith(".lua")
    }
    used = {s.name for s in vars(scripts).values() if isinstance(s, LuaScript)} | {"all_done.lua"}
    assert files == used
