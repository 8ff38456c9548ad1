"""The Redis client helpers every process uses."""

from relay.redis_conn import run_script


def test_run_script_loads_a_script_redis_has_forgotten(redis):
    script = redis.register_script("return {KEYS[1], ARGV[1]}")
    assert run_script(redis, script, ["k"], ["a"]) == [b"k", b"a"]
    redis.script_flush()  # as after a Redis restart
    assert run_script(redis, script, ["k2"], [2]) == [b"k2", b"2"]
