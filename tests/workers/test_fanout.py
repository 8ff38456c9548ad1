"""The fan-out job and delivery attempts: once per destination, side by side, recorded."""

import json
import logging
import subprocess
import sys
import zlib

from rq.registry import FailedJobRegistry

from relay.samples import sample_session, to_body
from tests.conftest import signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import CRM_PATH, SLACK_PATH
from workers import runtime
from workers.attempts import attempts_of


def test_a_job_that_runs_twice_sends_nothing_twice(relay, caplog):
    caplog.set_level(logging.INFO, logger="workers")
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    signed_post(relay.client, to_body(event))
    (job,) = relay.queue.get_jobs()
    relay.drain()
    relay.queue.enqueue_job(job)  # as if a worker had died after sending and RQ ran the job again
    relay.drain()
    assert len(relay.http.to(SLACK_PATH)) == len(relay.http.to(CRM_PATH)) == len(relay.smtp.messages) == 1
    event_id = f"wms:{event['sessionId']}:0"
    for destination in ("ops-slack", "ops-email", "crm"):
        assert f"{event_id} already delivered to {destination}; not sending again" in caplog.text
    assert len(attempts_of(relay.redis, event_id)) == 3


def test_a_slow_destination_does_not_hold_up_the_others(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    relay.http.script(SLACK_PATH, Reply(delay=1.0))
    signed_post(relay.client, to_body(event))
    relay.drain()
    (slack,), (crm,) = relay.http.to(SLACK_PATH), relay.http.to(CRM_PATH)
    assert abs(crm.at - slack.at) < 0.5  # sent side by side, not after Slack's 1 s answer


def test_every_attempt_is_recorded_with_its_outcome(relay):
    (event,) = sample_session(("WEBSOCKET_DISCONNECTED",))
    relay.http.script(SLACK_PATH, Reply(429, b"rate_limited", {"Retry-After": "30"}))
    signed_post(relay.client, to_body(event))
    relay.drain()
    records = {a["destination"]: a for a in attempts_of(relay.redis, f"wms:{event['sessionId']}:0")}
    slack = records["ops-slack"]
    assert (slack["attempt"], slack["outcome"], slack["status"], slack["detail"]) == (1, "transient", "HTTP 429", "rate_limited")
    assert slack["next_retry_in"] >= 30  # Retry-After outranks the 5 s of the schedule
    assert slack["duration_ms"] >= 0 and slack["at"] > 0
    assert (records["crm"]["outcome"], records["crm"]["status"]) == ("ok", "HTTP 200")
    assert (records["ops-email"]["outcome"], records["ops-email"]["status"]) == ("ok", "SMTP 250")
    log = [json.loads(fields[b"record"]) for _, fields in relay.redis.xrange("relay:attempt-log")]
    assert sorted(r["destination"] for r in log) == ["crm", "ops-email", "ops-slack"]


def test_secrets_never_reach_attempt_records(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    relay.http.stop()  # every HTTP destination now fails to connect; the libraries quote the URL
    signed_post(relay.client, to_body(event))
    relay.drain()
    text = json.dumps(attempts_of(relay.redis, f"wms:{event['sessionId']}:0"))
    assert "connection error" in text
    for secret in ("XXXX", "crm-token", "crm-api-key", "T000/B000"):
        assert secret not in text


def test_an_event_that_matches_no_rule_is_logged_and_done(relay, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="workers")
    rt = runtime.current()
    monkeypatch.setattr(rt, "config", rt.config.model_copy(update={"rules": []}))
    (event,) = sample_session(("WMS_LOADED",))
    signed_post(relay.client, to_body(event))
    relay.drain()
    assert f"wms:{event['sessionId']}:0 (WMS_LOADED, INFO) matches no rule; not delivered anywhere" in caplog.text
    assert relay.http.requests == []


def test_a_job_whose_body_does_not_match_its_id_fails_loudly(relay):
    body = to_body(sample_session(("WMS_LOADED",))[0])
    job = relay.queue.enqueue("workers.fanout.fan_out", {"v": 1, "id": "wms:s:2", "source": "wms", "received_at": 0, "body": body.decode()})
    relay.drain()
    assert FailedJobRegistry(queue=relay.queue).get_job_ids() == [job.id]
    assert "envelope id 'wms:s:2' does not match its body's event id" in job.latest_result().exc_string
    assert relay.http.requests == []


def test_the_queued_envelope_is_versioned_plain_json(client, redis):
    (event,) = sample_session(("WMS_LOADED",))
    signed_post(client, to_body(event))
    # The raw hash, as another process would read it: JSON, not pickle.
    (job_key,) = redis.keys("rq:job:*")
    func, _instance, args, kwargs = json.loads(zlib.decompress(redis.hget(job_key, "data")))
    assert (func, kwargs) == ("workers.fanout.fan_out", {})
    (envelope,) = args
    assert sorted(envelope) == ["body", "id", "received_at", "source", "v"]
    assert (envelope["v"], envelope["id"], envelope["body"]) == (1, f"wms:{event['sessionId']}:0", to_body(event).decode())


def test_the_worker_side_does_not_load_flask():
    # Only the web modules import Flask (STYLE: one-way imports, web-only Flask).
    code = "import sys, workers.__main__, workers.fanout; print('flask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
