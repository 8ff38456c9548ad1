"""The session state machine: outcomes, reasons, gaps and the derived event, without Redis."""

import itertools
import json
import random

import pytest

from relay.domain.event import InvalidEvent, parse_event
from relay.domain.samples import sample_event, to_body
from relay.domain.session import (
    KEY_FIELDS_MAX,
    KEY_VALUE_MAX,
    Seen,
    Verdict,
    decide,
    derived_body,
    final_line,
    final_record,
    key_payload,
    parse_record,
    record_line,
    step,
)

START = 1_764_500_000


def _seen(codes: list[str]) -> list[Seen]:
    return [Seen(i, START + i, code, "INFO", START + i, None, {}) for i, code in enumerate(codes)]


# The README's table, row by row: (events in sequence order, outcome, reason, deciding sequence).
TABLE = [
    (["WMS_LOADED", "CAMERA_STARTED"], "in_progress", None, None),
    (["MEASUREMENT_CREATED", "SCAN_COMPLETED", "RESULTS_RECEIVED", "PAGE_UNLOADED"], "completed", None, None),
    (["CAMERA_PERMISSION_DENIED", "PAGE_UNLOADED"], "failed", "CAMERA_PERMISSION_DENIED", 0),
    (
        ["WEBSOCKET_DISCONNECTED", "CONSTRAINT_VIOLATION", "MEASUREMENT_CANCELED", "PAGE_UNLOADED"],
        "failed",
        "CONSTRAINT_VIOLATION",
        1,
    ),
    (["WEBSOCKET_DISCONNECTED", "WEBSOCKET_RECONNECTION_FAILED"], "failed", "WEBSOCKET_RECONNECTION_FAILED", 1),
    (["SCAN_COMPLETED", "API_ERROR"], "failed", "API_ERROR", 1),
    (["MEASUREMENT_CANCELED"], "failed", "MEASUREMENT_CANCELED", 0),
    # A failure followed by results (a second measurement that succeeded): completed.
    (["CONSTRAINT_VIOLATION", "MEASUREMENT_STARTED", "RESULTS_RECEIVED"], "completed", None, None),
    # Results, then a failure of a later measurement: failed, decided by that failure.
    (["RESULTS_RECEIVED", "MEASUREMENT_STARTED", "API_ERROR", "PAGE_UNLOADED"], "failed", "API_ERROR", 2),
    (["WEBSOCKET_DISCONNECTED", "WEBSOCKET_RECONNECTED", "RESULTS_RECEIVED"], "completed", None, None),
    (["MEASUREMENT_STARTED", "PAGE_VISIBILITY_CHANGE", "PAGE_UNLOADED"], "abandoned", "PAGE_UNLOADED", 2),
]


@pytest.mark.parametrize(("codes", "outcome", "reason", "deciding"), TABLE)
def test_the_outcome_table(codes, outcome, reason, deciding):
    verdict = decide(_seen(codes))
    assert (verdict.outcome, verdict.reason) == (outcome, reason)
    assert (verdict.deciding.sequence if verdict.deciding else None) == deciding


def _record(events: list[dict], received: list[float]) -> str:
    return "".join(record_line(parse_event("wms", to_body(e)), at) for e, at in zip(events, received, strict=True))


@pytest.mark.parametrize(("codes", "outcome", "reason", "deciding"), TABLE)
def test_the_outcome_does_not_depend_on_arrival_order_or_repeats(codes, outcome, reason, deciding):
    events = [sample_event(code, "s-1", i, START + i) for i, code in enumerate(codes)]
    orders = list(itertools.permutations(range(len(events))))[:24]
    for order in orders:
        arrived = [events[i] for i in order] + [events[order[0]]]  # and the first one twice
        session = parse_record("wms", "s-1", _record(arrived, [START + n for n in range(len(arrived))]))
        assert (session.verdict.outcome, session.verdict.reason) == (outcome, reason)
        assert [e.sequence for e in session.events] == list(range(len(codes)))
        assert session.duplicates == 1


def test_a_late_results_received_after_a_disconnect_completes_the_session():
    codes = ["MEASUREMENT_CREATED", "WEBSOCKET_DISCONNECTED", "RESULTS_RECEIVED"]
    events = [sample_event(code, "s-1", i, START + i) for i, code in enumerate(codes)]
    arrived = [events[0], events[1]]
    assert parse_record("wms", "s-1", _record(arrived, [START, START + 1])).verdict.outcome == "in_progress"
    arrived = [events[0], events[1], events[2]]
    assert parse_record("wms", "s-1", _record(arrived, [START, START + 1, START + 5])).outcome == "completed"


def test_gaps_out_of_order_arrivals_and_late_events_are_counted():
    events = [sample_event("INTERMEDIATE_RESULTS", "s-1", i, START + i) for i in (0, 1, 2, 5, 9)]
    # Arrival order 0, 2, 1, 9, 5: 1 and 5 came after a higher sequence.
    text = _record([events[0], events[2], events[1], events[4], events[3]], [START + n for n in range(5)])
    session = parse_record("wms", "s-1", text)
    assert session.gaps == [(3, 4), (6, 8)]
    assert session.out_of_order == 2
    text += final_line({"outcome": "failed"}) + _record([sample_event("PAGE_UNLOADED", "s-1", 10, START + 10)], [0])
    session = parse_record("wms", "s-1", text)
    assert (session.late, session.final, session.outcome) == (1, {"outcome": "failed"}, "failed")
    assert session.gaps[0] == (3, 4)


def test_a_session_seen_from_the_middle_has_a_gap_from_sequence_zero():
    text = _record([sample_event("SCAN_COMPLETED", "s-1", 3, START)], [START])
    assert parse_record("wms", "s-1", text).gaps == [(0, 2)]


def test_unreadable_lines_are_skipped():
    good = _record([sample_event("RESULTS_RECEIVED", "s-1", 0, START)], [START])
    text = "not json\n[1]\n" + good + '["F"]\n{"a": 1}\n' + '[2,"x","A","INFO",1,null,{}]\n'
    session = parse_record("wms", "s-1", text)
    assert [e.code for e in session.events] == ["RESULTS_RECEIVED"]
    assert session.final is None


def test_step_waits_for_the_settle_time_then_decides():
    text = _record([sample_event("CONSTRAINT_VIOLATION", "s-1", 0, START)], [START + 0.5])
    session = parse_record("wms", "s-1", text)
    assert step(session, START + 10, settle=30, idle_timeout=600) == START + 30.5
    verdict = step(session, START + 30.5, settle=30, idle_timeout=600)
    assert isinstance(verdict, Verdict)
    assert (verdict.outcome, verdict.reason) == ("failed", "CONSTRAINT_VIOLATION")


def test_step_abandons_a_session_without_an_outcome_after_the_idle_timeout():
    session = parse_record("wms", "s-1", _record([sample_event("CAMERA_STARTED", "s-1", 0, START)], [START]))
    assert step(session, START + 30, settle=30, idle_timeout=600) == START + 600
    assert step(session, START + 600, settle=30, idle_timeout=600) == Verdict("abandoned", "idle")


def test_key_payload_keeps_a_few_short_scalars():
    payload = {
        "measurementId": "m-1",
        "constraint": "x" * 500,
        "snr": 4.5,
        "nested": {"a": 1},
        "flag": True,
        "huge": 10**30,
        "nan": float("nan"),
        "more": 1,
        "even more": 2,
    }
    kept = key_payload(payload)
    assert kept == {"constraint": "x" * KEY_VALUE_MAX, "snr": 4.5, "flag": True, "huge": str(10**30)}
    assert len(kept) == KEY_FIELDS_MAX


def test_a_record_line_is_one_line_whatever_the_payload():
    event = sample_event("CONSTRAINT_VIOLATION", "s-1", 0, START)
    event["payload"]["constraint"] = 'line\nbreak ["F",{}]\r\n\u2028'
    line = record_line(parse_event("wms", to_body(event)), START)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert parse_record("wms", "s-1", line + line).final is None


def _failed_session():
    codes = [
        "WMS_LOADED",
        "MEASUREMENT_CREATED",
        "INTERMEDIATE_RESULTS",
        "CONSTRAINT_VIOLATION",
        "MEASUREMENT_CANCELED",
        "PAGE_UNLOADED",
    ]
    events = [sample_event(code, "s-1", i, START + 4 * i) for i, code in enumerate(codes)]
    del events[2]  # sequence 2 never arrived
    return parse_record("wms", "s-1", _record(events, [START + n for n in range(len(events))]))


def test_the_derived_event_of_a_failed_session():
    session = _failed_session()
    body = derived_body(session, session.verdict)
    assert {k: v for k, v in body.items() if k != "payload"} == {
        "event": "SESSION_FAILED",
        "severity": "ERROR",
        "sessionId": "s-1",
        "timestamp": START + 20,
        "derived": "session",
    }
    payload = body["payload"]
    assert payload["outcome"] == "failed"
    assert payload["reason"] == "CONSTRAINT_VIOLATION"
    assert payload["reasonSequence"] == 3
    assert payload["reasonPayload"] == {
        "constraint": "FACE_NOT_CENTERED",
        "measurementId": "f0c8ca8d-111d-4dcf-a69d-46ed39a2db06",
    }
    assert payload["measurementIds"] == ["f0c8ca8d-111d-4dcf-a69d-46ed39a2db06"]
    assert (payload["eventCount"], payload["durationSeconds"], payload["gaps"]) == (5, 20, [[2, 2]])
    assert payload["codes"] == [
        "WMS_LOADED",
        "MEASUREMENT_CREATED",
        "CONSTRAINT_VIOLATION",
        "MEASUREMENT_CANCELED",
        "PAGE_UNLOADED",
    ]
    assert payload["timeline"][2] == {
        "sequence": 3,
        "event": "CONSTRAINT_VIOLATION",
        "severity": "ERROR",
        "timestamp": START + 12,
        "payload": {"constraint": "FACE_NOT_CENTERED"},
    }
    event = parse_event("wms", json.dumps(body).encode(), derived=True)
    assert (event.id, event.sequence, event.code) == ("wms:s-1:session", -1, "SESSION_FAILED")
    assert final_record(body, event.id, START + 60.25) == {
        "outcome": "failed",
        "reason": "CONSTRAINT_VIOLATION",
        "sequence": 3,
        "event": "wms:s-1:session",
        "at": START + 60.25,
    }


def test_last_snr_is_the_latest_in_sequence_order():
    events = [sample_event("INTERMEDIATE_RESULTS", "s-1", i, START + i) for i in range(3)]
    for i, event in enumerate(events):
        event["payload"]["snr"] = [3.5, 7.25, 5.0][i]
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    session = parse_record("wms", "s-1", _record(shuffled, [START, START + 1, START + 2]))
    assert session.last_snr == 5.0


def test_ingest_refuses_the_codes_the_relay_derives():
    body = to_body(sample_event("RESULTS_RECEIVED", "s-1", 0, START) | {"event": "SESSION_FAILED"})
    with pytest.raises(InvalidEvent) as exc:
        parse_event("wms", body)
    assert exc.value.detail == "event: SESSION_FAILED is a code the relay derives itself; WMS does not send it"


def test_a_derived_body_must_carry_a_derived_code_and_name():
    with pytest.raises(InvalidEvent) as exc:
        parse_event("wms", to_body(sample_event("RESULTS_RECEIVED", "s-1", 0, START) | {"derived": "x"}), derived=True)
    assert (
        exc.value.detail
        == "event: must be one of SESSION_COMPLETED, SESSION_FAILED, SESSION_ABANDONED, EVENT_GROUP, got 'RESULTS_RECEIVED'"
    )
    body = {"event": "SESSION_FAILED", "severity": "ERROR", "sessionId": "s-1", "timestamp": START}
    with pytest.raises(InvalidEvent) as exc:
        parse_event("wms", json.dumps(body).encode(), derived=True)
    assert exc.value.detail == "derived: required, must be a non-empty string"
