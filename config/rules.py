"""The rule models: which events go to which destinations. Matching itself is relay/domain/routing.py."""

import difflib
import fnmatch
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, model_validator

from config.types import Duration, Severity, Strict
from config.wms_events import CATALOGUE, DERIVED, SEVERITIES

_THRESHOLD = re.compile(r"\s*(>=|<=|>|<|==)\s*([A-Z]+)\s*")


def _severities(value: Any) -> Any:
    """A list of severities, or a threshold such as '>=WARN' that stands for one."""
    if not isinstance(value, str):
        return value
    m = _THRESHOLD.fullmatch(value)
    if not m or m.group(2) not in SEVERITIES:
        raise ValueError(
            f"must be a list of severities or a threshold like '>=WARN' (with {', '.join(SEVERITIES)}), got {value!r}"
        )
    level = SEVERITIES.index(m.group(2))
    compare = {">=": level.__le__, "<=": level.__ge__, ">": level.__lt__, "<": level.__gt__, "==": level.__eq__}
    return [s for i, s in enumerate(SEVERITIES) if compare[m.group(1)](i)]


class Predicate(Strict):
    """Conditions on one payload field; every one given must hold. A bare value means {eq: value}."""

    exists: bool | None = None
    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    lt: float | None = None
    lte: float | None = None
    gt: float | None = None
    gte: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return {"eq": value}
        if not value:
            raise ValueError("needs at least one of exists, eq, ne, in, lt, lte, gt, gte")
        return value


class Match(Strict):
    """Conditions on an event; all given ones must hold, and {} matches everything."""

    # Event codes, or shell-style globs such as WEBSOCKET_*.
    event: list[Annotated[str, StringConstraints(min_length=1)]] = []
    severity: Annotated[list[Severity], BeforeValidator(_severities)] = []
    source: list[str] = []
    # Payload field (dots reach into nested objects) -> condition.
    payload: dict[Annotated[str, StringConstraints(min_length=1)], Predicate] = {}


class Rule(Strict):
    """Sends the events that match to the named destinations."""

    name: Annotated[str, StringConstraints(min_length=1)]
    match: Match = Match()
    to: list[str] = Field(min_length=1)
    stop: bool = False  # when this rule matches, later rules are not evaluated
    # `session`: the events of one session this rule sends to a slack or email destination become
    # one message, sent `group_wait` after the first; later ones one follow-up per `group_interval`.
    group_by: Literal["session"] | None = None
    group_wait: Duration = Field(default=30.0, ge=0, le=3600)
    group_interval: Duration = Field(default=300.0, ge=1, le=86400)


def rule_warnings(rules: list[Rule]) -> list[str]:
    """Event codes in rules that match no documented code: likely typos, though WMS may add codes."""
    warnings = []
    for i, rule in enumerate(rules):
        for j, pattern in enumerate(rule.match.event):
            if any(fnmatch.fnmatchcase(code, pattern) for code in (*CATALOGUE, *DERIVED)):
                continue
            close = difflib.get_close_matches(pattern, [*CATALOGUE, *DERIVED], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            warnings.append(
                f"rules[{i}].match.event[{j}]: {pattern!r} matches no documented WMS event code{hint}; "
                "it matches only if WMS sends such a code"
            )
    return warnings
