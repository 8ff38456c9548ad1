"""When to try a failed delivery again: the destination's schedule with jitter, Retry-After
honoured up to a cap, 429/503 deferrals that do not use up an attempt, and an optional max age.
"""

import random
from dataclasses import dataclass

from config.destinations import RetryPolicy
from relay.domain.outcome import Outcome

DEFERRABLE = ("HTTP 429", "HTTP 503")  # answers that say "later", not "broken"


@dataclass(frozen=True)
class Next:
    """The attempt to schedule after a transient failure."""

    number: int  # the attempt number it will have (unchanged for a deferral)
    deferrals: int  # deferrals used so far
    delay: float  # seconds from now


def plan(
    policy: RetryPolicy, number: int, deferrals: int, outcome: Outcome, age: float, rng: random.Random | None = None
) -> Next | None:
    """What follows failed attempt `number` of an event received `age` seconds ago; None: give up."""
    if outcome.kind != "transient":
        return None
    retry_after = min(outcome.retry_after, policy.retry_after_cap) if outcome.retry_after is not None else None
    if retry_after is not None and outcome.status in DEFERRABLE and deferrals < policy.max_deferrals:
        step = Next(number, deferrals + 1, retry_after)
    elif number > len(policy.delays):
        return None
    else:
        base = policy.delays[number - 1] * (rng or random).uniform(1 - policy.jitter, 1 + policy.jitter)
        step = Next(number + 1, deferrals, max(base, retry_after or 0.0))
    if policy.max_age is not None and age + step.delay > policy.max_age:
        return None
    return step
