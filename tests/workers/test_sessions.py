"""Sessions on the worker side: tracked as events are fanned out, one derived event per session,
through the same rules and destinations as WMS's events."""

import json
import random
import time

import pytest

from relay.domain import session as session_store
from relay.domain.event import parse_event
from relay.domain.samples import to_body
from relay.domain.scenarios import SCENARIOS, play, shuffled
from relay.domain.session import derived_body
from relay.store import due, keys, sessions
from relay.store.inbox import envelope_of
from tests.conftest import signed_post
from tests.workers.test_end_to_end import CRM_PATH, SLACK_PATH
from workers import sessions as session_timers
from workers.drain import Drain
from workers.fanout import fan_out_batch

# Failed sessions to Slack, one message each; every WMS event to the CRM; derived events to the
# CRM only where a rule names them.
SESSIONS_YAML = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  ops-slack: {type: slack, webhook_url: "%(http)s/slack/T000/B000/XXXX"}
  crm: {type: http, url: "%(http)s/crm?token=crm-token", signing_secret: "%(crm_secret)s", timeout: 2s}
rules:
  - name: failed-sessions
    match: {event: [SESSION_FAILED]}
    to: [ops-slack]
  - name: everything-downstream
    match: {}
    to: [crm]
"""


@pytest.fixture
def relay(relay_factory):
    return relay_factory(SESSIONS_YAML)


def _play(relay, name: str, session_id: str, rng: random.Random | None = None) -> list[dict]:
    events = play(name, session_id, int(time.time()) - 60)
    for event in shuffled(events, rng) if rng else events:
        assert signed_post(relay.client, to_body(event)).status_code in (200, 202)
    return events


def _slack_bodies(relay) -> list[dict]:
    return [json.loads(r.body) for r in relay.http.to(SLACK_PATH)]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled-and-repeated"])
def test_every_scenario_comes_to_its_outcome_once(relay, name, shuffle):
    scenario = SCENARIOS[name]
    events = _play(relay, name, "s-1", random.Random(hash(name) & 0xFFFF) if shuffle else None)
    relay.drain()
    assert sessions.read(relay.redis, "wms", "s-1").verdict.outcome == (
        "in_progress" if scenario.reason == "idle" else scenario.outcome
    )
    assert relay.settle_sessions() == 1
    relay.drain()
    session = sessions.read(relay.redis, "wms", "s-1")
    assert (session.final["outcome"], session.final["reason"]) == (scenario.outcome, scenario.reason)
    assert session.final["event"] == "wms:s-1:session"
    assert len(session.events) == len(events)
    # Only a failed session reaches Slack, once; the CRM has every WMS event and no derived one.
    assert len(_slack_bodies(relay)) == (scenario.outcome == "failed")
    assert sorted(json.loads(r.body)["sequence"] for r in relay.http.to(CRM_PATH)) == list(range(len(events)))
    # The timer is gone, and running the timers again emits nothing more.
    assert due.timer(due.SESSION, "wms", "s-1") not in relay.timers()
    assert relay.settle_sessions() == 0
    assert session_timers.run_timer(relay.rt, "wms", "s-1", now=time.time() + 86400) is None
    relay.drain()
    assert len(_slack_bodies(relay)) == (scenario.outcome == "failed")


def test_the_outcome_waits_for_the_settle_time(relay):
    _play(relay, "constraint-violation", "s-1")
    relay.drain()
    member = due.timer(due.SESSION, "wms", "s-1")
    last = sessions.read(relay.redis, "wms", "s-1").last_received
    assert relay.timers()[member] == pytest.approx(last + 30, abs=0.01)
    assert session_timers.run_timer(relay.rt, "wms", "s-1", now=last + 29) == pytest.approx(last + 30)
    assert session_timers.run_timer(relay.rt, "wms", "s-1", now=last + 30) is None
    relay.drain()
    (message,) = _slack_bodies(relay)
    assert "CONSTRAINT_VIOLATION" in json.dumps(message)


def test_an_idle_session_is_abandoned_after_the_idle_timeout(relay):
    _play(relay, "idle", "s-1")
    relay.drain()
    assert relay.settle_sessions(after=60) == 1  # settled, but in progress: looked at again later
    last = sessions.read(relay.redis, "wms", "s-1").last_received
    assert relay.timers()[due.timer(due.SESSION, "wms", "s-1")] == pytest.approx(last + 600, abs=0.01)
    assert sessions.read(relay.redis, "wms", "s-1").final is None
    assert relay.settle_sessions(after=601) == 1
    assert sessions.read(relay.redis, "wms", "s-1").final["reason"] == "idle"


def test_a_late_event_is_recorded_but_emits_nothing(relay):
    events = _play(relay, "api-error", "s-1")
    relay.drain()
    relay.settle_sessions()
    late = dict(events[-1], sequence=len(events), event="RESULTS_RECEIVED", severity="INFO")
    signed_post(relay.client, to_body(late))
    relay.drain()
    assert relay.settle_sessions() == 1
    relay.drain()
    session = sessions.read(relay.redis, "wms", "s-1")
    assert (session.final["outcome"], session.late) == ("failed", 1)
    assert session.verdict.outcome == "completed"  # what the events say now; what was emitted stays
    assert len(_slack_bodies(relay)) == 1


def test_an_outcome_emitted_but_not_marked_is_not_sent_twice(relay):
    _play(relay, "camera-denied", "s-1")
    relay.drain()
    session = sessions.read(relay.redis, "wms", "s-1")
    verdict = session.verdict
    # As if a worker died after fanning the derived event out and before marking it emitted.
    body = json.dumps(derived_body(session, verdict)).encode()
    fan_out_batch(relay.rt, [(None, envelope_of(parse_event("wms", body, derived=True), body))])
    # Before its deliveries are done, an event arrives that would decide another outcome.
    late = {"timestamp": int(time.time()), "sessionId": "s-1", "sequence": 9, "severity": "INFO"}
    signed_post(relay.client, to_body(late | {"event": "RESULTS_RECEIVED"}))
    relay.rt.wake(["ops-slack"])
    Drain(relay.rt, name="tests").drain_all()  # fanned out (and tracked), nothing sent yet
    relay.settle_sessions()
    relay.drain()
    assert len(_slack_bodies(relay)) == 1
    assert sessions.read(relay.redis, "wms", "s-1").final["outcome"] == "failed"  # the outcome already sent


def test_two_sources_with_the_same_session_id_are_two_sessions(relay_factory):
    second = '  wms: {mac_secrets: ["%(secret)s"]}\n  wms-eu: {mac_secrets: ["%(secret)s"]}'
    relay = relay_factory(SESSIONS_YAML.replace('  wms: {mac_secrets: ["%(secret)s"]}', second))
    for source in ("wms", "wms-eu"):
        for event in play("camera-denied", "s-1", int(time.time())):
            signed_post(relay.client, to_body(event), source=source)
    relay.drain()
    assert relay.settle_sessions() == 2
    relay.drain()
    assert sorted(m.decode() for m in relay.redis.zrange(keys.SESSIONS, 0, -1)) == ["wms-eu:s-1", "wms:s-1"]
    assert len(_slack_bodies(relay)) == 2


def test_a_typical_15_event_session_takes_at_most_2_kib_of_redis(relay, capsys):
    events = play("success", "s-1", int(time.time()) - 60)
    extra = [dict(events[6], sequence=len(events) + i) for i in range(15 - len(events))]
    for event in events + extra:
        signed_post(relay.client, to_body(event))
    relay.drain()
    assert len(sessions.read(relay.redis, "wms", "s-1").events) == 15
    record = keys.session_key("wms", "s-1")
    growing = relay.redis.memory_usage(record)  # APPEND keeps room for more lines meanwhile
    relay.settle_sessions()
    # Once final: the record (rewritten at its size) and its index entry (a zset member; the
    # index's own overhead is shared by all sessions).
    final = relay.redis.memory_usage(record)
    member = len("wms:s-1") + 16
    with capsys.disabled():
        print(f"\n15-event session: record {growing} B while tracked, {final} B final, + index ~{member} B")
    assert final + member <= 2048
    assert final < growing


def _track(relay, *events: dict, received_at: float | None = None) -> None:
    pipe = relay.redis.pipeline(transaction=False)
    for event in events:
        sessions.track(pipe, parse_event("wms", to_body(event)), received_at or time.time(), 30, 86400)
    pipe.execute()


def test_a_session_sent_any_number_of_events_keeps_a_bounded_record_and_its_outcome(relay, monkeypatch):
    monkeypatch.setattr(session_store, "MAX_RECORD_BYTES", 4096)  # what parse_record says
    monkeypatch.setattr(sessions, "MAX_RECORD_BYTES", 4096)  # what tracking is capped at
    start = int(time.time())
    many = [dict(play("success", "s-1", start)[6], sequence=n) for n in range(200)]
    _track(relay, *many)
    _track(relay, *(dict(many[0], sequence=200 + n, event="RESULTS_RECEIVED") for n in range(100)))
    size = relay.redis.strlen(keys.session_key("wms", "s-1"))
    assert 4096 <= size < 2 * 4096 + 200
    session = sessions.read(relay.redis, "wms", "s-1")
    assert session.truncated and session.verdict.outcome == "completed"
    assert len(session.events) < 300


def test_a_measurement_id_is_written_once_per_record(relay):
    events = play("success", "s-1", int(time.time()))
    _track(relay, *reversed(events))  # the last event first: its line names the measurement
    text = relay.redis.get(keys.session_key("wms", "s-1")).decode()
    mid = events[-1]["payload"]["measurementId"]
    assert text.count(mid) == 1
    session = sessions.read(relay.redis, "wms", "s-1")
    created = next(i for i, e in enumerate(events) if e["event"] == "MEASUREMENT_CREATED")
    assert [e.measurement_id for e in session.events] == [None] * created + [mid] * (len(events) - created)


def test_an_outcome_waits_while_the_inbox_holds_older_events(relay):
    events = play("constraint-violation", "s-1", int(time.time()) - 60)
    for event in events[:-3]:
        signed_post(relay.client, to_body(event))
    relay.drain()
    signed_post(relay.client, to_body(events[-3]))  # accepted, not yet read: a backlog
    last = sessions.read(relay.redis, "wms", "s-1").last_received
    assert session_timers.run_timer(relay.rt, "wms", "s-1", now=last + 31) == pytest.approx(
        last + 31 + session_timers.BACKLOG_RECHECK
    )
    assert sessions.read(relay.redis, "wms", "s-1").final is None
    relay.drain()
    assert relay.settle_sessions() == 1
    assert sessions.read(relay.redis, "wms", "s-1").final["reason"] == "CONSTRAINT_VIOLATION"


def test_events_tracked_after_the_outcome_was_decided_count_as_late(relay):
    events = play("camera-denied", "s-1", int(time.time()) - 60)
    _track(relay, *events[:-1])
    decided = sessions.read(relay.redis, "wms", "s-1")
    _track(relay, events[-1])  # while the outcome was being emitted
    record = {"outcome": "failed", "reason": "CAMERA_PERMISSION_DENIED", "sequence": 2, "event": "x", "at": 1.0}
    assert sessions.mark_final(relay.redis, decided, record, 86400)
    assert not sessions.mark_final(relay.redis, decided, record, 86400)  # once
    session = sessions.read(relay.redis, "wms", "s-1")
    assert (session.final, session.late, len(session.events)) == (record, 1, len(events))
