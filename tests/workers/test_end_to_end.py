"""Realistic sessions POSTed to the real app, drained by a real worker, landing at real peers."""

import json
import time

from standardwebhooks.webhooks import Webhook

from config.secret import Secret
from relay.domain import signature
from relay.domain.samples import COMPLETED_SESSION, FAILED_SESSION, sample_session, to_body
from relay.store.event_log import attempts_of, every_attempt
from relay.store.keys import DEAD_LETTERS
from tests.conftest import CRM_SECRET, signed_post
from tests.peers import Reply

CRM_PATH = "/crm?token=crm-token"
SLACK_PATH = "/slack/T000/B000/XXXX"


def post_all(relay, events):
    for event in events:
        assert signed_post(relay.client, to_body(event)).status_code == 202


def test_a_completed_session_feeds_the_callback_and_alerts_nobody(relay):
    events = sample_session(COMPLETED_SESSION)
    post_all(relay, events)
    relay.drain()
    crm = relay.http.to(CRM_PATH)
    # Every event, bytes unchanged; sends run in parallel, so not necessarily in order (README).
    assert sorted(r.body for r in crm) == sorted(to_body(e) for e in events)
    assert relay.http.to(SLACK_PATH) == [] and relay.smtp.messages == []


def test_a_failed_session_alerts_chat_and_mail_and_feeds_the_callback(relay):
    events = sample_session(FAILED_SESSION)
    session_id = events[0]["sessionId"]
    post_all(relay, events)
    relay.drain()

    assert len(relay.http.to(CRM_PATH)) == len(events)
    # CONSTRAINT_VIOLATION (ERROR) and MEASUREMENT_CANCELED (WARN) are the failures.
    # Sends run in parallel: each failure alerts once, in whatever order the sends finished.
    slack = {
        m["attachments"][0]["blocks"][0]["text"]["text"]: m
        for m in (json.loads(r.body) for r in relay.http.to(SLACK_PATH))
    }
    assert sorted(slack) == ["CONSTRAINT_VIOLATION", "MEASUREMENT_CANCELED"] and len(relay.http.to(SLACK_PATH)) == 2
    assert slack["CONSTRAINT_VIOLATION"]["text"] == (
        f":red_circle: [ERROR] CONSTRAINT_VIOLATION - session {session_id} "
        "(measurement f0c8ca8d-111d-4dcf-a69d-46ed39a2db06)"
    )
    subjects = sorted(m["Subject"] for _, _, m in relay.smtp.messages)
    assert subjects == [
        f"[WMS ERROR] CONSTRAINT_VIOLATION - session {session_id}",
        f"[WMS WARN] MEASUREMENT_CANCELED - session {session_id}",
    ]
    assert {tuple(rcpt) for _, rcpt, _ in relay.smtp.messages} == {("ops@example.com", "qa@example.com")}


def test_callbacks_are_signed_for_standard_webhooks_and_like_wms(relay):
    (event,) = sample_session(("WMS_LOADED",))
    post_all(relay, [event])
    relay.drain()
    (request,) = relay.http.to(CRM_PATH)
    headers = {k.lower(): v for k, v in request.headers.items()}
    event_id = f"wms:{event['sessionId']}:0"
    # The standardwebhooks library itself verifies: id, timestamp and signature over the raw body.
    assert Webhook(CRM_SECRET).verify(request.body, headers) == event
    assert headers["webhook-id"] == headers["idempotency-key"] == event_id
    # Our own WMS verifier accepts the re-signed X-WMS-Content-MAC, keyed with the signing secret.
    assert signature.verify(headers["x-wms-content-mac"], request.body, [Secret(CRM_SECRET)]) == 0
    assert (headers["content-type"], headers["x-tenant"], headers["authorization"]) == (
        "application/json",
        "acme",
        "Bearer crm-api-key",
    )


def test_duplicates_posted_again_are_not_delivered_again(relay):
    events = sample_session(FAILED_SESSION)
    post_all(relay, events)
    relay.drain()
    for event in events:
        assert signed_post(relay.client, to_body(event)).json["status"] == "duplicate"
    relay.drain()
    assert len(relay.http.to(CRM_PATH)) == len(events)
    assert len(relay.http.to(SLACK_PATH)) == 2 and len(relay.smtp.messages) == 2


def test_a_failing_destination_does_not_stop_or_repeat_the_others(relay):
    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    relay.http.script(SLACK_PATH, Reply(500, b"internal_error"))
    post_all(relay, [event])
    relay.drain()
    event_id = f"wms:{event['sessionId']}:0"
    assert len(relay.http.to(CRM_PATH)) == 1 and len(relay.smtp.messages) == 1
    assert len(relay.http.to(SLACK_PATH)) == 1
    ((_, destination, number, deferrals, due),) = relay.scheduled()
    assert (destination, number, deferrals) == ("ops-slack", 2, 0)
    assert 4 - 0.1 <= due - time.time() <= 6  # 5 s +-20%

    assert relay.run_due_retries() == 1
    relay.drain()
    # Slack got it on its second attempt; the others were not sent again.
    assert len(relay.http.to(SLACK_PATH)) == 2
    assert len(relay.http.to(CRM_PATH)) == 1 and len(relay.smtp.messages) == 1
    # The event log has every attempt of the event, in the order made.
    logged = [(a["destination"], a["attempt"], a["outcome"]) for a in every_attempt(relay.redis)]
    assert sorted(logged) == [
        ("crm", 1, "ok"),
        ("ops-email", 1, "ok"),
        ("ops-slack", 1, "transient"),
        ("ops-slack", 2, "ok"),
    ]
    outcomes = [(a["attempt"], a["outcome"]) for a in attempts_of(relay.redis, event_id, "ops-slack")]
    assert outcomes == [(1, "transient"), (2, "ok")]
    assert relay.redis.zcard(DEAD_LETTERS) == 0


def test_a_permanent_failure_is_dead_lettered_with_its_event(relay):
    (event,) = sample_session(("API_ERROR",))
    relay.http.script(SLACK_PATH, Reply(400, b"invalid_payload"))
    post_all(relay, [event])
    relay.drain()
    event_id = f"wms:{event['sessionId']}:0"
    assert relay.scheduled() == []
    assert relay.redis.zrange(DEAD_LETTERS, 0, -1) == [f"ops-slack:{event_id}".encode()]
    letter = json.loads(relay.redis.get(f"relay:dead-letter:ops-slack:{event_id}"))
    assert (letter["status"], letter["detail"], letter["attempts"]) == ("HTTP 400", "invalid_payload", 1)
    assert letter["envelope"]["body"] == to_body(event).decode()
    assert len(relay.smtp.messages) == 1 and len(relay.http.to(CRM_PATH)) == 1
