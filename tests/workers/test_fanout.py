"""The fan-out and delivery attempts: once per destination, side by side, recorded."""

import json
import logging
import subprocess
import sys
import threading
import time

import pytest

from relay.domain.samples import sample_session, to_body
from relay.store import dead_letters, jobs, keys, queues
from relay.store.event_log import attempts_of, every_attempt
from relay.store.inbox import waiting
from tests.conftest import FANOUT_YAML, signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import CRM_PATH, SLACK_PATH
from workers.drain import Drain
from workers.fanout import fan_out_batch


def test_an_event_fanned_out_twice_sends_nothing_twice(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    signed_post(relay.client, to_body(event))
    (envelope,) = waiting(relay.redis)
    relay.drain()
    # As if its reader had died before acknowledging it and another reader took the entry over.
    assert fan_out_batch(relay.rt, [(None, envelope)]) == 0  # nothing queued again
    relay.drain()
    assert len(relay.http.to(SLACK_PATH)) == len(relay.http.to(CRM_PATH)) == len(relay.smtp.messages) == 1
    assert len(every_attempt(relay.redis)) == 3
    assert not relay.redis.exists(keys.event_key(f"wms:{event['sessionId']}:0"))  # the envelope stored again is gone


def test_an_event_fanned_out_again_after_a_failure_starts_no_second_retry_chain(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    relay.http.script(SLACK_PATH, Reply(500, b"down"))
    signed_post(relay.client, to_body(event))
    (envelope,) = waiting(relay.redis)
    relay.drain()
    fan_out_batch(relay.rt, [(None, envelope)])
    relay.drain()
    assert len(relay.http.to(SLACK_PATH)) == 1
    assert [s[:4] for s in relay.scheduled()] == [(f"wms:{event['sessionId']}:0", "ops-slack", 2, 0)]


def test_a_stale_or_repeated_attempt_sends_nothing(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    event_id = f"wms:{event['sessionId']}:0"
    relay.http.script(SLACK_PATH, Reply(500, b"down"))
    signed_post(relay.client, to_body(event))
    relay.drain()
    assert relay.run_due_retries() == 1
    # The failed attempt queued again (stale: the state names attempt 2), and attempt 2 asked for
    # a second time by a retry job of an earlier version.
    relay.redis.zadd(keys.queue_key("ops-slack"), {queues.member(event_id, "ops-slack", 1, 0): time.time()})
    relay.queue.enqueue(jobs.RETRY, event_id, "ops-slack", 2, 0)
    relay.drain()
    assert len(relay.http.to(SLACK_PATH)) == 2  # the failed first attempt and one retry
    assert relay.redis.zcard(keys.queue_key("ops-slack")) == 0


def test_an_attempt_lost_with_its_worker_is_due_again_when_its_lease_ends(relay, caplog):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    signed_post(relay.client, to_body(event))
    Drain(relay.rt, name="tests").drain_all()
    # A worker takes every delivery, then dies before sending any.
    for name in ("ops-slack", "ops-email", "crm"):
        (taken,) = queues.take(relay.redis, name, 8, 60.0, 0.0, "dead-worker", 3600).taken
        assert taken.number == 1
    relay.drain()
    assert relay.http.requests == [] and relay.smtp.messages == []  # leased: not yet presumed lost
    assert relay.expire_leases() == 3  # time passes
    relay.drain()
    assert len(relay.http.to(SLACK_PATH)) == len(relay.http.to(CRM_PATH)) == len(relay.smtp.messages) == 1
    assert sum(relay.redis.zcard(keys.inflight_key(n)) for n in ("ops-slack", "ops-email", "crm")) == 0
    event_id = f"wms:{event['sessionId']}:0"
    assert f"{event_id} -> crm attempt 1 was lost in flight (its worker stopped?); trying it again" in caplog.text


def send_while_redis_fills_up(relay, event, status: int = 200) -> None:
    """Post `event` and send its callback, which answers `status`; as the answer arrives, Redis
    starts refusing writes (out of memory), so the attempt's record cannot be written."""
    fanned_out = threading.Event()

    def redis_fills_up():
        assert fanned_out.wait(10)
        relay.redis.config_set("maxmemory", "1")

    relay.http.script(CRM_PATH, Reply(status, b"ok" if status == 200 else b"down", on_receipt=redis_fills_up))
    signed_post(relay.client, to_body(event))
    try:
        Drain(relay.rt, name="tests").drain_all()
        assert relay.rt.lane("crm").start_due() == 1
        fanned_out.set()
        assert relay.rt.wait_idle(10)
    finally:
        relay.redis.config_set("maxmemory", "0")


def test_an_attempt_whose_record_fails_is_sent_again_when_its_lease_ends(relay, caplog):
    (event,) = sample_session(("WMS_LOADED",))
    send_while_redis_fills_up(relay, event)
    event_id = f"wms:{event['sessionId']}:0"
    assert f"{event_id} -> crm attempt 1: ok, but not recorded; it is sent again when its lease ends" in caplog.text
    assert relay.expire_leases() == 1
    relay.drain()
    # Sent twice: at least once, never lost. The second attempt is the one recorded.
    assert len(relay.http.to(CRM_PATH)) == 2
    assert [(a["attempt"], a["outcome"]) for a in every_attempt(relay.redis)] == [(1, "ok")]


def test_a_slow_destination_holds_up_neither_the_others_nor_later_events(relay):
    events = sample_session(("CONSTRAINT_VIOLATION",) * 4)
    relay.http.script(SLACK_PATH, *[Reply(delay=1.0)] * 4)
    for event in events:
        signed_post(relay.client, to_body(event))
    relay.drain()
    slack, crm = relay.http.to(SLACK_PATH), relay.http.to(CRM_PATH)
    assert len(slack) == len(crm) == 4
    # All four callbacks went out together, not one per second behind Slack's slow answers.
    assert max(r.at for r in crm) - min(r.at for r in slack) < 0.5


def test_every_attempt_is_recorded_with_its_outcome(relay):
    (event,) = sample_session(("WEBSOCKET_DISCONNECTED",))
    relay.http.script(SLACK_PATH, Reply(429, b"rate_limited", {"Retry-After": "30"}))
    signed_post(relay.client, to_body(event))
    relay.drain()
    (slack,) = attempts_of(relay.redis, f"wms:{event['sessionId']}:0", "ops-slack")
    assert (slack["attempt"], slack["outcome"], slack["status"], slack["detail"]) == (
        1,
        "transient",
        "HTTP 429",
        "rate_limited",
    )
    assert 30 <= slack["next_retry_in"] <= 31  # a deferral: Retry-After, not the schedule's 5 s
    ((_, destination, number, deferrals, due),) = relay.scheduled()
    assert (destination, number, deferrals) == ("ops-slack", 1, 1)  # the same attempt again, one deferral used
    assert 29 <= due - time.time() <= 31
    assert slack["duration_ms"] >= 0 and slack["at"] > 0
    logged = {a["destination"]: a for a in every_attempt(relay.redis)}
    assert logged["ops-slack"] == slack
    crm, email = logged["crm"], logged["ops-email"]
    assert (crm["outcome"], crm["status"], crm["next_retry_in"]) == ("ok", "HTTP 200", None)
    assert (email["outcome"], email["status"]) == ("ok", "SMTP 250")


def test_secrets_never_reach_attempt_records(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    relay.http.stop()  # every HTTP destination now fails to connect; the libraries quote the URL
    signed_post(relay.client, to_body(event))
    relay.drain()
    text = json.dumps([attempts_of(relay.redis, f"wms:{event['sessionId']}:0"), every_attempt(relay.redis)])
    assert "connection error" in text
    for secret in ("XXXX", "crm-token", "crm-api-key", "T000/B000"):
        assert secret not in text


def test_an_event_that_matches_no_rule_is_logged_and_done(relay_factory, caplog):
    caplog.set_level(logging.INFO, logger="workers")
    relay = relay_factory(FANOUT_YAML.split("rules:")[0] + "rules: []\n")  # the destinations, and no rule
    (event,) = sample_session(("WMS_LOADED",))
    signed_post(relay.client, to_body(event))
    relay.drain()
    assert f"wms:{event['sessionId']}:0 (WMS_LOADED, INFO) matches no rule; not delivered anywhere" in caplog.text
    assert relay.http.requests == []


def test_an_inbox_entry_whose_body_does_not_match_its_id_is_kept_as_a_dead_letter(relay, caplog):
    (event,) = sample_session(("WMS_LOADED",))
    envelope = {"v": 1, "id": "wms:s:2", "source": "wms", "received_at": 0.0, "body": to_body(event).decode()}
    entry_id = relay.redis.xadd(keys.INBOX, envelope).decode()
    relay.drain()
    reason = f"ValueError: envelope id 'wms:s:2' does not match its body's event id 'wms:{event['sessionId']}:0'"
    assert f"inbox entry {entry_id} (wms:s:2) could not be routed ({reason}); kept as a dead letter" in caplog.text
    assert relay.http.requests == [] and waiting(relay.redis) == []
    (letter,) = dead_letters.find(relay.redis, dead_letters.Filter())
    assert (letter.destination, letter.event_id, letter.detail) == ("_routing", "wms:s:2", reason)


def test_an_inbox_entry_that_is_no_envelope_is_logged_and_skipped(relay, caplog):
    (event,) = sample_session(("WMS_LOADED",))
    signed_post(relay.client, to_body(event))
    entry_id = relay.redis.xadd(keys.INBOX, {"note": "hand-made"}).decode()
    relay.drain()
    assert (
        f"inbox entry {entry_id} is not an event envelope (KeyError: b'v'); skipped: {{'note': 'hand-made'}}"
        in caplog.text
    )
    # The entry beside it went out; neither is read again.
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(event)]
    assert relay.redis.xlen(keys.INBOX) == 0
    assert relay.redis.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 0


def test_an_entry_whose_deliveries_fail_to_queue_stays_pending_and_goes_out_once_redis_recovers(relay, caplog):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    event_id = f"wms:{event['sessionId']}:0"
    signed_post(relay.client, to_body(event))
    relay.redis.set(keys.delivery_key(event_id), "not a hash")  # every delivery of this event fails to queue
    reader = Drain(relay.rt, name="one")
    reader.ensure_group()
    with pytest.raises(RuntimeError) as exc:
        reader.step(block_ms=None)
    assert str(exc.value) == "1 inbox entries could not be fanned out and stay pending"
    assert (
        f"{event_id} -> crm: queueing the delivery failed: WRONGTYPE Operation against a key holding the wrong "
        "kind of value script: "
    ) in caplog.text
    assert relay.redis.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 1
    relay.redis.delete(keys.delivery_key(event_id))
    reader._retry_own = True  # what the read loop does after an error
    assert reader.step(block_ms=None) == 1
    relay.drain()
    assert len(relay.http.to(CRM_PATH)) == len(relay.http.to(SLACK_PATH)) == len(relay.smtp.messages) == 1
    assert relay.redis.xlen(keys.INBOX) == 0


def test_a_fan_out_job_of_an_earlier_version_still_delivers(relay):
    # Events queued as one RQ job each before an upgrade go out once, like the inbox's.
    (event,) = sample_session(("WMS_LOADED",))
    envelope = {
        "v": 1,
        "id": f"wms:{event['sessionId']}:0",
        "source": "wms",
        "received_at": time.time(),
        "body": to_body(event).decode(),
    }
    relay.queue.enqueue(jobs.FANOUT, envelope)
    relay.queue.enqueue(jobs.FANOUT, envelope)
    relay.drain()
    assert [r.body for r in relay.http.to(CRM_PATH)] == [to_body(event)]


def test_the_inbox_entry_is_the_versioned_envelope_in_plain_fields(client, redis):
    (event,) = sample_session(("WMS_LOADED",))
    signed_post(client, to_body(event))
    # The raw entry, as another process (or redis-cli) would read it: plain values, not pickle.
    ((_, fields),) = redis.xrange(keys.INBOX)
    assert list(fields) == [b"v", b"id", b"source", b"received_at", b"body"]
    assert (fields[b"v"], fields[b"id"], fields[b"source"], fields[b"body"]) == (
        b"1",
        f"wms:{event['sessionId']}:0".encode(),
        b"wms",
        to_body(event),
    )
    assert abs(float(fields[b"received_at"]) - time.time()) < 5


@pytest.mark.slow  # a Python process of its own
def test_the_worker_side_does_not_load_flask():
    # Only the web modules import Flask (STYLE: one-way imports, web-only Flask).
    code = "import sys, workers.__main__, workers.fanout; print('flask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_a_retry_left_over_for_a_delivery_that_ended_meanwhile_does_nothing(relay, caplog):
    caplog.set_level(logging.INFO, logger="workers")
    (event,) = sample_session(("WMS_LOADED",))
    event_id = f"wms:{event['sessionId']}:0"
    signed_post(relay.client, to_body(event))
    relay.drain()
    assert not relay.redis.exists(keys.event_key(event_id))  # delivered everywhere: envelope gone
    # E.g. a retry job of an earlier version, queued before the attempt it repeats had finished.
    relay.queue.enqueue(jobs.RETRY, event_id, "crm", 1, 0)
    relay.drain()
    assert "no longer stored" not in caplog.text
    assert len(relay.http.to(CRM_PATH)) == 1
    assert relay.redis.zcard(keys.queue_key("crm")) == 0  # dropped: its state says "ok"


def test_a_failure_whose_record_fails_keeps_its_lease_and_is_sent_again(relay, caplog):
    (event,) = sample_session(("WMS_LOADED",))
    send_while_redis_fills_up(relay, event, status=500)
    event_id = f"wms:{event['sessionId']}:0"
    assert (
        f"{event_id} -> crm attempt 1: transient, but not recorded; it is sent again when its lease ends" in caplog.text
    )
    # Nothing was given back: the lease is still there, so the attempt is not lost.
    assert relay.redis.zcard(keys.inflight_key("crm")) == 1
    assert relay.expire_leases() == 1
    relay.drain()
    assert len(relay.http.to(CRM_PATH)) == 2
    assert relay.redis.hget(keys.delivery_key(event_id), "crm") == b"ok"
