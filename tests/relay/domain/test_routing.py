"""Routing is a pure function of the rules and the event: table tests, no Redis, no Flask."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from config.rules import Match, Rule, rule_warnings
from relay.domain.event import Event
from relay.domain.routing import matches, route


def event(code="CONSTRAINT_VIOLATION", severity="ERROR", source="wms", **payload) -> Event:
    return Event(source, "sess-1", 3, 1689684577, severity, code, payload)


def m(**conditions) -> Match:
    return Match.model_validate(conditions)


@pytest.mark.parametrize(
    ("conditions", "ev", "expected"),
    [
        ({}, event(), True),
        ({"event": ["CONSTRAINT_VIOLATION"]}, event(), True),
        ({"event": ["API_ERROR", "CONSTRAINT_VIOLATION"]}, event(), True),
        ({"event": ["API_ERROR"]}, event(), False),
        ({"event": ["WEBSOCKET_*"]}, event("WEBSOCKET_DISCONNECTED", "WARN"), True),
        ({"event": ["WEBSOCKET_*"]}, event("MEASUREMENT_CANCELED", "WARN"), False),
        ({"event": ["*_FAILED"]}, event("WEBSOCKET_RECONNECTION_FAILED"), True),
        ({"event": ["websocket_*"]}, event("WEBSOCKET_DISCONNECTED", "WARN"), False),  # case matters
        ({"severity": ["WARN", "ERROR"]}, event(severity="WARN"), True),
        ({"severity": ["WARN", "ERROR"]}, event(severity="INFO"), False),
        ({"severity": ">=WARN"}, event(severity="ERROR"), True),
        ({"severity": ">=WARN"}, event(severity="WARN"), True),
        ({"severity": ">=WARN"}, event(severity="INFO"), False),
        ({"severity": ">WARN"}, event(severity="WARN"), False),
        ({"severity": "<=WARN"}, event(severity="INFO"), True),
        ({"severity": "<WARN"}, event(severity="WARN"), False),
        ({"severity": "==INFO"}, event(severity="INFO"), True),
        ({"source": ["wms"]}, event(), True),
        ({"source": ["other"]}, event(), False),
        ({"payload": {"snr": {"lt": 3}}}, event(snr=2.5), True),
        ({"payload": {"snr": {"lt": 3}}}, event(snr=3), False),
        ({"payload": {"snr": {"lte": 3}}}, event(snr=3), True),
        ({"payload": {"snr": {"gt": 3, "lt": 5}}}, event(snr=4), True),
        ({"payload": {"snr": {"gt": 3, "lt": 5}}}, event(snr=5), False),
        ({"payload": {"snr": {"gte": 1}}}, event(snr=1), True),
        ({"payload": {"snr": {"lt": 3}}}, event(), False),  # missing never compares
        ({"payload": {"snr": {"lt": 3}}}, event(snr="2"), False),  # nor does a string
        ({"payload": {"snr": {"lt": 3}}}, event(snr=True), False),  # nor a boolean
        ({"payload": {"measurementId": {"exists": True}}}, event(measurementId="m"), True),
        ({"payload": {"measurementId": {"exists": True}}}, event(), False),
        ({"payload": {"measurementId": {"exists": False}}}, event(), True),
        ({"payload": {"errorCode": "TIMEOUT"}}, event(errorCode="TIMEOUT"), True),  # bare value: eq
        ({"payload": {"errorCode": {"eq": "TIMEOUT"}}}, event(errorCode="OTHER"), False),
        ({"payload": {"errorCode": {"ne": "TIMEOUT"}}}, event(errorCode="OTHER"), True),
        ({"payload": {"errorCode": {"ne": "TIMEOUT"}}}, event(), True),
        ({"payload": {"errorCode": {"in": ["A", "B"]}}}, event(errorCode="B"), True),
        ({"payload": {"errorCode": {"in": ["A", "B"]}}}, event(errorCode="C"), False),
        ({"payload": {"retry": False}}, event(retry=False), True),
        ({"payload": {"api.status": {"gte": 500}}}, event(api={"status": 503}), True),  # dots reach in
        ({"payload": {"api.status": {"gte": 500}}}, event(api="503"), False),
        # A number beyond a float's range compares exactly (it raised OverflowError: issue 11).
        ({"payload": {"snr": {"lt": 3}}}, event(snr=10**400), False),
        ({"payload": {"snr": {"gt": 3}}}, event(snr=10**400), True),
        ({"payload": {"snr": {"gte": -1e308}}}, event(snr=-(10**400)), False),
        ({"payload": {"snr": {"lt": 3}}}, event(snr=float("inf")), False),  # json.loads gives inf for 1e999
        ({"payload": {"snr": {"eq": 3}}}, event(snr=10**400), False),
        ({"event": ["CONSTRAINT_VIOLATION"], "severity": ["INFO"]}, event(), False),  # all must hold
        (
            {"event": ["CONSTRAINT_VIOLATION"], "severity": ">=WARN", "payload": {"constraint": "FACE"}},
            event(constraint="FACE"),
            True,
        ),
    ],
)
def test_matches(conditions, ev, expected):
    assert matches(m(**conditions), ev) is expected


RULES = [
    Rule(name="errors", match=m(severity=">=WARN"), to=["ops-slack", "ops-email"]),
    Rule(name="constraints", match=m(event=["CONSTRAINT_*"]), to=["ops-slack", "qa-email"]),
    Rule(name="stop-here", match=m(event=["API_ERROR"]), to=["pager"], stop=True),
    Rule(name="everything", match=m(), to=["crm"]),
]


@pytest.mark.parametrize(
    ("ev", "rules", "destinations"),
    [
        (event(), ("errors", "constraints", "everything"), ("ops-slack", "ops-email", "qa-email", "crm")),
        (event("WMS_LOADED", "INFO"), ("everything",), ("crm",)),
        (event("API_ERROR"), ("errors", "stop-here"), ("ops-slack", "ops-email", "pager")),
    ],
)
def test_route_fires_every_matching_rule_until_stop_and_names_each_destination_once(ev, rules, destinations):
    result = route(RULES, ev)
    assert (result.rules, result.destinations) == (rules, destinations)


def test_no_rules_route_nowhere():
    assert route([], event()).destinations == ()


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        (
            {"severity": ">=FATAL"},
            "must be a list of severities or a threshold like '>=WARN' (with INFO, WARN, ERROR), got '>=FATAL'",
        ),
        (
            {"severity": "WARN+"},
            "must be a list of severities or a threshold like '>=WARN' (with INFO, WARN, ERROR), got 'WARN+'",
        ),
        ({"payload": {"snr": {}}}, "needs at least one of exists, eq, ne, in, lt, lte, gt, gte"),
    ],
)
def test_bad_conditions_say_what_is_allowed(conditions, message):
    with pytest.raises(ValidationError) as exc:
        m(**conditions)
    assert message in str(exc.value)


def test_codes_that_match_nothing_documented_are_warned_about():
    rules = [Rule(name="r", match=m(event=["CONSTRAINT_VIOLATON", "WEBSOCKET_*", "NOPE_*"]), to=["x"])]
    assert rule_warnings(rules) == [
        (
            "rules[0].match.event[0]: 'CONSTRAINT_VIOLATON' matches no documented WMS event code "
            "(did you mean 'CONSTRAINT_VIOLATION'?); it matches only if WMS sends such a code"
        ),
        "rules[0].match.event[2]: 'NOPE_*' matches no documented WMS event code; it matches only if WMS sends such a code",
    ]


BOUNDS_AND_VALUES = [
    Rule(name=f"{op}-{path}", match=m(payload={path: {op: 3}}), to=["x"])
    for op in ("lt", "lte", "gt", "gte", "eq", "ne")
    for path in ("snr", "a.b")
] + [
    Rule(name="in", match=m(payload={"snr": {"in": [1, "a", None, True]}}), to=["x"]),
    Rule(name="exists", match=m(payload={"a.b": {"exists": True}}), to=["x"]),
    Rule(name="all", match=m(), to=["y"]),
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(snr=JSON_VALUES, a=JSON_VALUES, digits=st.integers(min_value=300, max_value=4000))
def test_any_json_payload_is_routed_without_an_error_and_reaches_the_rule_that_matches_everything(snr, a, digits):
    for payload in ({"snr": snr, "a": a}, {"snr": 10**digits, "a": {"b": -(10**digits)}}):
        result = route(BOUNDS_AND_VALUES, event(**payload))
        assert result.unevaluable == ()
        assert "all" in result.rules and "y" in result.destinations


def test_a_condition_that_raises_does_not_match_and_says_why():
    class Unorderable:
        def __lt__(self, other):
            raise TypeError("no order")

        __eq__ = __lt__  # type: ignore[assignment]
        __hash__ = None  # type: ignore[assignment]

    problems: list[str] = []
    assert matches(m(payload={"snr": {"eq": 3}}), event(snr=Unorderable()), problems) is False
    assert problems == ["payload.snr: TypeError: no order"]
    result = route([Rule(name="r", match=m(payload={"snr": {"eq": 3}}), to=["x"])], event(snr=Unorderable()))
    assert (result.destinations, result.unevaluable) == ((), ("rule 'r': payload.snr: TypeError: no order",))


def _derived(code="SESSION_FAILED") -> Event:
    return Event("wms", "s-1", -1, 1764500000, "ERROR", code, {"reason": "API_ERROR"}, {}, derived="session")


def test_a_derived_event_matches_only_rules_that_name_it():
    rules = [
        Rule(name="everything", match=Match(), to=["crm"]),
        Rule(name="errors", match=Match(severity=["ERROR"]), to=["ops-email"]),
        Rule(name="failed-sessions", match=Match(event=["SESSION_FAILED"]), to=["ops-slack"]),
        Rule(name="all-sessions", match=Match(event=["SESSION_*"]), to=["audit"]),
    ]
    assert route(rules, _derived()).destinations == ("ops-slack", "audit")
    assert route(rules, _derived("SESSION_COMPLETED")).destinations == ("audit",)
    assert route(rules, event()).destinations == ("crm", "ops-email")


def test_group_by_rules_group_their_destinations_but_never_a_derived_event():
    rules = [
        Rule(name="grouped", match=Match(event=["*"]), to=["ops-slack"], group_by="session"),
        Rule(name="plain", match=Match(), to=["ops-slack", "crm"]),
    ]
    result = route(rules, event())
    assert (result.destinations, result.grouped) == (("ops-slack", "crm"), (("ops-slack", "grouped"),))
    assert route(rules, _derived()).grouped == ()


def test_no_rule_warning_for_the_codes_the_relay_derives():
    rules = [Rule(name="r", match=Match(event=["SESSION_FAILED", "SESSION_ABANDONED", "SESION_FAILED"]), to=["x"])]
    expected = (
        "rules[0].match.event[2]: 'SESION_FAILED' matches no documented WMS event code "
        "(did you mean 'SESSION_FAILED'?); it matches only if WMS sends such a code"
    )
    assert rule_warnings(rules) == [expected]
