"""Ordered delivery end to end (workers/ordering.py): real web app, real Redis, a real HTTP peer.
A callback with `ordered: true` gets each session's events in sequence order, whatever order
they arrive in and however long a predecessor's retries take; other sessions and unordered
destinations never wait for it."""

import json
import logging
import random
import time

import pytest

from relay.domain.samples import COMPLETED_SESSION, sample_session, to_body
from relay.store import dead_letters, due, ordering
from relay.store.inbox import waiting
from tests.conftest import signed_post
from tests.peers import Reply
from workers import ordering as worker_ordering
from workers.fanout import fan_out_batch

ORDERED = "/ordered"
PLAIN = "/plain"
GAP = 10.0
ORDERING_YAML = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  crm:
    type: http
    url: "%(http)s/ordered"
    signing_secret: "%(crm_secret)s"
    timeout: 2s
    ordered: true
    gap_timeout: 10s
  audit:
    type: http
    url: "%(http)s/plain"
    signing_secret: "%(crm_secret)s"
    timeout: 2s
rules:
  - name: everything
    match: {}
    to: [crm, audit]
"""
CODES = (*COMPLETED_SESSION[:7], "SCAN_COMPLETED")  # a session up to its scan


@pytest.fixture
def relay(relay_factory, caplog):
    caplog.set_level(logging.INFO, logger="workers")
    return relay_factory(ORDERING_YAML)


def post(relay, events) -> None:
    for event in events:
        assert signed_post(relay.client, to_body(event)).status_code == 202


def received(relay, path: str = ORDERED) -> list[tuple[str, int, int]]:
    """(sessionId, sequence, the status answered) of each request `path` received, in arrival order."""
    found = []
    for request in relay.http.to(path):
        body = json.loads(request.body)
        found.append((body["sessionId"], body["sequence"], request.status))
    return found


def run_order_timers(relay, now: float) -> int:
    """Run every ordering timer as its worker would at `now`; return how many ran."""
    return relay.run_timers_at(due.ORDER, now)


def order_timers(relay) -> dict[str, float]:
    return {m: at for m, at in relay.timers().items() if due.parse_timer(m)[0] == due.ORDER}


def test_a_shuffled_session_arrives_in_sequence_order_and_the_plain_callback_gets_it_as_it_came(relay):
    events = sample_session(CODES, "s1")
    shuffled = random.Random(7).sample(events, len(events))
    post(relay, shuffled)
    relay.drain()
    assert received(relay) == [("s1", s, 200) for s in range(len(CODES))]
    assert sorted(s for _, s, _ in received(relay, PLAIN)) == list(range(len(CODES)))
    assert order_timers(relay) == {}  # nothing waits: no timer left
    assert ordering.held(relay.redis, "crm", "wms", "s1") == []


def test_events_posted_one_by_one_out_of_order_are_held_until_their_turn(relay):
    events = sample_session(CODES[:4], "s1")
    for i in (2, 1, 3, 0):
        post(relay, [events[i]])
        relay.drain()
    assert received(relay) == [("s1", s, 200) for s in range(4)]
    assert [s for _, s, _ in received(relay, PLAIN)] == [2, 1, 3, 0]  # unordered: as they came


def test_a_failing_event_holds_its_session_back_until_its_retry_while_another_session_flows(relay, caplog):
    relay.http.script(ORDERED, Reply(503, b"busy"))
    first = sample_session(CODES[:3], "s1")
    post(relay, first)
    relay.drain()
    assert received(relay) == [("s1", 0, 503)]
    assert ordering.held(relay.redis, "crm", "wms", "s1") == [1, 2]
    assert len(received(relay, PLAIN)) == 3  # the unordered destination did not wait
    (timer_at,) = order_timers(relay).values()
    assert timer_at <= time.time() + ordering.RECHECK_MIN  # re-checked while it waits

    other = sample_session(CODES[:2], "s2")
    post(relay, other)
    relay.drain()
    assert received(relay)[1:] == [("s2", 0, 200), ("s2", 1, 200)]  # never waits for s1

    # The retry is due in about 5 s; a re-check meanwhile finds s1's first event still retrying.
    assert run_order_timers(relay, time.time() + ordering.RECHECK_MIN) == 1
    relay.drain()
    assert len(received(relay)) == 3

    assert relay.run_due_retries() == 1
    relay.drain()
    assert received(relay)[3:] == [("s1", 0, 200), ("s1", 1, 200), ("s1", 2, 200)]
    assert order_timers(relay) == {}
    assert "released by the session's timer" not in caplog.text  # each end released the next


def test_a_dead_lettered_event_lets_the_next_go(relay, caplog):
    relay.http.script(ORDERED, Reply(400, b"bad request"))
    events = sample_session(CODES[:2], "s1")
    post(relay, events)
    relay.drain()
    assert received(relay) == [("s1", 0, 400), ("s1", 1, 200)]
    assert dead_letters.get(relay.redis, "crm", "wms:s1:0") is not None
    assert "wms:s1:0 -> crm attempt 1: permanent (HTTP 400) in" in caplog.text


def test_a_gap_is_waited_for_then_skipped_recorded_and_the_late_event_is_delivered_at_once(relay, caplog):
    events = sample_session(CODES[:4], "s1")
    post(relay, [events[0], events[2], events[3]])
    started = time.time()
    relay.drain()
    assert received(relay) == [("s1", 0, 200)]
    (timer_at,) = order_timers(relay).values()
    assert started < timer_at - GAP < time.time()  # gap_timeout after the waiting events arrived

    assert run_order_timers(relay, timer_at - 0.5) == 1  # not yet
    relay.drain()
    assert len(received(relay)) == 1
    assert run_order_timers(relay, timer_at) == 1
    assert "crm: session wms:s1: sequence 1 not received within gap_timeout (10s); skipped, sending 2" in caplog.text
    relay.drain()
    assert received(relay) == [("s1", 0, 200), ("s1", 2, 200), ("s1", 3, 200)]
    assert ordering.skipped(relay.redis, "crm", "wms", "s1") == [1]

    post(relay, [events[1]])  # late: never dropped
    relay.drain()
    assert received(relay)[3:] == [("s1", 1, 200)]
    assert "wms:s1:1 -> crm: delivered out of order: it arrived after sequence 3 had been sent" in caplog.text
    assert ordering.skipped(relay.redis, "crm", "wms", "s1") == [1]  # still on record for operators


def test_an_event_fanned_out_twice_is_sent_once(relay):
    relay.http.script(ORDERED, Reply(503, b"busy"))
    events = sample_session(CODES[:2], "s1")
    post(relay, events)
    envelopes = waiting(relay.redis)
    relay.drain()
    assert fan_out_batch(relay.rt, [(None, envelope) for envelope in envelopes]) == 0  # held, or in its retries
    assert relay.run_due_retries() == 1
    relay.drain()
    assert fan_out_batch(relay.rt, [(None, envelope) for envelope in envelopes]) == 0  # delivered
    relay.drain()
    assert received(relay) == [("s1", 0, 503), ("s1", 0, 200), ("s1", 1, 200)]
    assert len(received(relay, PLAIN)) == 2


def test_a_release_lost_with_its_worker_is_made_by_the_session_timer(relay, caplog, monkeypatch):
    events = sample_session(CODES[:3], "s1")
    post(relay, events)
    with monkeypatch.context() as crash:
        # The worker dies after recording each delivery, before releasing the next event.
        crash.setattr(worker_ordering, "delivery_ended", lambda *args, **kwargs: None)
        relay.drain()
    assert received(relay) == [("s1", 0, 200)]
    assert ordering.held(relay.redis, "crm", "wms", "s1") == [1, 2]

    assert relay.run_due_timers(kinds=(due.ORDER,)) == 1  # its time comes: at most RECHECK_MIN later
    assert "crm: session wms:s1: sequence 1 released by the session's timer" in caplog.text
    relay.drain()
    assert received(relay) == [("s1", 0, 200), ("s1", 1, 200), ("s1", 2, 200)]
    assert order_timers(relay) == {}


def test_events_held_for_a_destination_no_longer_ordered_go_at_once(relay_factory, caplog):
    caplog.set_level(logging.INFO, logger="workers")
    relay = relay_factory(ORDERING_YAML)
    relay.http.script(ORDERED, Reply(503, b"busy"))
    post(relay, sample_session(CODES[:3], "s1"))
    relay.drain()
    assert received(relay) == [("s1", 0, 503)]

    relay = relay_factory(ORDERING_YAML.replace("    ordered: true\n", ""))  # the config changed; same Redis
    assert relay.run_due_timers(kinds=(due.ORDER,)) == 1
    assert "crm is no longer an ordered destination: 2 events of session wms:s1 that waited are queued" in caplog.text
    relay.drain()
    assert sorted(s for _, s, status in received(relay) if status == 200) == [1, 2]
