"""The filters of the admin API (relay/web/admin.py) and the dashboard (relay/web/dashboard), checked
in one place and refused with one set of sentences: an unknown key, outcome, since, until or limit
says what was wrong and what is allowed. Each raises Invalid; the API answers it as a 400 JSON
`invalid_filter`, the dashboard as a 400 page."""

import time
from collections.abc import Mapping

from config.durations import parse_duration
from relay.store import dead_letters


class Invalid(ValueError):
    """A query string value the page refuses; str() is the sentence shown."""


def known(args: Mapping[str, object], allowed: tuple[str, ...]) -> None:
    """Refuse a key not `allowed`, so that a misspelt filter cannot silently widen what is shown,
    replayed or purged."""
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise Invalid(f"unknown key {unknown[0]!r} (allowed: {', '.join(map(repr, allowed))})")


def values(args: Mapping[str, str], allowed: tuple[str, ...]) -> dict[str, str]:
    """The non-empty values of `args` (an empty one is no filter), once `known`."""
    known(args, allowed)
    return {key: args[key].strip() for key in allowed if args.get(key, "").strip()}


def outcome(value: str | None, allowed: tuple[str, ...]) -> str | None:
    """One of `allowed`, or None."""
    if value is not None and value not in allowed:
        raise Invalid(f"outcome: must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def since(value: str | None, now: float | None = None) -> float | None:
    """A duration ago ('2h') as a unix time, or None."""
    if value is None:
        return None
    try:
        return (time.time() if now is None else now) - parse_duration(value)
    except ValueError as exc:
        raise Invalid(f"since: {exc}") from None


def limit(value: str | None, maximum: int, default: int = 50) -> int:
    """A whole number from 1 to `maximum`."""
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 4 and 1 <= int(value) <= maximum):
        raise Invalid(f"limit: must be a whole number from 1 to {maximum}, got {value!r}")
    return int(value)


DEAD_LETTER_KEYS = ("destination", "source", "session", "since", "until")


def dead_letter_filter(given: Mapping[str, str]) -> dead_letters.Filter:
    """The dead letters' filter of checked `values(...)`: times are ISO 8601 or a duration ago."""
    times: dict[str, float | None] = {}
    for key in ("since", "until"):
        try:
            times[key] = dead_letters.parse_time(given[key]) if key in given else None
        except ValueError as exc:
            raise Invalid(f"{key}: {exc}") from None
    return dead_letters.Filter(
        given.get("destination"), given.get("source"), given.get("session"), times["since"], times["until"]
    )
