"""parse_duration: the accepted spellings and the exact message for each rejected value."""

import pytest

from config.durations import parse_duration

LIKE = "must be a duration like '30s', '5m', '7d' or a number of seconds"


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1.5s", 1.5),
        (" 30s ", 30.0),
        (10, 10.0),
        (1.5, 1.5),
        ("30", 30.0),  # what ${VAR} gives for a number of seconds
    ],
)
def test_valid_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value, message",
    [
        ("7w", f"{LIKE}, got '7w'"),
        ("", f"{LIKE}, got ''"),
        ("0s", "must be a positive duration, got '0s'"),
        (0, "must be a positive duration, got 0"),
        (-1, "must be a positive duration, got -1"),
        (True, f"{LIKE}, got True"),
        (None, f"{LIKE}, got None"),
        (float("nan"), "must be a finite duration, got nan"),
        (float("inf"), "must be a finite duration, got inf"),
    ],
)
def test_invalid_duration(value, message):
    with pytest.raises(ValueError) as exc:
        parse_duration(value)
    assert str(exc.value) == message
