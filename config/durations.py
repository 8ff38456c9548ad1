"""Durations in config: a number of seconds or a string like '500ms', '30s', '5m', '2h', '7d'."""

import math
import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# A bare number in a string counts as seconds: a ${VAR} always expands to a string.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")


def parse_duration(value: object) -> float:
    """Return the duration in seconds; raise ValueError saying what is allowed."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like '30s', '5m', '7d' or a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        seconds = float(m.group(1)) * _UNITS[m.group(2)] if m.group(2) else float(m.group(1))
    else:
        raise ValueError(f"must be a duration like '30s', '5m', '7d' or a number of seconds, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def span(seconds: float) -> str:
    """A duration as config files write it: '7d', '2h', '90s' (what parse_duration reads)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
