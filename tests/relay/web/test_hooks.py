"""POST /hooks/<source> through the real app on a real Redis: every answer, exactly."""

import base64
import logging
import threading
import time

import pytest

from config.wms_events import CATALOGUE
from devtools.local_redis import LocalRedis
from relay.domain.samples import new_session_id, sample_event, to_body
from relay.store.connection import connect
from relay.store.inbox import waiting
from relay.store.keys import INBOX, dedup_key
from relay.web.app import create_app
from tests.conftest import PREVIOUS_SECRET, SECRET, signed_post
from tests.relay.domain.test_signature import VECTORS

UNAUTHORIZED = {"error": "unauthorized", "detail": "missing or invalid X-WMS-Content-MAC signature"}


def only_counted(redis, result: str) -> bool:
    """Nothing was stored but the request's count for `relay stats` (relay/store/stats.py)."""
    (key,) = redis.keys("*")
    return key.startswith(b"relay:stats:") and redis.hgetall(key) == {f"in|wms|{result}".encode(): b"1"}


def event_body(code="MEASUREMENT_CREATED", session_id="sess-1", sequence=0):
    return to_body(sample_event(code, session_id, sequence, timestamp=int(time.time())))


def test_every_documented_code_is_accepted_and_queued(client, redis):
    session_id = new_session_id()
    for sequence, code in enumerate(sorted(CATALOGUE)):
        response = signed_post(client, event_body(code, session_id, sequence))
        assert response.status_code == 202, response.json
        assert response.json == {"status": "accepted", "id": f"wms:{session_id}:{sequence}"}
    assert [e["id"] for e in waiting(redis)] == [f"wms:{session_id}:{i}" for i in range(19)]


def test_the_queued_body_is_the_raw_bytes_not_a_reserialisation(client, redis):
    # Odd spacing, key order and escapes that json.dumps would change.
    body = (
        '{ "event":"WMS_LOADED","severity":"INFO" , "sessionId":"s\\u002d1","sequence":0,"timestamp":%d, "note":"Łódź 😀" }'
        % int(time.time())
    )
    response = signed_post(client, body.encode("utf-8"))
    assert response.status_code == 202
    (envelope,) = waiting(redis)
    assert envelope["body"].encode("utf-8") == body.encode("utf-8")
    assert envelope["id"] == "wms:s-1:0" and envelope["source"] == "wms"
    assert envelope["received_at"] == pytest.approx(time.time(), abs=60)


def test_a_body_signed_by_node_with_non_ascii_is_accepted(client, redis):
    (vector,) = [v for v in VECTORS if v["name"].startswith("astral")]
    body = base64.b64decode(vector["body_b64"])
    response = client.post("/hooks/wms", data=body, headers={"X-WMS-Content-MAC": _resign(vector, body)})
    assert response.status_code == 202, response.json


def _resign(vector, body):
    # The vector was made with its own secret; the app's is SECRET. Same Node algorithm either way.
    from relay.domain.signature import compute

    assert compute(vector["secret"], body) == vector["mac"]
    return compute(SECRET, body)


def test_the_previous_secret_still_works_during_rotation(client):
    response = signed_post(client, event_body(), secret=PREVIOUS_SECRET)
    assert response.status_code == 202


def test_a_duplicate_is_acknowledged_but_not_queued_again(client, redis, caplog):
    caplog.set_level(logging.INFO, logger="relay.web.hooks")
    body = event_body(sequence=3)
    assert signed_post(client, body).status_code == 202
    response = signed_post(client, body)
    assert (response.status_code, response.json) == (200, {"status": "duplicate", "id": "wms:sess-1:3"})
    assert len(waiting(redis)) == 1
    assert "duplicate wms:sess-1:3 not queued again" in caplog.text


def test_same_session_and_sequence_with_a_different_body_is_still_a_duplicate(client, redis):
    assert signed_post(client, event_body("WMS_LOADED", "s", 0)).status_code == 202
    assert signed_post(client, event_body("CAMERA_STARTED", "s", 0)).json["status"] == "duplicate"
    assert len(waiting(redis)) == 1


def test_the_dedup_key_expires_with_the_configured_window(app, client, redis, relay_config):
    signed_post(client, event_body(sequence=5))
    ttl = redis.ttl(dedup_key("wms:sess-1:5"))
    assert relay_config.ingest.dedup_window - 5 <= ttl <= relay_config.ingest.dedup_window


def test_concurrent_identical_posts_add_exactly_one_inbox_entry(app, redis):
    body = event_body(sequence=9)
    barrier = threading.Barrier(16)
    statuses = []

    def post():
        client = app.test_client()
        barrier.wait()
        statuses.append(signed_post(client, body).status_code)

    threads = [threading.Thread(target=post) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 15 + [202]
    assert len(waiting(redis)) == 1


def test_unknown_code_is_accepted_and_logged_as_unknown(client, caplog):
    caplog.set_level(logging.INFO, logger="relay.web.hooks")
    response = signed_post(client, event_body("WMS_GAINED_A_FEATURE", "s", 0))
    assert response.status_code == 202
    assert "accepted unknown event code 'WMS_GAINED_A_FEATURE' as wms:s:0: not in the WMS catalogue" in caplog.text


@pytest.mark.parametrize(
    ("headers", "log_line"),
    [
        ({}, "missing X-WMS-Content-MAC header"),
        (
            {"X-WMS-Content-MAC": "sha256=abc"},
            "malformed X-WMS-Content-MAC header: expected hmac-sha256=<64 hex digits>",
        ),
        (
            {"X-WMS-Content-MAC": "hmac-sha256=" + "0" * 64},
            "X-WMS-Content-MAC matches none of the 2 configured secret(s)",
        ),
    ],
)
def test_bad_signatures_get_a_generic_401_and_the_cause_goes_to_the_log(client, redis, caplog, headers, log_line):
    response = client.post("/hooks/wms", data=event_body(), headers=headers)
    assert (response.status_code, response.json) == (401, UNAUTHORIZED)
    assert f"rejected POST /hooks/wms from 127.0.0.1: 401 unauthorized: {log_line}" in caplog.text
    assert SECRET not in caplog.text and PREVIOUS_SECRET not in caplog.text
    assert only_counted(redis, "unauthorized")


def test_every_rejected_request_is_one_log_line_with_its_reason(client, caplog):
    caplog.set_level(logging.INFO, logger="relay.web")
    body = to_body({**sample_event("WMS_LOADED", "sess-r", 0, timestamp=int(time.time())), "sequence": -1})
    assert signed_post(client, body).status_code == 400
    assert client.get("/hooks/wms").status_code == 405
    assert signed_post(client, event_body(), source="nowhere").status_code == 404
    said = [(r.levelname, r.getMessage(), r.status, r.source) for r in caplog.records if r.name == "relay.web.errors"]
    not_allowed = "method not allowed; this endpoint accepts OPTIONS, POST"  # not routed: no source
    assert said == [
        (
            "INFO",
            "rejected POST /hooks/wms from 127.0.0.1: 400 invalid_event: sequence: must be an integer >= 0, got -1",
            400,
            "wms",
        ),
        ("INFO", f"rejected GET /hooks/wms from 127.0.0.1: 405 method_not_allowed: {not_allowed}", 405, None),
        (
            "INFO",
            "rejected POST /hooks/nowhere from 127.0.0.1: 404 unknown_source: no source named 'nowhere' is configured",
            404,
            "nowhere",
        ),
    ]


def test_a_body_signed_with_another_secret_is_rejected(client):
    response = signed_post(client, event_body(), secret="someone-elses-secret")
    assert (response.status_code, response.json) == (401, UNAUTHORIZED)


def test_a_correctly_signed_body_that_is_not_utf8_is_rejected(client, redis):
    body = b'{"timestamp":1,"sessionId":"s","sequence":0,"severity":"INFO","event":"WMS_LOADED","x":"\xff"}'
    response = signed_post(client, body)
    assert body.index(b"\xff") == 88
    assert (response.status_code, response.json) == (
        400,
        {"error": "invalid_body", "detail": "body is not valid UTF-8 (invalid byte at offset 88)"},
    )
    assert only_counted(redis, "invalid")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b"not json",
            {"error": "invalid_body", "detail": "body is not valid JSON: Expecting value at line 1 column 1"},
        ),
        (
            b'{"timestamp":1,"sessionId":"s","sequence":0,"event":"WMS_LOADED"}',
            {"error": "invalid_event", "detail": "severity: required, must be one of INFO, WARN, ERROR"},
        ),
        (
            b'{"timestamp":"now","sessionId":"s","sequence":0,"severity":"INFO","event":"WMS_LOADED"}',
            {"error": "invalid_event", "detail": "timestamp: must be an integer (unix seconds), got 'now'"},
        ),
    ],
)
def test_invalid_events_get_400_naming_the_field_and_change_nothing(client, redis, body, expected):
    response = signed_post(client, body)
    assert (response.status_code, response.json) == (400, expected)
    assert only_counted(redis, "invalid")


def test_unknown_source_is_404(client):
    response = signed_post(client, event_body(), source="nope")
    assert (response.status_code, response.json) == (
        404,
        {"error": "unknown_source", "detail": "no source named 'nope' is configured"},
    )


def test_unknown_path_is_404_json(client):
    response = client.post("/webhook")
    assert (response.status_code, response.json) == (
        404,
        {"error": "not_found", "detail": "no such endpoint; webhooks are received at POST /hooks/<source>"},
    )


def test_wrong_method_is_405_json(client):
    response = client.get("/hooks/wms")
    assert (response.status_code, response.json) == (
        405,
        {"error": "method_not_allowed", "detail": "method not allowed; this endpoint accepts OPTIONS, POST"},
    )
    assert response.headers["Allow"] == "OPTIONS, POST"


def test_a_body_over_the_limit_is_413(client, redis, relay_config):
    limit = relay_config.ingest.max_body_bytes
    body = event_body()[:-1] + b',"pad":"' + b"x" * limit + b'"}'
    response = signed_post(client, body)
    assert (response.status_code, response.json) == (
        413,
        {"error": "payload_too_large", "detail": f"request body is larger than {limit} bytes"},
    )
    assert only_counted(redis, "too_large")


def test_a_body_one_byte_over_the_limit_is_413(client, redis, relay_config):
    limit = relay_config.ingest.max_body_bytes
    base = event_body()[:-1] + b',"pad":"'
    body = base + b"x" * (limit + 1 - len(base) - 2) + b'"}'
    response = signed_post(client, body)
    assert (response.status_code, response.json["error"]) == (413, "payload_too_large")
    assert only_counted(redis, "too_large")


def test_a_body_of_exactly_the_limit_is_accepted(client, relay_config):
    limit = relay_config.ingest.max_body_bytes
    base = event_body()[:-1] + b',"pad":"'
    body = base + b"x" * (limit - len(base) - 2) + b'"}'
    assert len(body) == limit
    assert signed_post(client, body).status_code == 202


def test_freshness_window_rejects_old_and_future_events(settings, relay_config, redis):
    ingest = relay_config.ingest.model_copy(update={"freshness_window": 300.0})
    client = create_app(settings, relay_config.model_copy(update={"ingest": ingest}), redis).test_client()
    now = int(time.time())
    for timestamp in (now - 1000, now + 1000):
        response = signed_post(client, to_body(sample_event("WMS_LOADED", "s", 0, timestamp=timestamp)))
        # The skew is counted when the request arrives: a second may have begun since `now`.
        expected = {
            f"timestamp: {timestamp} is {abs(t - timestamp)}s in the {'past' if t > timestamp else 'future'}; "
            "the freshness window is 300s"
            for t in (now, int(time.time()))
        }
        assert response.status_code == 400 and response.json["error"] == "stale_event"
        assert response.json["detail"] in expected
    assert signed_post(client, to_body(sample_event("WMS_LOADED", "s", 0, timestamp=now - 10))).status_code == 202


def test_freshness_is_off_by_default(client):
    assert signed_post(client, to_body(sample_event("WMS_LOADED", "s", 0, timestamp=1689684577))).status_code == 202


def test_a_failed_write_leaves_no_dedup_key_so_the_retry_is_queued(client, redis, caplog):
    # A script that fails halfway is not rolled back by Redis: the dedup key must be its last write.
    redis.set(INBOX, "not a stream")
    body = event_body(sequence=7)
    response = signed_post(client, body)
    assert (response.status_code, response.json) == (
        503,
        {"error": "unavailable", "detail": "cannot store the event right now; retry later"},
    )
    assert not redis.exists(dedup_key("wms:sess-1:7"))
    assert (
        "redis unavailable, refused event wms:sess-1:7: ResponseError: WRONGTYPE Operation against a key "
        "holding the wrong kind of value script: "
    ) in caplog.text
    redis.delete(INBOX)
    assert signed_post(client, body).status_code == 202
    assert [e["id"] for e in waiting(redis)] == ["wms:sess-1:7"]


@pytest.mark.slow  # a redis-server of its own, stopped and started again
def test_redis_down_means_503_with_retry_after_and_ready_again_when_it_returns(settings, relay_config):
    server = LocalRedis().start()
    try:
        redis = connect(settings.__class__.from_env({"REDIS_URL": server.url}).redis_url)
        client = create_app(settings, relay_config, redis).test_client()
        assert client.get("/readyz").status_code == 200
        assert signed_post(client, event_body(sequence=1)).status_code == 202

        server.stop()
        response = signed_post(client, event_body(sequence=2))
        assert (response.status_code, response.json) == (
            503,
            {"error": "unavailable", "detail": "cannot store the event right now; retry later"},
        )
        assert response.headers["Retry-After"] == "5"
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json) == (
            503,
            {"error": "not_ready", "detail": f"redis at 127.0.0.1:{server.port} is unreachable (connection refused)"},
        )
        assert client.get("/healthz").status_code == 200

        server = LocalRedis(port=server.port).start()
        assert signed_post(client, event_body(sequence=2)).status_code == 202
        assert client.get("/readyz").json["status"] == "ready"
    finally:
        server.stop()


def test_health_endpoints(client):
    assert (client.get("/healthz").status_code, client.get("/healthz").json) == (200, {"status": "ok"})
    no_worker_yet = {"running": 0, "absent_for": None, "inbox": {"waiting": 0, "oldest_age": None}, "problem": None}
    assert (client.get("/readyz").status_code, client.get("/readyz").json) == (
        200,
        {"status": "ready", "workers": no_worker_yet},
    )


def test_an_unexpected_error_is_a_json_500(app, client, monkeypatch):
    def broken(event, body):
        raise RuntimeError("bug")

    monkeypatch.setattr(app.extensions["relay.store.inbox"], "accept", broken)
    response = signed_post(client, event_body())
    assert (response.status_code, response.json) == (
        500,
        {"error": "internal_error", "detail": "internal error; retry later"},
    )
