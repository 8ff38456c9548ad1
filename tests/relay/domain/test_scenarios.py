"""The scripted sessions: their exact codes, realistic valid events, a repeatable shuffle, and the
outcome each declares being the one relay/domain/session.py derives."""

import random
from itertools import pairwise

import pytest

from config.wms_events import CATALOGUE
from relay.domain.event import parse_event
from relay.domain.samples import COMPLETED_SESSION, to_body
from relay.domain.scenarios import SCENARIOS, measurement_id, play, shuffled
from relay.domain.session import Seen, Session, step

OPENING = list(COMPLETED_SESSION[:6])  # WMS_LOADED ... MEASUREMENT_CREATED
IR = "INTERMEDIATE_RESULTS"
EXPECTED = {
    "success": (
        [*OPENING, IR, IR, IR, IR, "SCAN_COMPLETED", "RESULTS_RECEIVED", "REDIRECTING_TO_CALLBACK"],
        "completed",
        None,
    ),
    "camera-denied": (
        ["WMS_LOADED", "CONFIGURATION_LOADED", "CAMERA_PERMISSION_DENIED", "PAGE_UNLOADED"],
        "failed",
        "CAMERA_PERMISSION_DENIED",
    ),
    "constraint-violation": (
        [*OPENING, IR, IR, "CONSTRAINT_VIOLATION", "MEASUREMENT_CANCELED", "PAGE_UNLOADED"],
        "failed",
        "CONSTRAINT_VIOLATION",
    ),
    "websocket-recovered": (
        [
            *OPENING,
            IR,
            "WEBSOCKET_DISCONNECTED",
            "WEBSOCKET_RECONNECTED",
            IR,
            "SCAN_COMPLETED",
            "RESULTS_RECEIVED",
        ],
        "completed",
        None,
    ),
    "reconnection-failed": (
        [*OPENING, IR, "WEBSOCKET_DISCONNECTED", "WEBSOCKET_RECONNECTION_FAILED", "MEASUREMENT_CANCELED"],
        "failed",
        "WEBSOCKET_RECONNECTION_FAILED",
    ),
    "api-error": ([*OPENING, IR, IR, IR, IR, "SCAN_COMPLETED", "API_ERROR"], "failed", "API_ERROR"),
    "tab-closed": ([*OPENING, IR, "PAGE_VISIBILITY_CHANGE", "PAGE_UNLOADED"], "abandoned", "PAGE_UNLOADED"),
    "idle": ([*OPENING, IR], "abandoned", "idle"),
}
START = 1689684577


def test_the_scenarios_are_exactly_these():
    assert list(SCENARIOS) == list(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_each_scenario_has_its_codes_outcome_and_reason(name):
    codes, outcome, reason = EXPECTED[name]
    scenario = SCENARIOS[name]
    assert (list(scenario.codes), scenario.outcome, scenario.reason) == (codes, outcome, reason)
    assert [e["event"] for e in play(name, "s-1", START)] == codes


@pytest.mark.parametrize("name", EXPECTED)
def test_every_event_is_valid_with_the_catalogue_severity(name):
    events = play(name, "s-1", START)
    assert [e["sequence"] for e in events] == list(range(len(events)))
    for event in events:
        parsed = parse_event("wms", to_body(event))
        assert (parsed.session_id, parsed.severity) == ("s-1", CATALOGUE[parsed.code].severity)
        assert parsed.known


@pytest.mark.parametrize("name", EXPECTED)
def test_timestamps_rise_a_few_seconds_apart_from_start(name):
    stamps = [e["timestamp"] for e in play(name, "s-1", START)]
    assert stamps[0] == START
    assert stamps[-1] == START + SCENARIOS[name].duration
    assert all(1 <= later - earlier <= 5 for earlier, later in pairwise(stamps))


def test_a_session_carries_its_own_measurement_id_once_created():
    events = play("constraint-violation", "s-1", START)
    ids = [e.get("payload", {}).get("measurementId") for e in events]
    assert ids == [None] * 5 + [measurement_id("s-1")] * 6
    assert measurement_id("s-1") != measurement_id("s-2")
    assert len(measurement_id("s-1")) == 36  # a uuid's text


def test_payloads_are_those_of_a_real_session():
    success = play("success", "s-1", START)
    m = measurement_id("s-1")
    assert [e["payload"] for e in success if e["event"] == IR] == [
        {"snr": 1.8, "sequence": 1, "measurementId": m},
        {"snr": 3.4, "sequence": 2, "measurementId": m},
        {"snr": 4.9, "sequence": 3, "measurementId": m},
        {"snr": 6.2, "sequence": 4, "measurementId": m},
    ]
    (violation,) = [e for e in play("constraint-violation", "s-1", START) if e["event"] == "CONSTRAINT_VIOLATION"]
    assert violation["payload"] == {"constraint": "FACE_NOT_CENTERED", "measurementId": m}
    assert play("api-error", "s-1", START)[-1]["payload"] == {"errorCode": "MEASUREMENT_CLOSED", "measurementId": m}
    (hidden,) = [e for e in play("tab-closed", "s-1", START) if e["event"] == "PAGE_VISIBILITY_CHANGE"]
    assert hidden["payload"] == {"visibility": "hidden", "measurementId": m}
    assert [e["payload"]["sequence"] for e in play("websocket-recovered", "s-1", START) if e["event"] == IR] == [1, 2]
    # Before the measurement exists, an event that may carry its id has no payload at all.
    assert "payload" not in play("camera-denied", "s-1", START)[-1]


def test_an_unknown_scenario_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError) as raised:
        play("sucess", "s-1", START)
    assert str(raised.value) == (
        "no scenario named 'sucess' (known: 'success', 'camera-denied', 'constraint-violation', "
        "'websocket-recovered', 'reconnection-failed', 'api-error', 'tab-closed', 'idle')"
    )


def test_shuffled_is_a_permutation_plus_a_fifth_of_the_events_again():
    events = play("success", "s-1", START)
    mixed = shuffled(events, random.Random(7))
    assert len(mixed) == 13 + 3  # round(13 * 0.2)
    assert sorted(e["sequence"] for e in set_of(mixed)) == list(range(13))
    repeated = [seq for seq in range(13) if [e["sequence"] for e in mixed].count(seq) == 2]
    assert len(repeated) == 3
    assert [e["sequence"] for e in mixed] != sorted(e["sequence"] for e in mixed)
    assert events == play("success", "s-1", START)  # the input is left as it was


def set_of(events):
    return list({e["sequence"]: e for e in events}.values())


@pytest.mark.parametrize(("fraction", "twice"), [(0, 0), (0.2, 3), (0.5, 6), (1, 13)])
def test_the_duplicate_fraction_is_how_many_are_sent_twice(fraction, twice):
    mixed = shuffled(play("success", "s-1", START), random.Random(1), duplicate=fraction)
    assert len(mixed) - 13 == twice


def test_the_same_seed_shuffles_alike():
    events = play("api-error", "s-1", START)
    assert shuffled(events, random.Random(42)) == shuffled(events, random.Random(42))
    orders = {tuple(e["sequence"] for e in shuffled(events, random.Random(seed))) for seed in range(5)}
    assert len(orders) == 5


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_a_duplicate_fraction_outside_0_to_1_is_refused(fraction):
    with pytest.raises(ValueError) as raised:
        shuffled([], random.Random(1), duplicate=fraction)
    assert str(raised.value) == f"duplicate: must be a fraction from 0 to 1, got {fraction!r}"


def derived(events) -> tuple[str, str | None]:
    """What the session state machine makes of these events (in sequence order) once the session
    is settled or idle."""
    seen = tuple(
        Seen(e.sequence, float(e.sequence), e.code, e.severity, e.timestamp, e.measurement_id, e.payload)
        for e in (parse_event("wms", to_body(event)) for event in events)
    )
    session = Session(source="wms", session_id="s-1", events=seen, out_of_order=0, final=None, late=0, duplicates=0)
    verdict = step(session, now=session.last_received + 3600, settle=5, idle_timeout=600)
    assert not isinstance(verdict, float)
    return verdict.outcome, verdict.reason


@pytest.mark.parametrize("name", EXPECTED)
def test_the_declared_outcome_is_what_the_state_machine_derives(name):
    scenario = SCENARIOS[name]
    assert derived(play(name, "s-1", START)) == (scenario.outcome, scenario.reason)
