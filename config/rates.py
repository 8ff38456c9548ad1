"""Rates in config: '1/s', '20/min', '500/h' — at most that many sends, spaced evenly."""

import re
from dataclasses import dataclass

_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*([a-z]+)")


@dataclass(frozen=True)
class Rate:
    """A send rate; `interval` is the spacing between two sends it allows (seconds)."""

    count: float
    period: float  # seconds

    @property
    def interval(self) -> float:
        """Seconds between two sends."""
        return self.period / self.count

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}[self.period]
        return f"{self.count:g}/{unit}"


def parse_rate(value: object) -> Rate:
    """Return the rate; raise ValueError saying what is allowed."""
    expected = f"must be a rate like '1/s', '20/min' or '500/h', got {value!r}"
    if isinstance(value, Rate):
        return value
    if not isinstance(value, str) or not (m := _RATE.fullmatch(value.strip().lower())):
        raise ValueError(expected)
    count, unit = float(m.group(1)), m.group(2)
    if unit not in _PERIODS:
        raise ValueError(expected)
    if count <= 0:
        raise ValueError(f"must be a positive rate, got {value!r}")
    return Rate(count, _PERIODS[unit])
