"""GET /metrics: exact counts of ingest results, attempts, sessions and gauges; who may scrape it."""

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from config.errors import ConfigError
from config.loader import load_config
from config.settings import Settings
from relay.domain.samples import sample_event, to_body
from relay.store import destination_state
from relay.web.app import create_app
from tests.conftest import ADMIN_TOKEN, CONFIG_ENV, CRM_SECRET, signed_post
from tests.peers import Reply
from workers.drain import Drain

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NOT_FOUND = {"error": "not_found", "detail": "no such endpoint; webhooks are received at POST /hooks/<source>"}
UNAUTHORIZED = {"error": "unauthorized", "detail": "missing or invalid bearer token"}
METRICS_TOKEN = "metrics-token-0123456789abcdef"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client, headers=AUTH) -> dict:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.json
    assert response.content_type.startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


def body(code: str, session: str, sequence: int) -> bytes:
    return to_body(sample_event(code, session, sequence))


def test_ingest_results_attempts_sessions_and_gauges_are_counted_exactly(relay, http_peer):
    client = relay.client
    http_peer.script("/crm?token=crm-token", Reply(503, b"busy"))  # the first callback fails once
    for sequence, code in enumerate(["WMS_LOADED", "MEASUREMENT_CREATED", "CONSTRAINT_VIOLATION"]):
        assert signed_post(client, body(code, "s1", sequence)).status_code == 202
    assert signed_post(client, body("WMS_LOADED", "s1", 0)).status_code == 200  # duplicate
    assert signed_post(client, body("WMS_LOADED", "s2", 0), secret="wrong").status_code == 401
    assert signed_post(client, b"{not json").status_code == 400
    assert signed_post(client, b"x" * 2_000_000).status_code == 413
    assert signed_post(client, body("WMS_LOADED", "s3", 0), source="nope").status_code == 404

    before = scrape(client)
    assert before[("relay_inbox_entries", ())] == 3
    assert before[("relay_inbox_oldest_age_seconds", ())] >= 0
    relay.drain()
    relay.run_due_retries()
    relay.drain()
    relay.settle_sessions()
    relay.drain()

    got = scrape(client)
    requests = {labels: v for (name, labels), v in got.items() if name == "relay_ingest_requests_total"}
    assert requests == {
        (("result", "accepted"), ("source", "wms")): 3,
        (("result", "duplicate"), ("source", "wms")): 1,
        (("result", "unauthorized"), ("source", "wms")): 1,
        (("result", "invalid"), ("source", "wms")): 1,
        (("result", "too_large"), ("source", "wms")): 1,
        (("result", "unknown_source"), ("source", "-")): 1,
    }
    assert got[("relay_ingest_duration_seconds_count", ())] == 8
    # crm: every event (the first try of one failed, then succeeded); slack and mail: the one
    # >=WARN event (a derived event matches only rules that name it)
    attempts = {labels: v for (name, labels), v in got.items() if name == "relay_delivery_attempts_total"}
    assert attempts[(("destination", "crm"), ("outcome", "transient"))] == 1
    crm_ok = attempts[(("destination", "crm"), ("outcome", "ok"))]
    assert crm_ok == len(http_peer.to("/crm?token=crm-token")) - 1
    assert attempts[(("destination", "ops-slack"), ("outcome", "ok"))] == 1
    assert attempts[(("destination", "ops-email"), ("outcome", "ok"))] == 1
    assert got[("relay_delivery_send_duration_seconds_count", (("destination", "crm"),))] == crm_ok + 1
    assert got[("relay_delivery_send_duration_seconds_bucket", (("destination", "crm"), ("le", "+Inf")))] == crm_ok + 1
    assert got[("relay_sessions_total", (("outcome", "failed"),))] == 1
    for name in ("waiting", "scheduled", "in_flight", "parked", "paused", "dead_letters"):
        assert got[(f"relay_destination_{name}", (("destination", "crm"),))] == 0
    assert got[("relay_inbox_entries", ())] == 0
    assert got[("relay_workers_running", ())] == 0


def test_a_paused_destination_and_its_dead_letters_show(relay, http_peer):
    http_peer.script("/crm?token=crm-token", Reply(400, b"no"))  # permanent: a dead letter at once
    assert signed_post(relay.client, body("WMS_LOADED", "s1", 0)).status_code == 202
    relay.drain()
    destination_state.pause(relay.redis, "crm", "by a test", "operator", None)
    got = scrape(relay.client)
    assert got[("relay_destination_dead_letters", (("destination", "crm"),))] == 1
    assert got[("relay_destination_paused", (("destination", "crm"),))] == 1
    assert got[("relay_destination_paused", (("destination", "ops-slack"),))] == 0
    assert got[("relay_delivery_attempts_total", (("destination", "crm"), ("outcome", "permanent")))] == 1


def test_redis_unavailable_is_counted(settings, relay_config):
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    app = create_app(settings, relay_config, dead)
    client = app.test_client()
    assert signed_post(client, body("WMS_LOADED", "s1", 0)).status_code == 503
    registry_text = _local_counts(app)
    assert registry_text[("relay_ingest_requests_total", (("result", "unavailable"), ("source", "wms")))] == 1


def _local_counts(app) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    app.extensions["relay.metrics"].register(registry)
    return samples(generate_latest(registry).decode())


def test_with_no_token_set_metrics_is_404(client):
    response = client.get("/metrics", headers=AUTH)
    assert (response.status_code, response.json) == (404, NOT_FOUND)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}]
)
def test_with_the_admin_token_a_stranger_gets_401(relay, headers):
    response = relay.client.get("/metrics", headers=headers)
    assert (response.status_code, response.json) == (401, UNAUTHORIZED)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def _app_with(env_extra: dict, redis_server, config_path, redis):
    settings = Settings.from_env({"REDIS_URL": redis_server.url, "RELAY_CONFIG": str(config_path), **env_extra})
    return create_app(settings, load_config(str(config_path), CONFIG_ENV, settings), redis)


def test_metrics_token_replaces_the_admin_token(redis_server, config_path, redis):
    app = _app_with(
        {"METRICS_TOKEN": METRICS_TOKEN, "RELAY_ADMIN_TOKEN": ADMIN_TOKEN}, redis_server, config_path, redis
    )
    client = app.test_client()
    assert client.get("/metrics", headers=AUTH).status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert METRICS_TOKEN not in text and ADMIN_TOKEN not in text and CRM_SECRET not in text


def test_metrics_token_public_serves_it_without_a_token(redis_server, config_path, redis):
    app = _app_with({"METRICS_TOKEN": "public"}, redis_server, config_path, redis)
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert "relay_inbox_entries 0.0" in response.get_data(as_text=True)


def test_a_short_metrics_token_is_refused_at_start():
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"REDIS_URL": "redis://localhost:6379/0", "METRICS_TOKEN": "short"})
    assert raised.value.problems == [
        "METRICS_TOKEN: must be 'public' (no token) or at least 24 characters (a random token)"
    ]


def test_a_destination_falling_behind_shows_its_oldest_wait(relay, http_peer):
    assert signed_post(relay.client, body("WMS_LOADED", "s-behind", 0)).status_code == 202
    Drain(relay.rt, name="tests").drain_all()  # fanned out; nothing sent yet
    time.sleep(0.2)
    got = scrape(relay.client)
    assert got[("relay_destination_waiting", (("destination", "crm"),))] == 1
    assert got[("relay_destination_oldest_wait_seconds", (("destination", "crm"),))] >= 0.2
    relay.drain()
    got = scrape(relay.client)
    assert got[("relay_destination_oldest_wait_seconds", (("destination", "crm"),))] == 0
