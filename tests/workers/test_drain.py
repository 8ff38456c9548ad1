"""Reading the inbox: batches through the consumer group, taken over when a reader dies, the
envelope kept exactly as long as a retry may need it."""

import logging
import time

from rq.suspension import resume, suspend

from relay import keys
from relay.inbox import waiting
from relay.samples import sample_session, to_body
from tests.conftest import FANOUT_YAML, signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import CRM_PATH, SLACK_PATH
from workers import drain
from workers.drain import BATCH, Drain

SHORT_GRACE = FANOUT_YAML + "operations: {lease_grace: 1s}\n"


def post(relay, events):
    for event in events:
        assert signed_post(relay.client, to_body(event)).status_code == 202


def test_a_batch_is_read_claimed_and_acknowledged_together(relay):
    events = sample_session(("WMS_LOADED",) * (BATCH + 3))
    post(relay, events)
    reader = Drain(relay.redis, name="one")
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
    dead = Drain(relay.redis, name="dead")
    dead.ensure_group()
    # It read both entries and died before fanning them out.
    relay.redis.xreadgroup(keys.INBOX_GROUP, "dead", {keys.INBOX: ">"}, count=10)
    survivor = Drain(relay.redis, name="survivor")
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
    Drain(relay.redis, name="gone").drain_all()
    monkeypatch.setattr(drain, "IDLE_READER_TTL_MS", 0)
    time.sleep(0.01)
    Drain(relay.redis, name="current").drain_all()
    names = [c["name"] for c in relay.redis.xinfo_consumers(keys.INBOX, keys.INBOX_GROUP)]
    assert names == [b"current"]


def test_the_group_is_made_again_when_redis_was_emptied(relay):
    reader = Drain(relay.redis, name="one")
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
    assert relay.redis.hgetall(keys.delivery_key(event_id)) == {b"ops-slack": b"dead", b"ops-email": b"ok", b"crm": b"ok"}
    assert not relay.redis.exists(keys.event_key(event_id))  # the dead letter keeps its own copy


def test_the_worker_logs_and_keeps_reading_when_redis_fails(relay, monkeypatch, caplog):
    reader = Drain(relay.redis, name="one")
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
    assert reader._own_pending  # after an error it first reads what it may still hold


def test_rq_suspend_pauses_the_fan_out_too(relay):
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    suspend(relay.redis)
    reader = Drain(relay.redis, name="one")
    reader.ensure_group()
    assert reader.step(block_ms=None) == 0 and len(waiting(relay.redis)) == 1
    resume(relay.redis)
    assert reader.step(block_ms=None) == 1
