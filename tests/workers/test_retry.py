"""The retry schedule: Svix's delays with +-20% jitter, Retry-After as a floor, then none."""

import random

import pytest

from workers.retry import SCHEDULE, next_delay


@pytest.mark.parametrize(("failed", "base"), list(enumerate(SCHEDULE, start=1)))
def test_each_delay_is_within_20_percent_of_the_schedule(failed, base):
    delays = [next_delay(failed, None, random.Random(seed)) for seed in range(50)]
    assert all(0.8 * base <= d <= 1.2 * base for d in delays)
    assert len(set(delays)) > 1  # jittered, not fixed


def test_the_schedule_is_svixs():
    assert SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)


def test_after_the_last_delay_there_is_no_more_retry():
    assert next_delay(len(SCHEDULE) + 1, None) is None


def test_retry_after_is_a_floor():
    assert next_delay(1, 60.0, random.Random(1)) == 60.0
    assert 240 <= next_delay(2, 60.0, random.Random(1)) <= 360
