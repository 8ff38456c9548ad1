"""The retry plan: the destination's schedule with jitter, Retry-After capped, deferrals, max age."""

import random

import pytest

from config.destinations import RetryPolicy
from relay.domain.outcome import Outcome
from relay.domain.retry import Next, plan

SVIX = (5, 300, 1800, 7200, 18000, 36000, 36000)
DEFAULT = RetryPolicy()


def transient(status="HTTP 500", retry_after=None):
    return Outcome("transient", status, "", retry_after)


def test_the_default_schedule_is_svixs():
    assert tuple(DEFAULT.delays) == SVIX and DEFAULT.jitter == 0.2


@pytest.mark.parametrize(("failed", "base"), list(enumerate(SVIX, start=1)))
def test_each_delay_is_within_the_jitter_of_the_schedule(failed, base):
    steps = [plan(DEFAULT, failed, 0, transient(), 0, random.Random(seed)) for seed in range(50)]
    assert all(s.number == failed + 1 and s.deferrals == 0 and 0.8 * base <= s.delay <= 1.2 * base for s in steps)
    assert len({s.delay for s in steps}) > 1  # jittered, not fixed


def test_after_the_last_delay_there_is_no_more_retry():
    assert plan(DEFAULT, len(SVIX) + 1, 0, transient(), 0) is None


@pytest.mark.parametrize("kind", ["ok", "permanent", "gone"])
def test_only_transient_failures_are_retried(kind):
    assert plan(DEFAULT, 1, 0, Outcome(kind, "HTTP 400"), 0) is None


def test_a_shortened_schedule_without_jitter():
    policy = RetryPolicy(delays=["100ms", "200ms"], jitter=0)
    assert [plan(policy, n, 0, transient(), 0) for n in (1, 2, 3)] == [Next(2, 0, 0.1), Next(3, 0, 0.2), None]


@pytest.mark.parametrize("status", ["HTTP 429", "HTTP 503"])
def test_a_429_or_503_with_retry_after_defers_without_using_up_the_attempt(status):
    policy = RetryPolicy(max_deferrals=2)
    assert plan(policy, 3, 0, transient(status, 12.0), 0) == Next(3, 1, 12.0)
    assert plan(policy, 3, 1, transient(status, 12.0), 0) == Next(3, 2, 12.0)
    # Deferrals used up: the attempt counts, and Retry-After is still a floor.
    step = plan(policy, 3, 2, transient(status, 12.0), 0, random.Random(1))
    assert (step.number, step.deferrals) == (4, 2) and step.delay >= 1800 * 0.8


def test_other_answers_with_retry_after_use_up_the_attempt_but_wait_at_least_that_long():
    assert plan(RetryPolicy(jitter=0), 1, 0, transient("HTTP 500", 60.0), 0) == Next(2, 0, 60.0)


def test_retry_after_is_capped():
    assert plan(RetryPolicy(retry_after_cap="10m"), 1, 0, transient("HTTP 429", 86400.0), 0) == Next(1, 1, 600.0)


def test_max_age_gives_up_on_old_events():
    policy = RetryPolicy(delays=["1h"], jitter=0, max_age="2h")
    assert plan(policy, 1, 0, transient(), age=1800) == Next(2, 0, 3600.0)
    assert plan(policy, 1, 0, transient(), age=5400) is None  # would be retried 2.5 h after receipt


def test_the_horizon_covers_schedule_jitter_and_deferrals():
    assert RetryPolicy(delays=[100, 200], jitter=0.5, max_deferrals=1, retry_after_cap=10).horizon == 460
