"""The pure decision of what follows an attempt: every case, without Redis."""

import pytest

from relay.domain.next_state import NextState, decide
from relay.domain.outcome import Outcome
from relay.domain.retry import Next

OK = Outcome("ok", "HTTP 200")
DOWN = Outcome("transient", "HTTP 503", "down")
GONE = Outcome("gone", "HTTP 410")
BAD = Outcome("permanent", "HTTP 400", "bad request")
STEP = Next(2, 0, 5.0)


@pytest.mark.parametrize(
    ("outcome", "owned", "probe", "step", "expected"),
    [
        # An attempt whose lease ran out only records itself, whatever it came to.
        (OK, False, False, None, NextState(owned=False)),
        (DOWN, False, True, STEP, NextState(owned=False)),
        # Gone: the delivery waits for its paused destination, its schedule untouched.
        (GONE, True, False, None, NextState(True, "add", waits=True)),
        # A probe that fails transiently stays first in line; one refused for good is dead.
        (DOWN, True, True, STEP, NextState(True, "add", waits=True)),
        (BAD, True, True, None, NextState(True, "keep", final="dead")),
        # A probe's success ends its delivery (a plain success goes through delivered.lua).
        (OK, True, True, None, NextState(True, "reset", final="ok")),
        # Transient with schedule left: retried; without: dead.
        (DOWN, True, False, STEP, NextState(True, "add", retry=STEP)),
        (DOWN, True, False, None, NextState(True, "add", final="dead")),
        # Permanent: dead at once, and it says nothing about the destination's health.
        (BAD, True, False, None, NextState(True, "keep", final="dead")),
    ],
)
def test_decide(outcome, owned, probe, step, expected):
    assert decide(outcome, owned, probe, step) == expected


def test_retry_in_is_the_planned_delay():
    assert decide(DOWN, True, False, STEP).retry_in == 5.0
    assert decide(BAD, True, False, None).retry_in is None
