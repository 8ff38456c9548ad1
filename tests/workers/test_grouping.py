"""Grouped messages (workers/grouping.py): under a rule with `group_by: session`, one Slack message
per session listing its matched events, one follow-up per `group_interval` for later ones, and
the message delivered like any event: retried, dead-lettered, replayed."""

import json
import random
import time

import pytest

from config.wms_events import CATALOGUE
from relay.domain.samples import sample_session, to_body
from relay.store import dead_letters, due, groups, keys
from relay.store.event_log import every_attempt
from relay.store.inbox import waiting
from tests.conftest import signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import SLACK_PATH
from workers import grouping
from workers.fanout import fan_out_batch

GROUPED_YAML = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  ops-slack:
    type: slack
    webhook_url: "%(http)s/slack/T000/B000/XXXX"
    retry: {delays: [5s], jitter: 0}
    pause: {after_failures: 0}
rules:
  - name: failures
    match: {severity: [WARN, ERROR]}
    to: [ops-slack]
    group_by: session
    group_wait: 30s
    group_interval: 5m
"""
# A scan that fails: the websocket drops, the face leaves the centre, the measurement is canceled,
# the tab is closed (INFO: not matched).
FAILING = (
    "WMS_LOADED",
    "CAMERA_STARTED",
    "MEASUREMENT_STARTED",
    "WEBSOCKET_DISCONNECTED",
    "WEBSOCKET_RECONNECTED",
    "CONSTRAINT_VIOLATION",
    "MEASUREMENT_CANCELED",
    "PAGE_UNLOADED",
)
MATCHED = ["WEBSOCKET_DISCONNECTED", "CONSTRAINT_VIOLATION", "MEASUREMENT_CANCELED"]


@pytest.fixture
def relay(relay_factory):
    return relay_factory(GROUPED_YAML)


def post(relay, events) -> None:
    for event in events:
        assert signed_post(relay.client, to_body(event)).status_code in (200, 202)


def messages(relay) -> list[dict]:
    return [json.loads(r.body) for r in relay.http.to(SLACK_PATH)]


def listed(message: dict) -> list[str]:
    """The event codes a grouped Slack message lists, in its order."""
    text = json.dumps(message)
    return sorted((code for code in CATALOGUE if f"*{code}*" in text), key=lambda code: text.index(f"*{code}*"))


def group_timer(session_id: str) -> str:
    return groups.timer("ops-slack", "wms", session_id)


def test_a_failed_sessions_events_become_one_message(relay):
    events = sample_session(FAILING, "s-1")
    post(relay, events)
    relay.drain()
    assert messages(relay) == []  # collected, not sent one by one
    assert relay.timers()[group_timer("s-1")] == pytest.approx(time.time() + 30, abs=5)
    assert not relay.redis.keys(keys.event_key("*"))  # the group keeps what it needs; no envelope stored

    assert relay.run_due_timers((due.GROUP,)) == 1
    relay.drain()
    (message,) = messages(relay)
    assert listed(message) == MATCHED
    assert "3 events in session s-1" in message["text"] and "[ERROR]" in message["text"]
    ((event_id, outcome),) = [(a["event"], a["outcome"]) for a in every_attempt(relay.redis)]
    assert (event_id, outcome) == ("wms:s-1:group:ops-slack:part-1", "ok")
    assert relay.redis.hget(keys.delivery_key(event_id), "ops-slack") == b"ok"
    assert group_timer("s-1") not in relay.timers()
    assert relay.run_due_timers((due.GROUP,)) == 0
    relay.drain()
    assert len(messages(relay)) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_and_repeated_events_make_one_message_listing_each_once(relay, seed):
    events = sample_session(FAILING, "s-1")
    rng = random.Random(seed)
    post(relay, rng.sample(events, len(events)) + rng.sample(events, 3))
    envelopes = waiting(relay.redis)
    relay.drain()
    # Inbox entries read again (their reader presumed dead) add nothing twice either.
    assert fan_out_batch(relay.rt, [(None, envelope) for envelope in envelopes]) == 0
    relay.run_due_timers((due.GROUP,))
    relay.drain()
    (message,) = messages(relay)
    assert listed(message) == MATCHED  # by sequence, whatever the arrival order
    assert "3 events in session s-1" in message["text"]


def test_an_event_fanned_out_twice_is_listed_once(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",), "s-1")
    post(relay, [event])
    (envelope,) = waiting(relay.redis)
    relay.drain()
    fan_out_batch(relay.rt, [(None, envelope)])  # as if its reader had died before acknowledging it
    relay.run_due_timers((due.GROUP,))
    relay.drain()
    fan_out_batch(relay.rt, [(None, envelope)])  # and once more after its message went out
    assert relay.run_due_timers((due.GROUP,)) == 0
    relay.drain()
    (message,) = messages(relay)
    assert "1 event in session s-1" in message["text"]


def test_a_later_match_becomes_one_follow_up_at_the_group_interval(relay):
    events = sample_session((*FAILING, "WEBSOCKET_DISCONNECTED", "API_ERROR", "WEBSOCKET_DISCONNECTED"), "s-1")
    post(relay, events[: len(FAILING)])
    relay.drain()
    relay.run_due_timers((due.GROUP,))
    relay.drain()
    sent_at = time.time()
    post(relay, events[len(FAILING) :])
    relay.drain()
    assert len(messages(relay)) == 1  # not one message each
    assert relay.timers()[group_timer("s-1")] == pytest.approx(sent_at + 300, abs=5)
    assert relay.run_due_timers((due.GROUP,)) == 1
    relay.drain()
    first, follow_up = messages(relay)
    assert listed(first) == MATCHED
    assert listed(follow_up) == ["WEBSOCKET_DISCONNECTED", "API_ERROR"]
    assert "follow-up: 3 more events for session s-1" in follow_up["text"]
    assert sorted(a["event"] for a in every_attempt(relay.redis)) == [
        "wms:s-1:group:ops-slack:part-1",
        "wms:s-1:group:ops-slack:part-2",
    ]


def test_two_sessions_give_two_messages(relay):
    post(relay, sample_session(FAILING, "s-1") + sample_session(FAILING, "s-2"))
    relay.drain()
    assert {group_timer("s-1"), group_timer("s-2")} <= set(relay.timers())
    assert relay.run_due_timers((due.GROUP,)) == 2
    relay.drain()
    texts = sorted(m["text"] for m in messages(relay))
    assert len(texts) == 2
    assert "3 events in session s-1" in texts[0] and "3 events in session s-2" in texts[1]


def test_a_timer_run_twice_sends_once(relay):
    post(relay, sample_session(FAILING, "s-1"))
    relay.drain()
    assert grouping.run_timer(relay.rt, "ops-slack", "wms", "s-1") is None
    assert grouping.run_timer(relay.rt, "ops-slack", "wms", "s-1") is None  # its taker presumed dead
    relay.drain()
    assert len(messages(relay)) == 1


def test_a_stale_run_that_built_the_same_part_sends_nothing_more(relay, monkeypatch):
    events = sample_session((*FAILING, "API_ERROR"), "s-1")
    post(relay, events[:-1])
    relay.drain()
    stale = groups.read(relay.redis, "ops-slack", "wms", "s-1")  # a first run read it, then stalled
    post(relay, events[-1:])
    relay.drain()
    assert grouping.run_timer(relay.rt, "ops-slack", "wms", "s-1") is None  # a second run sent part 1
    relay.drain()
    monkeypatch.setattr(groups, "read", lambda *args: stale)
    assert grouping.run_timer(relay.rt, "ops-slack", "wms", "s-1") is None  # the first one wakes up
    relay.drain()
    (message,) = messages(relay)
    assert listed(message) == [*MATCHED, "API_ERROR"]  # what was marked sent is what was delivered


def test_an_event_that_arrives_while_the_message_is_built_goes_in_the_follow_up(relay, monkeypatch):
    events = sample_session((*FAILING, "API_ERROR"), "s-1")
    post(relay, events[:-1])
    relay.drain()
    read = groups.read

    def read_then_another_arrives(*args):
        group = read(*args)
        post(relay, events[-1:])
        relay.drain()
        return group

    monkeypatch.setattr(groups, "read", read_then_another_arrives)
    following = grouping.run_timer(relay.rt, "ops-slack", "wms", "s-1")
    assert following == pytest.approx(time.time() + 300, abs=5)
    monkeypatch.setattr(groups, "read", read)
    relay.drain()
    assert grouping.run_timer(relay.rt, "ops-slack", "wms", "s-1") is None
    relay.drain()
    first, follow_up = messages(relay)
    assert (listed(first), listed(follow_up)) == (MATCHED, ["API_ERROR"])


def test_a_failing_group_message_is_retried_then_dead_lettered_and_can_be_replayed(relay):
    relay.http.script(SLACK_PATH, Reply(500, b"down"), Reply(500, b"down"))
    post(relay, sample_session(FAILING, "s-1"))
    relay.drain()
    relay.run_due_timers((due.GROUP,))
    relay.drain()
    event_id = "wms:s-1:group:ops-slack:part-1"
    assert [s[:4] for s in relay.scheduled()] == [(event_id, "ops-slack", 2, 0)]
    assert relay.run_due_retries() == 1
    relay.drain()
    letter = dead_letters.get(relay.redis, "ops-slack", event_id)
    assert letter is not None and letter.envelope["derived"] == 1
    assert [(a["attempt"], a["outcome"]) for a in every_attempt(relay.redis)] == [(1, "transient"), (2, "transient")]

    dead_letters.replay(relay.redis, [letter], relay.rt.config.state_ttl)
    relay.drain()
    assert [listed(m) for m in messages(relay)] == [MATCHED] * 3  # the same message each time
    assert relay.redis.hget(keys.delivery_key(event_id), "ops-slack") == b"ok"
