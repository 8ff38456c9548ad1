"""GET /admin/sessions and /admin/sessions/<source>/<sessionId>: the content of `relay sessions
list|show --json`, behind the admin token, on sessions built through the real path (the builders
are tests/relay/cli/test_sessions.py's)."""

# The fixtures `relay` and `env` are test_sessions.py's, imported: a test naming one is no redefinition.
# ruff: noqa: F811

import json
import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from relay.cli.main import main
from relay.domain.scenarios import play
from relay.store import keys, sessions
from tests.conftest import ADMIN_TOKEN
from tests.relay.cli.test_sessions import (  # noqa: F401 (fixtures)
    FAILED_MID,
    T0,
    env,
    failed_session,
    post,
    relay,
    three_sessions,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def get(relay, path: str, **query: str):
    return relay.client.get(path, headers=AUTH, query_string=query)


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds" if when % 1 else "seconds")


def stamp(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def cli_json(env, *args) -> list[dict]:
    result = CliRunner().invoke(main, ["sessions", *args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_show_answers_the_session_with_its_timeline_and_deliveries(relay, env):
    failed_session(relay)
    response = get(relay, "/admin/sessions/wms/s-failed")
    assert response.status_code == 200, response.json
    session = sessions.read(relay.redis, "wms", "s-failed")
    received = {e.sequence: iso(e.received_at) for e in session.events}
    body = response.json
    ok = {"state": "ok", "attempt": 1, "last_status": None, "grouped_in": None}
    assert {k: v for k, v in body.items() if k != "timeline"} == {
        "source": "wms",
        "session_id": "s-failed",
        "outcome": "failed",
        "reason": "CONSTRAINT_VIOLATION",
        "reason_sequence": 8,
        "emitted": True,
        "outcome_event": {
            "id": "wms:s-failed:session",
            "event": "SESSION_FAILED",
            "emitted_at": iso(session.final["at"]),
            "deliveries": [{"destination": "ops-slack", **ok}, {"destination": "crm", **ok}],
        },
        "measurement_ids": [FAILED_MID],
        "started_at": "2023-11-14T22:13:20+00:00",
        "ended_at": "2023-11-14T22:13:44+00:00",
        "duration_seconds": 24,
        "first_received_at": received[0],
        "last_received_at": received[10],
        "last_snr": 1.4,
        "event_count": 9,
        "gaps": [[3, 4]],
        "out_of_order": 0,
        "late": 0,
        "duplicates": 0,
        "skipped": {},
    }
    assert [e["sequence"] for e in body["timeline"]] == [0, 1, 2, 5, 6, 7, 8, 9, 10]
    assert body["timeline"][6] == {
        "sequence": 8,
        "timestamp": stamp(T0 + 21),
        "offset_seconds": 21,
        "received_at": received[8],
        "event": "CONSTRAINT_VIOLATION",
        "severity": "ERROR",
        "measurement_id": FAILED_MID,
        "payload": {"constraint": "FACE_NOT_CENTERED"},
        "deliveries": [
            {
                "destination": "ops-slack",
                "state": "scheduled",
                "attempt": 2,
                "last_status": "HTTP 503",
                "grouped_in": None,
            },
            {"destination": "ops-email", "state": "dead", "attempt": 1, "last_status": "SMTP 550", "grouped_in": None},
            {"destination": "crm", **ok},
        ],
    }
    assert body["timeline"][0]["deliveries"] == [{"destination": "crm", **ok}]
    assert cli_json(env, "show", "s-failed") == [body]


def test_show_of_an_unknown_session_is_404(relay):
    response = get(relay, "/admin/sessions/wms/nobody")
    assert (response.status_code, response.json) == (
        404,
        {
            "error": "not_found",
            "detail": "no session 'nobody' at source 'wms' (a session is kept 7d after its last event)",
        },
    )


def test_a_session_id_with_a_slash_is_found_percent_encoded(relay):
    post(relay, play("camera-denied", "a/b c", T0))
    relay.drain()
    response = get(relay, "/admin/sessions/wms/a%2Fb%20c")
    assert (response.status_code, response.json["session_id"], response.json["event_count"]) == (200, "a/b c", 4)


def test_list_answers_what_the_cli_prints_as_json(relay, env):
    three_sessions(relay)
    response = get(relay, "/admin/sessions")
    assert response.status_code == 200
    body = response.json
    assert [(s["session_id"], s["outcome"], s["reason"], s["events"], s["gaps"]) for s in body["sessions"]] == [
        ("s-open", "in_progress", None, 3, 0),
        ("s-done", "completed", None, 13, 0),
        ("s-failed", "failed", "CONSTRAINT_VIOLATION", 9, 1),
    ]
    last = relay.redis.zscore(keys.SESSIONS, "wms:s-open")
    assert body["sessions"][0] == {
        "source": "wms",
        "session_id": "s-open",
        "last_event_at": iso(last),
        "outcome": "in_progress",
        "reason": None,
        "emitted": False,
        "events": 3,
        "gaps": 0,
        "measurement_id": None,
    }
    assert (body["count"], body["more"]) == (3, False)
    assert cli_json(env, "list") == [body]


def test_list_filters(relay):
    three_sessions(relay)
    relay.redis.zadd(keys.SESSIONS, {"wms:s-failed": time.time() - 3 * 3600})

    def ids(**query: str) -> list[str]:
        response = get(relay, "/admin/sessions", **query)
        assert response.status_code == 200, response.json
        return [s["session_id"] for s in response.json["sessions"]]

    assert ids(outcome="failed") == ["s-failed"]
    assert ids(outcome="completed", source="wms") == ["s-done"]
    assert ids(source="kiosk") == []
    assert ids(since="2h") == ["s-open", "s-done"]
    assert ids(since="4h", limit="1") == ["s-open"]
    assert get(relay, "/admin/sessions", limit="1").json["more"] is True
    assert ids(outcome="", since="", source="", limit="") == ["s-open", "s-done", "s-failed"]  # empty: no filter


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ({"session": "s-1"}, "unknown key 'session' (allowed: 'outcome', 'since', 'source', 'limit')"),
        (
            {"outcome": "lost"},
            "outcome: must be one of 'in_progress', 'completed', 'failed', 'abandoned', got 'lost'",
        ),
        (
            {"since": "yesterday"},
            "since: must be a duration like '30s', '5m', '7d' or a number of seconds, got 'yesterday'",
        ),
        ({"since": "-2h"}, "since: must be a duration like '30s', '5m', '7d' or a number of seconds, got '-2h'"),
        ({"limit": "0"}, "limit: must be a whole number from 1 to 1000, got '0'"),
        ({"limit": "1e3"}, "limit: must be a whole number from 1 to 1000, got '1e3'"),
        ({"limit": "9" * 5000}, f"limit: must be a whole number from 1 to 1000, got '{'9' * 5000}'"),
    ],
)
def test_bad_filters_are_400_invalid_filter(relay, query, detail):
    response = get(relay, "/admin/sessions", **query)
    assert (response.status_code, response.json) == (400, {"error": "invalid_filter", "detail": detail})


@pytest.mark.parametrize("path", ["/admin/sessions", "/admin/sessions/wms/s-failed"])
def test_without_the_token_it_is_401(relay, path):
    failed_session(relay, settle=False)
    response = relay.client.get(path)
    assert (response.status_code, response.json) == (
        401,
        {"error": "unauthorized", "detail": "missing or invalid bearer token"},
    )


def test_with_the_admin_api_off_it_is_404(client):
    response = client.get("/admin/sessions", headers=AUTH)
    assert (response.status_code, response.json["error"]) == (404, "not_found")
