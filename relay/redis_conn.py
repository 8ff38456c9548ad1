"""The Redis client every process uses, built from REDIS_URL with bounded timeouts."""

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from config.secret import Secret


def connect(url: Secret) -> Redis:
    """A client for `url`; it connects lazily, so a down Redis surfaces per request, not here."""
    # Short timeouts: a webhook sender waits on us, and a 503 it can retry beats a hung request.
    return Redis.from_url(url.reveal(), socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)


def run_script(redis: Redis, script: Script, keys: list, args: list):
    """EVALSHA `script` straight through execute_command, loading it when Redis lacks it.

    Calling the Script itself goes through redis-py's argument checks and deprecation wrapper:
    ~45 us of CPU a call, a tenth of a whole request on the ingest path (README "Performance").
    """
    try:
        return redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:  # Redis restarted, or SCRIPT FLUSH
        redis.script_load(script.script)
        return redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
