"""Jobs the tests queue for a real worker process (importable by it: it runs from the repo root)."""

import time

from rq import get_current_job


def slow_job(key: str, seconds: float) -> None:
    """Mark `key`:started, take `seconds`, then set `key` to 'done'."""
    redis = get_current_job().connection
    redis.set(f"{key}:started", 1)
    time.sleep(seconds)
    redis.set(key, "done")
