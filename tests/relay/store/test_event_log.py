"""The event log (relay/store/event_log.py) on events taken through the real path: signed events
posted to the app, fanned out and delivered by an in-process worker to local peers (the session
built by tests/relay/cli/test_sessions.py's failed_session), and what it costs in Redis."""

import hashlib
import json
import time

import pytest
from click.testing import CliRunner

from relay.cli.main import main
from relay.domain.event import parse_event
from relay.domain.outcome import Outcome
from relay.domain.samples import sample_event, to_body
from relay.domain.times import iso
from relay.store import attempts, dead_letters, destination_state, event_log, keys
from relay.store.event_log import Query
from tests.conftest import Relay
from tests.relay.cli.test_sessions import FAILED_MID, SESSIONS_YAML, env, failed_session, post  # noqa: F401 (env: a fixture)

SEQUENCES = (0, 1, 2, 5, 6, 7, 8, 9, 10)  # the failed session's, 3-4 never received
CODES = {
    0: "WMS_LOADED",
    1: "CONFIGURATION_LOADED",
    2: "CAMERA_PERMISSION_GRANTED",
    5: "MEASUREMENT_CREATED",
    6: "INTERMEDIATE_RESULTS",
    7: "INTERMEDIATE_RESULTS",
    8: "CONSTRAINT_VIOLATION",
    9: "MEASUREMENT_CANCELED",
    10: "PAGE_UNLOADED",
}


@pytest.fixture
def relay(relay_factory) -> Relay:
    """The relay of SESSIONS_YAML: sources wms and kiosk; Slack, mail and a callback (crm)."""
    return relay_factory(SESSIONS_YAML)


def ids(listing: dict) -> list[str]:
    return [e["id"] for e in listing["events"]]


def test_every_event_and_the_derived_one_are_logged_newest_first_with_their_rules_and_states(relay):
    failed_session(relay)
    listing = event_log.find(relay.redis, Query())
    assert ids(listing) == ["wms:s-failed:session", *(f"wms:s-failed:{n}" for n in reversed(SEQUENCES))]
    assert (listing["count"], listing["more"], listing["scanned"]) == (10, False, 10)
    by_id = {e["id"]: e for e in listing["events"]}
    violation = by_id["wms:s-failed:8"]
    assert {k: v for k, v in violation.items() if not k.endswith("_at")} == {
        "id": "wms:s-failed:8",
        "source": "wms",
        "session_id": "s-failed",
        "code": "CONSTRAINT_VIOLATION",
        "measurement_id": FAILED_MID,
        "outcome": "failed",
        "rules": ["failed-measurements", "everything-downstream"],
        "destinations": {
            "ops-slack": {"state": "retrying", "attempts": 1},
            "ops-email": {"state": "failed", "attempts": 1},
            "crm": {"state": "ok", "attempts": 1},
        },
        "grouped": [],
    }
    assert by_id["wms:s-failed:session"]["code"] == "SESSION_FAILED"
    assert by_id["wms:s-failed:session"]["rules"] == ["outcomes"]
    assert by_id["wms:s-failed:session"]["destinations"] == {
        "ops-slack": {"state": "ok", "attempts": 1},
        "crm": {"state": "ok", "attempts": 1},
    }
    assert [by_id[f"wms:s-failed:{n}"]["code"] for n in SEQUENCES] == [CODES[n] for n in SEQUENCES]
    assert by_id["wms:s-failed:0"]["measurement_id"] is None  # WMS has not created one yet


def test_show_has_the_body_the_rules_and_every_attempt_with_status_and_duration(relay):
    failed_session(relay)
    shown = event_log.detail(relay.redis, "wms:s-failed:8")
    assert shown is not None
    body = json.loads(shown["body"])
    assert (body["sessionId"], body["sequence"], body["event"]) == ("s-failed", 8, "CONSTRAINT_VIOLATION")
    assert (shown["code"], shown["severity"], shown["measurement_id"]) == ("CONSTRAINT_VIOLATION", "ERROR", FAILED_MID)
    assert shown["rules"] == ["failed-measurements", "everything-downstream"]
    assert shown["outcome"] == "failed"
    assert shown["destinations"]["ops-email"] == {"state": "failed", "attempts": 1, "delivery": "dead"}
    by_destination = {a["destination"]: a for a in shown["attempts"]}
    assert sorted(by_destination) == ["crm", "ops-email", "ops-slack"]
    slack, email = by_destination["ops-slack"], by_destination["ops-email"]
    assert (slack["attempt"], slack["outcome"], slack["status"], slack["detail"]) == (
        1,
        "transient",
        "HTTP 503",
        "unavailable",
    )
    assert 300 < slack["next_retry_in"] < 900  # the 10m delay, with jitter
    assert (email["outcome"], email["status"], email["next_retry_in"]) == ("permanent", "SMTP 550", None)
    assert all(a["duration_ms"] > 0 for a in shown["attempts"])
    # The dead letter keeps its delivery's attempts: it may outlive the event log's record.
    letter = dead_letters.get(relay.redis, "ops-email", shown["id"])
    assert letter is not None
    assert [{**a, "at": iso(a["at"])} for a in dead_letters.attempts(relay.redis, letter)] == [
        {"event": shown["id"], **email}
    ]
    assert event_log.detail(relay.redis, "wms:s-failed:3") is None  # never received


def test_a_retry_that_succeeds_adds_its_attempt_and_the_event_comes_to_delivered(relay):
    failed_session(relay)
    relay.redis.hdel(keys.delivery_key("wms:s-failed:8"), "ops-email")  # as if 2.5 days had passed
    assert relay.run_due_retries() == 1
    relay.drain()
    shown = event_log.detail(relay.redis, "wms:s-failed:8")
    assert shown is not None
    assert [
        (a["destination"], a["attempt"], a["outcome"]) for a in shown["attempts"] if a["destination"] == "ops-slack"
    ] == [
        ("ops-slack", 1, "transient"),
        ("ops-slack", 2, "ok"),
    ]
    assert shown["destinations"]["ops-slack"] == {"state": "ok", "attempts": 2}
    assert shown["outcome"] == "failed"  # the mail's dead letter still
    assert ids(event_log.find(relay.redis, Query(outcome="retrying"))) == []


def test_searches_by_session_measurement_code_destination_outcome_and_time(relay):
    failed_session(relay)
    post(relay, [sample_event("WMS_LOADED", "s-other", 0)])
    relay.drain()
    r = relay.redis
    assert ids(event_log.find(r, Query(session="s-other"))) == ["wms:s-other:0"]
    assert ids(event_log.find(r, Query(session="s-failed"))) == ids(event_log.find(r, Query()))[1:]
    assert ids(event_log.find(r, Query(code="CONSTRAINT_VIOLATION"))) == ["wms:s-failed:8"]
    assert ids(event_log.find(r, Query(code="SESSION_FAILED"))) == ["wms:s-failed:session"]
    assert ids(event_log.find(r, Query(measurement=FAILED_MID))) == [
        "wms:s-failed:session",  # its summary carries the measurementId too
        *(f"wms:s-failed:{n}" for n in (10, 9, 8, 7, 6, 5)),
    ]
    assert ids(event_log.find(r, Query(destination="ops-email"))) == ["wms:s-failed:9", "wms:s-failed:8"]
    assert ids(event_log.find(r, Query(outcome="failed"))) == ["wms:s-failed:8"]
    assert ids(event_log.find(r, Query(destination="crm", outcome="delivered", session="s-failed")))[:2] == [
        "wms:s-failed:session",
        "wms:s-failed:10",
    ]
    assert ids(event_log.find(r, Query(since=time.time() + 1))) == []
    assert len(ids(event_log.find(r, Query(since=time.time() - 60)))) == 11
    limited = event_log.find(r, Query(session="s-failed"), limit=2)
    assert (ids(limited), limited["more"]) == (["wms:s-failed:session", "wms:s-failed:10"], True)
    assert event_log.find(r, Query(session="s-failed"), limit=10)["more"] is False


def test_an_event_that_matches_no_rule_is_logged_unrouted(relay_factory):
    relay = relay_factory(SESSIONS_YAML.replace("  - {name: everything-downstream, match: {}, to: [crm]}\n", ""))
    post(relay, [sample_event("WMS_LOADED", "s-quiet", 0)])
    relay.drain()
    [logged] = event_log.find(relay.redis, Query())["events"]
    assert (logged["id"], logged["outcome"], logged["rules"], logged["destinations"]) == (
        "wms:s-quiet:0",
        "unrouted",
        [],
        {},
    )
    assert relay.redis.ttl(keys.event_log_key("wms", "s-quiet")) > 7 * 86400 - 60


def test_an_event_is_logged_once_and_kept_for_the_retention(relay_factory):
    relay = relay_factory(SESSIONS_YAML + "event_log: {retention: 2h}\n")
    post(relay, [sample_event("WMS_LOADED", "s-once", 0)])
    relay.drain()
    event = parse_event("wms", to_body(sample_event("WMS_LOADED", "s-once", 0)))
    envelope = {"id": event.id, "source": "wms", "received_at": time.time(), "body": "{}"}
    pipe = relay.redis.pipeline()
    event_log.log_event(pipe, event, envelope, (), (), (), 7200)  # the fan-out reading its entry again
    assert pipe.execute() == [0]
    assert relay.redis.xlen(keys.EVENT_LOG) == 1
    assert 7200 - 60 < relay.redis.ttl(keys.event_log_key("wms", "s-once")) <= 7200
    assert json.loads(event_log.detail(relay.redis, event.id)["body"])["sessionId"] == "s-once"  # type: ignore[index]


def test_an_attempt_of_an_event_not_logged_writes_nothing(redis):
    record = attempts.attempt_record("wms:gone:1", "crm", 1, Outcome("ok", "HTTP 200"), None, 0.01)
    pipe = redis.pipeline()
    event_log.add_attempt(pipe, record)
    assert pipe.execute() == [0]
    assert redis.exists(keys.event_log_key("wms", "gone")) == 0


def test_an_event_costs_well_under_a_kibibyte_besides_its_body(redis):
    """What docs/event-log.md reports: 2,200 events of 200 sessions like WMS's, one attempt per
    destination, measured with MEMORY USAGE, plus the 65 B per key (a session's hash, here) that
    used_memory counts beyond it (bench/sizing.py)."""
    pipe = redis.pipeline(transaction=False)
    events = body_bytes = 0
    for n in range(200):
        session = hashlib.sha256(f"size-{n}".encode()).hexdigest()[:25]  # as long as WMS's
        for sequence, code in enumerate([*CODES.values(), "RESULTS_RECEIVED", "PAGE_UNLOADED"][:11]):
            body = to_body(sample_event(code, session, sequence, timestamp=1_700_000_000 + sequence)).decode()
            event = parse_event("wms", body.encode())
            to = ("ops-slack", "ops-email", "crm") if event.severity != "INFO" else ("crm",)
            envelope = {"id": event.id, "source": "wms", "received_at": time.time(), "body": body}
            event_log.log_event(pipe, event, envelope, ("failed-measurements", "everything-downstream"), to, (), 86400)
            for destination in to:
                record = attempts.attempt_record(
                    event.id, destination, 1, Outcome("ok", "HTTP 200", "ok"), None, 0.0123
                )
                event_log.add_attempt(pipe, record)
            events, body_bytes = events + 1, body_bytes + len(body)
    pipe.execute()
    records = sum(redis.memory_usage(key, samples=0) for key in redis.scan_iter(match="relay:event-log:*", count=1000))
    index = redis.memory_usage(keys.EVENT_LOG, samples=0)
    besides_body = (records + index - body_bytes + 65 * 200) / events
    print(
        f"\n{events} events, body {body_bytes / events:.0f} B: record {records / events:.0f} B, index entry "
        f"{index / events:.0f} B; besides the body {besides_body:.0f} B per event"
    )
    assert besides_body < 450


def test_a_delivery_waiting_for_a_paused_destination_makes_its_event_failed(relay):
    failed_session(relay)  # ops-slack answered 503 to sequence 8: a retry is planned
    before = event_log.detail(relay.redis, "wms:s-failed:8")
    assert before is not None and before["destinations"]["ops-slack"] == {"state": "retrying", "attempts": 1}
    destination_state.pause(relay.redis, "ops-slack", "maintenance", "operator", None)
    after = event_log.detail(relay.redis, "wms:s-failed:8")
    assert after is not None and after["destinations"]["ops-slack"] == {"state": "waiting", "attempts": 1}
    # A new event for the paused destination waits without an attempt: its event has failed for now.
    post(relay, [sample_event("CONSTRAINT_VIOLATION", "s-paused", 0)])
    relay.drain()
    [waiting] = event_log.find(relay.redis, Query(session="s-paused"))["events"]
    assert (waiting["outcome"], waiting["destinations"]["ops-slack"]) == ("failed", {"state": "waiting", "attempts": 0})
    assert ids(event_log.find(relay.redis, Query(outcome="failed", session="s-paused"))) == ["wms:s-paused:0"]
    # Delivered ones stay delivered: only what is not done waits.
    assert event_log.detail(relay.redis, "wms:s-failed:10")["outcome"] == "delivered"  # type: ignore[index]


@pytest.mark.parametrize(
    ("event_id", "parts"),
    [
        ("wms:s-1:7", ("wms", "s-1", "7")),
        ("wms:s-1:session", ("wms", "s-1", "session")),
        ("wms:s-1:group:ops-slack:part-2", ("wms", "s-1", "group:ops-slack:part-2")),
        # A sessionId may hold what a derived id ends with: only the whole form counts.
        ("wms:victim:group:ops-slack:part-1:x:5", ("wms", "victim:group:ops-slack:part-1:x", "5")),
        ("wms:a:session:3", ("wms", "a:session", "3")),
        ("wms:a:group:b:session", ("wms", "a:group:b", "session")),
    ],
)
def test_an_event_id_is_split_into_source_session_and_its_field(event_id, parts):
    assert event_log.split_id(event_id) == parts


def test_a_body_over_32_kib_is_kept_cut_with_its_size_code_and_measurement(relay, env):  # noqa: F811
    event = sample_event("CONSTRAINT_VIOLATION", "s-big", 0)
    event["payload"] = {"measurementId": FAILED_MID, "pad": "é" * 40_000}  # 2 bytes each
    body = to_body(event)
    post(relay, [event])
    relay.drain()
    shown = event_log.detail(relay.redis, "wms:s-big:0")
    assert shown is not None
    kept = shown["body"].encode()
    assert event_log.BODY_KEPT - 1 <= len(kept) <= event_log.BODY_KEPT and shown["body_bytes"] == len(body)
    assert body.startswith(kept)  # whole characters only: a cut 'é' is dropped
    assert (shown["code"], shown["severity"], shown["measurement_id"]) == ("CONSTRAINT_VIOLATION", "ERROR", FAILED_MID)
    assert relay.http.to("/crm")[0].body == body  # delivered whole: the log only keeps less
    printed = CliRunner().invoke(main, ["events", "show", "wms:s-big:0"], env=env, catch_exceptions=False).output
    assert f"\nbody (its first {len(kept):,} of {len(body):,} bytes: the log keeps no more):\n" in printed


def test_a_session_logs_at_most_its_maximum_of_events_and_says_why_the_rest_is_missing(relay, monkeypatch):
    monkeypatch.setattr(event_log, "SESSION_EVENTS_MAX", 3)
    post(relay, [sample_event("WMS_LOADED", "s-endless", n) for n in range(5)])
    relay.drain()
    assert ids(event_log.find(relay.redis, Query(session="s-endless"))) == [f"wms:s-endless:{n}" for n in (2, 1, 0)]
    assert relay.redis.hlen(keys.event_log_key("wms", "s-endless")) == 3
    assert event_log.detail(relay.redis, "wms:s-endless:4") is None
    assert "at most 3 events a session" in event_log.not_found("wms:s-endless:4", 86400)
    assert len(relay.http.to("/crm")) == 5  # delivered all the same
    # The first three are logged once, however often the fan-out reads them.
    event = parse_event("wms", to_body(sample_event("WMS_LOADED", "s-endless", 0)))
    pipe = relay.redis.pipeline()
    event_log.log_event(pipe, event, {"received_at": time.time(), "body": "{}"}, (), (), (), 86400)
    event_log.log_event(
        pipe,
        parse_event("wms", to_body(sample_event("WMS_LOADED", "s-endless", 9))),
        {"received_at": time.time(), "body": "{}"},
        (),
        (),
        (),
        86400,
    )
    assert pipe.execute() == [0, 2]
