"""Reading the inbox: batches through the consumer group, taken over when a reader dies, the
envelope kept exactly as long as a retry may need it."""

import logging
import threading
import time

import pytest
from rq.suspension import resume, suspend

from config.secret import Secret
from devtools.local_redis import LocalRedis
from relay.domain.samples import sample_session, to_body
from relay.store import keys
from relay.store.connection import connect
from relay.store.inbox import waiting
from relay.web.app import create_app
from tests.conftest import FANOUT_YAML, signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import CRM_PATH, SLACK_PATH
from workers import drain, fanout, runtime
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


class WatchedCondition(threading.Condition):
    """The delivery threads' condition, counting the threads waiting on it for threads to free up."""

    def __init__(self):
        super().__init__()
        self.waiting = 0

    def wait(self, timeout=None):
        self.waiting += 1  # under the lock, as is the decrement: wait() takes it back before returning
        try:
            return super().wait(timeout)
        finally:
            self.waiting -= 1

    def waiters(self) -> int:
        with self:
            return self.waiting


def watched(rt: Runtime) -> tuple[Runtime, WatchedCondition]:
    """A runtime like `rt` (its Redis, config and adapters) whose waits for delivery threads are seen."""
    condition = WatchedCondition()
    return Runtime(rt.settings, rt.config, rt.redis, rt.adapters, _idle=condition), condition


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
    caplog.set_level(logging.ERROR, logger="workers")
    server = LocalRedis().start()  # a Redis of its own, stopped under the reader and started again
    try:
        rt = Runtime.build(relay.rt.settings, relay.rt.config, connect(Secret(server.url)))
        reader = Drain(rt, name="one")
        reader.start()
        try:
            server.stop()
            until(lambda: "reading the inbox failed; trying again in 1 s" in caplog.text, "the failed read logged")
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
            assert rt.wait_idle(10)
    finally:
        server.stop()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(event)]


def test_rq_suspend_pauses_the_fan_out_too(relay):
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    suspend(relay.redis)
    reader = Drain(relay.rt, name="one")
    reader.ensure_group()
    assert reader.step(block_ms=None) == 0 and len(waiting(relay.redis)) == 1
    resume(relay.redis)
    assert reader.step(block_ms=None) == 1


# A rule with a numeric bound on a payload field: a number beyond a float's range cannot be compared.
BOUNDED = FANOUT_YAML + "  - {name: large-counts, match: {payload: {count: {gt: 1000}}}, to: [crm]}\n"


def test_an_entry_that_cannot_be_routed_is_logged_and_the_rest_of_its_batch_goes_out(relay_factory, caplog):
    relay = relay_factory(BOUNDED)
    bad, good = sample_session(("WMS_LOADED",) * 2)
    bad["payload"] = {"count": 10**400}  # valid JSON, accepted; routing it raises OverflowError
    post(relay, [bad, good])
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
    rt, condition = watched(relay.rt)
    rt.reserve(runtime.MAX_IN_FLIGHT - 2)  # only two threads free
    fanning = threading.Thread(target=fanout.fan_out_batch, args=(rt, [(None, envelope)]))
    fanning.start()
    until(lambda: condition.waiters() == 1, "the fan-out to wait for three free threads")
    # A claim starts a lease: none is taken while a send would still have to wait for a thread.
    assert relay.redis.zcard(keys.LEASES) == 0 and not relay.redis.exists(keys.delivery_key(envelope["id"]))
    rt.unreserve(runtime.MAX_IN_FLIGHT - 2)
    fanning.join(5)
    assert rt.wait_idle(10)
    assert len(relay.http.to(CRM_PATH)) == len(relay.http.to(SLACK_PATH)) == len(relay.smtp.messages) == 1


def test_two_fan_outs_reserving_threads_at_once_never_hold_part_each(relay):
    rt, condition = watched(relay.rt)
    rt.reserve(runtime.MAX_IN_FLIGHT - 10)
    done = []
    waiters = [threading.Thread(target=lambda: (rt.reserve(16), done.append(1))) for _ in range(2)]
    for t in waiters:
        t.start()
    until(lambda: condition.waiters() == 2, "both fan-outs to wait for threads")
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
