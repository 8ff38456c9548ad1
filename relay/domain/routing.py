"""Which rules an event matches and which destinations it goes to: a pure function of both."""

import fnmatch
import json
import math
import operator
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
    # Conditions that raised while evaluated, as "rule 'x': payload.snr: <error>": each counted
    # as not matching, so that one odd value costs that rule only, never the event's delivery.
    unevaluable: tuple[str, ...] = ()
    # (destination, rule) for each destination first named by a rule with `group_by`: its
    # events are collected into one message per session instead of sent one by one.
    grouped: tuple[tuple[str, str], ...] = ()


def route(rules: list[Rule], event: Event) -> Route:
    """Evaluate the rules in order: every matching rule fires until one with `stop: true` does."""
    fired: list[str] = []
    destinations: dict[str, Rule] = {}  # each destination with the rule that first named it
    unevaluable: list[str] = []
    stopped_by = None
    for rule in rules:
        problems: list[str] = []
        if not matches(rule.match, event, problems):
            unevaluable.extend(f"rule {rule.name!r}: {problem}" for problem in problems)
            continue
        fired.append(rule.name)
        for destination in rule.to:
            destinations.setdefault(destination, rule)
        if rule.stop:
            stopped_by = rule.name
            break
    # A derived event is one per session already: never grouped.
    grouped = () if event.derived else tuple((d, r.name) for d, r in destinations.items() if r.group_by)
    return Route(tuple(fired), tuple(destinations), stopped_by, tuple(unevaluable), grouped)


def matches(match: Match, event: Event, problems: list[str] | None = None) -> bool:
    """True when every condition given in `match` holds for `event`.

    A payload condition that raises does not hold; what it raised is added to `problems`. An
    event the relay derived (SESSION_FAILED, ...) matches only a rule whose `event` names it (a
    glob counts): rules written for WMS's events, `match: {}` among them, keep receiving exactly
    those, and a callback never gets a body of a shape it was not written for.
    """
    if (match.event or event.derived) and not any(fnmatch.fnmatchcase(event.code, p) for p in match.event):
        return False
    if match.severity and event.severity not in match.severity:
        return False
    if match.source and event.source not in match.source:
        return False
    for path, predicate in match.payload.items():
        try:
            holds = _holds(predicate, _field(event.payload, path))
        except Exception as exc:  # noqa: BLE001 - event data is anything JSON allows; a bug here must not lose it
            if problems is not None:
                problems.append(f"payload.{path}: {exc.__class__.__name__}: {exc}")
            return False
        if not holds:
            return False
    return True


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
    bounds = [(p.lt, operator.lt), (p.lte, operator.le), (p.gt, operator.gt), (p.gte, operator.ge)]
    for bound, compare in bounds:
        if bound is None:
            continue
        # Only numbers compare: a missing field, a string or a boolean never satisfies a bound.
        # An int is compared as it is, never through float(): Python compares int and float
        # exactly, and a 400-digit integer has no float.
        if not _is_number(value) or not compare(value, bound):
            return False
    return True


def _equal(a: Any, b: Any) -> bool:
    # Python says True == 1; JSON and YAML do not: a boolean only equals a boolean.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    # math.isfinite() of an int converts it to float, which overflows for a huge one: every int is finite.
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


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
