"""Reading the inbox: batches through the consumer group, taken over when a reader dies, the
envelope kept exactly as long as a retry may need it."""

import logging
import re
import time

import pytest
from rq.suspension import resume, suspend

from config.secret import Secret
from devtools.local_redis import LocalRedis
from relay.domain import routing
from relay.domain.samples import sample_session, to_body
from relay.store import dead_letters, keys, queues
from relay.store.connection import connect
from relay.store.inbox import waiting
from relay.web.app import create_app
from tests.conftest import FANOUT_YAML, signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import CRM_PATH, SLACK_PATH
from workers import drain, fanout
from workers.drain import BATCH, Drain
from workers.runtime import Runtime

SHORT_GRACE = FANOUT_YAML + "operations: {lease_grace: 1s}\n"


def post(relay, events):
    for event in events:
        assert signed_post(relay.client, to_body(event)).status_code == 202


def until(check, what: str, timeout: float = 10) -> None:
    """Wait for `check()` to hold: the positive signal a test looks for before it asserts."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.005)


def test_a_batch_is_read_claimed_and_acknowledged_together(relay):
    events = sample_session(("WMS_LOADED",) * (BATCH + 3))
    post(relay, events)
    reader = Drain(relay.rt, name="one")
    reader.ensure_group()
    assert reader.step(block_ms=None) == BATCH
    assert reader.step(block_ms=None) == 3
    assert reader.step(block_ms=None) == 0
    relay.drain()
    assert len(relay.http.to(CRM_PATH)) == BATCH + 3
    # Acknowledged and deleted: nothing pending, nothing left in the stream.
    assert relay.redis.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 0
    assert waiting(relay.redis) == [] and relay.redis.xlen(keys.INBOX) == 0


def test_entries_of_a_reader_that_died_are_taken_over_after_the_lease_grace(relay_factory, caplog):
    relay = relay_factory(SHORT_GRACE)
    events = sample_session(("WMS_LOADED",) * 2)
    post(relay, events)
    dead = Drain(relay.rt, name="dead")
    dead.ensure_group()
    # It read both entries and died before fanning them out.
    relay.redis.xreadgroup(keys.INBOX_GROUP, "dead", {keys.INBOX: ">"}, count=10)
    survivor = Drain(relay.rt, name="survivor")
    survivor._next_maintenance = 0
    assert survivor.step(block_ms=None) == 0  # pending for less than the grace: still the dead reader's
    assert relay.http.requests == []
    # Only time passing makes entries idle: wait until Redis reports both idle for the grace (what
    # XAUTOCLAIM compares), and no longer.
    grace_ms = relay.rt.config.operations.lease_grace * 1000
    until(
        lambda: all(
            p["time_since_delivered"] >= grace_ms
            for p in relay.redis.xpending_range(keys.INBOX, keys.INBOX_GROUP, "-", "+", 10)
        ),
        "the entries to be pending for the lease grace",
    )
    survivor._next_maintenance = 0
    assert survivor.step(block_ms=None) == 2
    relay.drain()
    assert sorted(r.body for r in relay.http.to(CRM_PATH)) == sorted(to_body(e) for e in events)
    assert "taking over 2 inbox entries left pending by a stopped worker" in caplog.text
    assert relay.redis.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 0


def test_readers_idle_for_long_with_nothing_pending_are_forgotten(relay, monkeypatch):
    first, second = sample_session(("WMS_LOADED",) * 2)
    post(relay, [first])
    Drain(relay.rt, name="gone").drain_all()
    monkeypatch.setattr(drain, "IDLE_READER_TTL_MS", 0)

    def idle_ms(name: bytes) -> int:
        return next(c["idle"] for c in relay.redis.xinfo_consumers(keys.INBOX, keys.INBOX_GROUP) if c["name"] == name)

    # Only time passing makes a reader idle: wait until Redis reports "gone" idle beyond the TTL.
    until(lambda: idle_ms(b"gone") > drain.IDLE_READER_TTL_MS, "the reader 'gone' to be idle")
    post(relay, [second])
    Drain(relay.rt, name="current").drain_all()
    names = [c["name"] for c in relay.redis.xinfo_consumers(keys.INBOX, keys.INBOX_GROUP)]
    assert names == [b"current"]


def test_the_group_is_made_again_when_redis_was_emptied(relay):
    reader = Drain(relay.rt, name="one")
    reader.ensure_group()
    relay.redis.flushall()
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])  # the stream is made again, without the group
    assert reader.step(block_ms=None) == 0  # NOGROUP: the group is made, from the first entry
    assert reader.step(block_ms=None) == 1
    relay.drain()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(event)]


def test_the_envelope_is_kept_while_a_retry_may_need_it_and_no_longer(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    event_id = f"wms:{event['sessionId']}:0"
    relay.http.script(SLACK_PATH, Reply(500, b"down"))
    post(relay, [event])
    relay.drain()
    assert relay.redis.exists(keys.event_key(event_id))  # Slack's retry is scheduled
    relay.run_due_retries()
    relay.drain()
    assert len(relay.http.to(SLACK_PATH)) == 2
    assert not relay.redis.exists(keys.event_key(event_id))  # every destination has it


def test_the_envelope_goes_once_the_last_destination_is_dead_lettered(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    relay.http.script(SLACK_PATH, Reply(400, b"invalid_payload"))
    post(relay, [event])
    relay.drain()
    event_id = f"wms:{event['sessionId']}:0"
    assert relay.redis.hgetall(keys.delivery_key(event_id)) == {
        b"ops-slack": b"dead",
        b"ops-email": b"ok",
        b"crm": b"ok",
    }
    assert not relay.redis.exists(keys.event_key(event_id))  # the dead letter keeps its own copy


@pytest.mark.slow  # a redis-server of its own, stopped and started again
def test_the_worker_logs_and_keeps_reading_when_redis_fails(relay, caplog):
    caplog.set_level(logging.WARNING, logger="workers")
    server = LocalRedis().start()  # a Redis of its own, stopped under the reader and started again
    try:
        rt = Runtime.build(relay.rt.settings, relay.rt.config, connect(Secret(server.url)))
        reader = Drain(rt, name="one")
        reader.start()
        rt.lane("crm").start()  # the lane that sends what the reader queues
        try:
            server.stop()
            until(lambda: "redis unreachable: " in caplog.text, "the outage logged")
            # After an error it reads once more what it may still hold (set just after the log line).
            until(lambda: reader._retry_own, "the reader to read what it holds once more")
            server = LocalRedis(port=server.port).start()
            # It keeps reading: an event accepted once Redis is back goes out.
            (event,) = sample_session(("WMS_LOADED",))
            client = create_app(rt.settings, rt.config, rt.redis).test_client()
            assert signed_post(client, to_body(event)).status_code == 202
            until(lambda: relay.http.to(CRM_PATH), "the event at the callback", timeout=15)
        finally:
            reader.stop()
            rt.lane("crm").stop()
            assert rt.wait_idle(10)
    finally:
        server.stop()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(event)]
    # The reader and the lane both failed, every second: one line when it began, one when it ended.
    assert_one_outage(caplog, server.port)


def assert_one_outage(caplog, port: int) -> None:
    """The log says the outage began and ended, once each, and shows no traceback."""
    lines = [r.getMessage() for r in caplog.records if r.name == "workers.outage" and r.levelno >= logging.INFO]
    assert len(lines) == 2, lines
    assert lines[0] == f"redis unreachable: redis at 127.0.0.1:{port} is unreachable (connection refused); retrying"
    assert re.fullmatch(r"redis reachable again after \d+\.\d s \(\d+ failed tr(y|ies)\)", lines[1]), lines[1]
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


@pytest.mark.slow  # a redis-server of its own, stopped and started again
def test_a_lane_outlives_redis_failing_under_it_and_sends_again_when_it_is_back(relay, caplog):
    # Found by bench/chaos.py: the lane asked about `rq suspend` outside its error handling, so a
    # Redis stop of over a second ended every lane's thread while the worker lived on.
    caplog.set_level(logging.WARNING, logger="workers")
    server = LocalRedis().start()
    try:
        rt = Runtime.build(relay.rt.settings, relay.rt.config, connect(Secret(server.url)))
        lane = rt.lane("crm")
        lane.start()
        try:
            server.stop()
            rt._suspended = (0.0, False)  # the once-a-second `rq suspend` answer is due to be asked again
            until(lambda: "redis unreachable: " in caplog.text, "the lane's failure logged")
            assert lane._thread is not None and lane._thread.is_alive()
            server = LocalRedis(port=server.port).start()
            (event,) = sample_session(("WMS_LOADED",))
            client = create_app(rt.settings, rt.config, rt.redis).test_client()
            assert signed_post(client, to_body(event)).status_code == 202
            Drain(rt, name="one").drain_all()
            until(lambda: relay.http.to(CRM_PATH), "the event at the callback", timeout=15)
        finally:
            lane.stop()
            assert rt.wait_idle(10)
    finally:
        server.stop()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(event)]
    assert_one_outage(caplog, server.port)


def test_rq_suspend_pauses_the_fan_out_and_the_sending_too(relay):
    (first,) = sample_session(("WMS_LOADED",))
    post(relay, [first])
    suspend(relay.redis)
    reader = Drain(relay.rt, name="one")
    reader.ensure_group()
    assert reader.step(block_ms=None) == 0 and len(waiting(relay.redis)) == 1
    resume(relay.redis)
    until(lambda: reader.step(block_ms=None) == 1, "the reader to notice `rq resume`")  # within a second
    suspend(relay.redis)
    until(relay.rt.suspended, "`rq suspend` noticed")  # within a second
    relay.rt.lane("crm").step()
    assert relay.http.requests == [] and queues.backlog(relay.redis, "crm").waiting == 1
    resume(relay.redis)
    until(lambda: not relay.rt.suspended(), "`rq resume` noticed")
    relay.drain()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(first)]


# A rule with a numeric bound on a payload field, before the match-everything rule to the callback.
BOUNDED = FANOUT_YAML.replace(
    "rules:\n", "rules:\n  - {name: low-snr, match: {payload: {snr: {lt: 3}}}, to: [ops-slack]}\n"
)


def test_a_number_beyond_a_float_is_routed_by_every_rule_like_any_other(relay_factory, caplog):
    # Issue 11: a 401-digit snr was accepted (202), raised OverflowError in routing and reached
    # no destination at all, not even the rule that matches everything.
    relay = relay_factory(BOUNDED)
    huge, low = sample_session(("WMS_LOADED",) * 2)
    huge["payload"] = {"snr": 10**400}  # valid JSON, accepted
    low["payload"] = {"snr": 2}
    post(relay, [huge, low])
    relay.drain()
    assert sorted(r.body for r in relay.http.to(CRM_PATH)) == sorted([to_body(huge), to_body(low)])
    assert len(relay.http.to(SLACK_PATH)) == 1  # the low one only: 10**400 is not below 3
    assert "could not be routed" not in caplog.text and "taken as not matching" not in caplog.text
    assert dead_letters.find(relay.redis, dead_letters.Filter()) == []


def test_a_condition_that_raises_does_not_match_and_the_other_rules_still_fire(relay_factory, caplog, monkeypatch):
    relay = relay_factory(BOUNDED)
    (event,) = sample_session(("WMS_LOADED",))
    event["payload"] = {"snr": 1}

    def broken(predicate, value):
        raise ArithmeticError("cannot compare")

    monkeypatch.setattr(routing, "_holds", broken)  # stands in for any bug a payload value could trip
    post(relay, [event])
    relay.drain()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(event)]
    assert relay.http.to(SLACK_PATH) == []
    event_id = f"wms:{event['sessionId']}:0"
    assert caplog.text.count("taken as not matching") == 1  # once for the event, not per destination
    assert (
        f"({event_id}): rule 'low-snr': payload.snr: ArithmeticError: cannot compare; taken as not matching"
        in caplog.text
    )


def test_an_event_that_cannot_be_routed_is_a_dead_letter_and_a_replay_routes_it_again(relay, caplog, monkeypatch):
    bad, good = sample_session(("WMS_LOADED",) * 2)
    post(relay, [bad, good])
    bad_id = f"wms:{bad['sessionId']}:0"
    real_route = fanout.route

    def route_failing_for_bad(rules, event):
        if event.id == bad_id:
            raise RuntimeError("a bug in routing")
        return real_route(rules, event)

    monkeypatch.setattr(fanout, "route", route_failing_for_bad)
    relay.drain()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(good)]
    assert f"({bad_id}) could not be routed (RuntimeError: a bug in routing); kept as a dead letter" in caplog.text
    (letter,) = dead_letters.find(relay.redis, dead_letters.Filter())
    assert (letter.destination, letter.event_id, letter.outcome, letter.status, letter.detail) == (
        "_routing",
        bad_id,
        "permanent",
        "unroutable",
        "RuntimeError: a bug in routing",
    )
    assert relay.redis.xlen(keys.INBOX) == 0  # acknowledged only once kept

    monkeypatch.setattr(fanout, "route", real_route)  # the bug fixed, the operator replays it
    result = dead_letters.replay(relay.redis, [letter], relay.rt.config.state_ttl)
    assert result.replayed == [letter]
    relay.drain()
    assert sorted(r.body for r in relay.http.to(CRM_PATH)) == sorted([to_body(good), to_body(bad)])
    assert dead_letters.find(relay.redis, dead_letters.Filter()) == []


def test_an_entry_that_is_not_an_event_is_logged_and_the_rest_of_its_batch_goes_out(relay, caplog):
    (good,) = sample_session(("WMS_LOADED",))
    relay.redis.xadd(keys.INBOX, {"v": "1", "what": "not an envelope"})
    post(relay, [good])
    relay.drain()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(good)]
    assert "is not an event envelope" in caplog.text
    assert relay.redis.xlen(keys.INBOX) == 0


def test_entries_that_keep_failing_do_not_hold_up_new_ones(relay, monkeypatch, caplog):
    monkeypatch.setattr(drain, "ERROR_PAUSE", 0)
    stuck, later = sample_session(("WMS_LOADED",) * 2)
    stuck_id = f"wms:{stuck['sessionId']}:0"
    post(relay, [stuck])
    relay.redis.set(keys.delivery_key(stuck_id), "not a hash")  # its claim fails every time
    reader = Drain(relay.rt, name="one")
    reader.ensure_group()
    reader.guarded_step()  # fails
    reader.guarded_step()  # reads what it holds once more: fails again, left for a take-over
    assert caplog.text.count("reading the inbox failed; trying again in 0 s") == 2
    post(relay, [later])
    reader.guarded_step()
    relay.drain()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(later)]
    assert relay.redis.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 1  # the stuck one, still kept


SLOW_CRM = FANOUT_YAML.replace("    timeout: 2s\n", "    timeout: 2s\n    concurrency: 2\n")


def test_a_destination_sends_at_most_its_concurrency_and_the_inbox_keeps_being_read(relay_factory):
    relay = relay_factory(SLOW_CRM)
    events = sample_session(("WMS_LOADED",) * 5)  # only the callback matches
    relay.http.script(CRM_PATH, *[Reply(delay=0.5)] * 5)
    post(relay, events)
    # The whole batch is fanned out at once: the reader never waits for a send.
    assert Drain(relay.rt, name="one").drain_all() == 5
    lane = relay.rt.lane("crm")
    assert lane.start_due() == 2
    backlog = queues.backlog(relay.redis, "crm")
    assert (backlog.waiting, backlog.in_flight, lane.in_flight) == (3, 2, 2)
    relay.drain()
    assert sorted(r.body for r in relay.http.to(CRM_PATH)) == sorted(to_body(e) for e in events)


def test_an_envelope_stored_again_for_an_event_already_delivered_is_forgotten(relay):
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    (envelope,) = waiting(relay.redis)
    relay.drain()
    # Read again (taken over from a reader that was only slow): nothing is sent, nothing stays.
    fanout.fan_out_batch(relay.rt, [(None, envelope)])
    assert not relay.redis.exists(keys.event_key(envelope["id"]))
    assert len(relay.http.to(CRM_PATH)) == 1
