"""Reading the inbox: batches through the consumer group, taken over when a reader dies, the
envelope kept exactly as long as a retry may need it."""

import logging
import threading
import time

from rq.suspension import resume, suspend

from relay.domain.samples import sample_session, to_body
from relay.store import keys
from relay.store.inbox import waiting
from tests.conftest import FANOUT_YAML, signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import CRM_PATH, SLACK_PATH
from workers import drain, fanout, runtime
from workers.drain import BATCH, Drain

SHORT_GRACE = FANOUT_YAML + "operations: {lease_grace: 1s}\n"


def post(relay, events):
    for event in events:
        assert signed_post(relay.client, to_body(event)).status_code == 202


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
    time.sleep(1.1)
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
    time.sleep(0.01)
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


def test_the_worker_logs_and_keeps_reading_when_redis_fails(relay, monkeypatch, caplog):
    reader = Drain(relay.rt, name="one")
    reader.ensure_group()
    calls = []

    def failing_step(block_ms=None):
        calls.append(block_ms)
        if len(calls) == 1:
            raise ConnectionError("redis went away")
        reader._stop.set()
        return 0

    monkeypatch.setattr(reader, "step", failing_step)
    caplog.set_level(logging.ERROR, logger="workers")
    reader._run()
    assert len(calls) == 2 and "reading the inbox failed; trying again in 1 s" in caplog.text
    assert reader._retry_own  # after an error it reads once more what it may still hold


def test_rq_suspend_pauses_the_fan_out_too(relay):
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    suspend(relay.redis)
    reader = Drain(relay.rt, name="one")
    reader.ensure_group()
    assert reader.step(block_ms=None) == 0 and len(waiting(relay.redis)) == 1
    resume(relay.redis)
    assert reader.step(block_ms=None) == 1


def test_an_entry_that_cannot_be_routed_is_logged_and_the_rest_of_its_batch_goes_out(relay, monkeypatch, caplog):
    bad, good = sample_session(("WMS_LOADED",) * 2)
    post(relay, [bad, good])
    real_route = fanout.route

    def route(rules, event):
        if event.sequence == 0:
            raise OverflowError("int too large to convert to float")
        return real_route(rules, event)

    monkeypatch.setattr(fanout, "route", route)
    relay.drain()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(good)]
    bad_id = f"wms:{bad['sessionId']}:0"
    assert (
        f"({bad_id}) could not be routed (OverflowError: int too large to convert to float); skipped: " in caplog.text
    )
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


def test_deliveries_are_claimed_only_once_threads_are_free_to_send_them(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))  # three destinations
    post(relay, [event])
    (envelope,) = waiting(relay.redis)
    rt = relay.rt
    rt.reserve(runtime.MAX_IN_FLIGHT - 2)  # only two threads free
    fanning = threading.Thread(target=fanout.fan_out_batch, args=(relay.rt, [(None, envelope)]))
    fanning.start()
    time.sleep(0.3)
    # A claim starts a lease: none is taken while a send would still have to wait for a thread.
    assert relay.redis.zcard(keys.LEASES) == 0 and not relay.redis.exists(keys.delivery_key(envelope["id"]))
    rt.unreserve(runtime.MAX_IN_FLIGHT - 2)
    fanning.join(5)
    assert rt.wait_idle(10)
    assert len(relay.http.to(CRM_PATH)) == len(relay.http.to(SLACK_PATH)) == len(relay.smtp.messages) == 1


def test_two_fan_outs_reserving_threads_at_once_never_hold_part_each(relay):
    rt = relay.rt
    rt.reserve(runtime.MAX_IN_FLIGHT - 10)
    done = []
    waiters = [threading.Thread(target=lambda: (rt.reserve(16), done.append(1))) for _ in range(2)]
    for t in waiters:
        t.start()
    time.sleep(0.2)
    assert done == []  # neither took 10 of its 16 and waited for the rest
    rt.unreserve(runtime.MAX_IN_FLIGHT - 10)
    for t in waiters:
        t.join(5)
    assert done == [1, 1]
    rt.unreserve(32)
    assert rt.wait_idle(1)


def test_an_envelope_stored_again_for_an_event_already_delivered_is_forgotten(relay):
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    (envelope,) = waiting(relay.redis)
    relay.drain()
    # Read again (taken over from a reader that was only slow): nothing is sent, nothing stays.
    fanout.fan_out_batch(relay.rt, [(None, envelope)])
    assert not relay.redis.exists(keys.event_key(envelope["id"]))
    assert len(relay.http.to(CRM_PATH)) == 1
