"""Which rules an event matches and which destinations it goes to: a pure function of both."""

import fnmatch
import json
import math
from dataclasses import dataclass
from typing import Any

from config.rules import Match, Predicate, Rule
from relay.domain.event import Event

_MISSING = object()


@dataclass(frozen=True)
class Route:
    """The outcome of routing one event."""

    rules: tuple[str, ...]  # names of the rules that fired, in order
    destinations: tuple[str, ...]  # each destination once, in the order rules first named it
    stopped_by: str | None = None  # the rule with `stop: true` that ended the evaluation


def route(rules: list[Rule], event: Event) -> Route:
    """Evaluate the rules in order: every matching rule fires until one with `stop: true` does."""
    fired: list[str] = []
    destinations: dict[str, None] = {}  # an ordered set
    for rule in rules:
        if not matches(rule.match, event):
            continue
        fired.append(rule.name)
        destinations.update(dict.fromkeys(rule.to))
        if rule.stop:
            return Route(tuple(fired), tuple(destinations), stopped_by=rule.name)
    return Route(tuple(fired), tuple(destinations))


def matches(match: Match, event: Event) -> bool:
    """True when every condition given in `match` holds for `event`."""
    if match.event and not any(fnmatch.fnmatchcase(event.code, pattern) for pattern in match.event):
        return False
    if match.severity and event.severity not in match.severity:
        return False
    if match.source and event.source not in match.source:
        return False
    return all(_holds(predicate, _field(event.payload, path)) for path, predicate in match.payload.items())


def _field(payload: dict[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _holds(p: Predicate, value: Any) -> bool:
    present = value is not _MISSING
    if p.exists is not None and p.exists != present:
        return False
    if p.eq is not None and not (present and _equal(value, p.eq)):
        return False
    if p.ne is not None and present and _equal(value, p.ne):
        return False
    if p.in_ is not None and not (present and any(_equal(value, option) for option in p.in_)):
        return False
    bounds = [(p.lt, float.__lt__), (p.lte, float.__le__), (p.gt, float.__gt__), (p.gte, float.__ge__)]
    for bound, compare in bounds:
        if bound is None:
            continue
        # Only numbers compare: a missing field, a string or a boolean never satisfies a bound.
        if not _is_number(value) or not compare(float(value), bound):
            return False
    return True


def _equal(a: Any, b: Any) -> bool:
    # Python says True == 1; JSON and YAML do not: a boolean only equals a boolean.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def describe_route(rules: list[Rule], event: Event) -> list[str]:
    """What `route` decides for `event`, rule by rule, as lines for an operator to read."""
    result = route(rules, event)
    lines = [
        f"sample event {event.code} ({event.severity}) from {event.source!r}, payload {json.dumps(event.payload)}:"
    ]
    stopped = False
    for rule in rules:
        if stopped:
            lines.append(f"  rule {rule.name!r}: not evaluated (rule {result.stopped_by!r} has stop: true)")
        elif rule.name in result.rules:
            lines.append(f"  rule {rule.name!r}: fires -> {', '.join(rule.to)}")
        else:
            lines.append(f"  rule {rule.name!r}: does not match")
        stopped = stopped or rule.name == result.stopped_by
    if result.destinations:
        lines.append(f"delivered to: {', '.join(result.destinations)}")
    else:
        lines.append("delivered to: nothing (no rule fires)")
    return lines
