"""Sessions on the worker side: tracked as events are fanned out, one derived event per session,
through the same rules and destinations as WMS's events."""

import json
import random
import time

import pytest

from relay.domain.event import parse_event
from relay.domain.samples import to_body
from relay.domain.scenarios import SCENARIOS, play, shuffled
from relay.domain.session import derived_body
from relay.store import due, keys, sessions
from relay.store.inbox import envelope_of
from tests.conftest import signed_post
from tests.workers.test_end_to_end import CRM_PATH, SLACK_PATH
from workers import sessions as session_timers
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
    relay.drain()
    relay.settle_sessions()
    relay.drain()
    assert len(_slack_bodies(relay)) == 1


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
    # The record, its index entry (a zset member: the index's own overhead is shared) and its timer.
    record = relay.redis.memory_usage(keys.session_key("wms", "s-1"))
    member = len("wms:s-1") + 16
    with capsys.disabled():
        print(f"\n15-event session: record {record} B + index ~{member} B")
    assert record + member <= 2048
