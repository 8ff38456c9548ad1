"""When to try a failed delivery again: Svix's schedule with jitter, never sooner than Retry-After."""

import random

# Delays before attempts 2..8, in seconds: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 27 h in all).
SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
JITTER = 0.2  # +-20%, so that receivers coming back up are not hit by every retry at once


def next_delay(failed_attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float | None:
    """Seconds to wait before the attempt after `failed_attempt` (1 is the first); None when none is left."""
    if failed_attempt > len(SCHEDULE):
        return None
    delay = SCHEDULE[failed_attempt - 1] * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return max(delay, retry_after or 0.0)
