"""GET /admin/events, /admin/events/<id> and /admin/stats: the content of `relay events
list|show --json` and `relay stats --json`, behind the admin token, on a session built through the
real path (tests/relay/cli/test_sessions.py's failed_session)."""

# The fixtures `relay` and `env` are test_sessions.py's, imported: a test naming one is no redefinition.
# ruff: noqa: F811

import json

from click.testing import CliRunner

from relay.cli.main import main
from tests.relay.cli.test_sessions import FAILED_MID, env, failed_session, relay  # noqa: F401 (fixtures)
from tests.relay.web.test_admin_sessions import AUTH, get


def cli_json(env, *args: str) -> dict:
    result = CliRunner().invoke(main, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_list_answers_what_the_cli_prints_with_the_same_filters(relay, env):
    failed_session(relay)
    for query, args in [
        ({}, ()),
        ({"outcome": "failed"}, ("--outcome", "failed")),
        ({"session": "s-failed", "limit": "3"}, ("--session", "s-failed", "--limit", "3")),
        (
            {"measurement": FAILED_MID, "code": "CONSTRAINT_VIOLATION"},
            ("--measurement", FAILED_MID, "--code", "CONSTRAINT_VIOLATION"),
        ),
        ({"destination": "ops-email", "since": "1h"}, ("--destination", "ops-email", "--since", "1h")),
        ({"session": "", "code": ""}, ()),  # an empty value is no filter
    ]:
        response = get(relay, "/admin/events", **query)
        assert response.status_code == 200, response.json
        assert response.json == cli_json(env, "events", "list", *args), query
    failed = get(relay, "/admin/events", outcome="failed").json
    assert (failed["count"], failed["more"], [e["id"] for e in failed["events"]]) == (1, False, ["wms:s-failed:8"])


def test_show_answers_the_event_with_its_body_rules_and_attempts(relay, env):
    failed_session(relay)
    response = get(relay, "/admin/events/wms:s-failed:8")
    assert response.status_code == 200, response.json
    assert response.json == cli_json(env, "events", "show", "wms:s-failed:8")
    assert response.json["rules"] == ["failed-measurements", "everything-downstream"]
    assert sorted((a["destination"], a["status"]) for a in response.json["attempts"]) == [
        ("crm", "HTTP 200"),
        ("ops-email", "SMTP 550"),
        ("ops-slack", "HTTP 503"),
    ]
    assert json.loads(response.json["body"])["sequence"] == 8
    assert get(relay, "/admin/events/wms:s-failed:session").json["code"] == "SESSION_FAILED"


def test_unknown_events_and_bad_filters_are_refused_with_the_reason(relay):
    assert get(relay, "/admin/events/wms:nobody:1").status_code == 404
    assert get(relay, "/admin/events/wms:nobody:1").json == {
        "error": "not_found",
        "detail": "no event 'wms:nobody:1' in the event log (kept 7d, at most 10,000 events a session; an id is "
        "<source>:<sessionId>:<sequence>, or <source>:<sessionId>:session)",
    }
    for query, detail in [
        (
            {"sessionId": "x"},
            "unknown key 'sessionId' (allowed: 'session', 'measurement', 'code', 'destination', 'outcome', 'since', 'limit')",
        ),
        (
            {"outcome": "lost"},
            "outcome: must be one of 'failed', 'retrying', 'pending', 'delivered', 'grouped', 'unrouted', got 'lost'",
        ),
        ({"since": "soon"}, "since: "),
        ({"limit": "0"}, "limit: must be a whole number from 1 to 1000, got '0'"),
    ]:
        response = get(relay, "/admin/events", **query)
        assert response.status_code == 400 and response.json["error"] == "invalid_filter", query
        assert response.json["detail"].startswith(detail), response.json
    response = get(relay, "/admin/stats", window="week")
    assert (response.status_code, response.json["detail"]) == (400, "unknown key 'window' (this endpoint takes none)")


def test_stats_answer_what_the_cli_prints(relay, env):
    failed_session(relay)
    response = get(relay, "/admin/stats")
    assert response.status_code == 200, response.json
    answered, printed = response.json, cli_json(env, "stats")
    for figures in (answered, printed):  # a moment apart
        for window in ("hour", "day"):
            del figures[window]["since"]
        del figures["at"]
    assert answered == printed
    assert answered["hour"]["destinations"]["ops-email"]["dead_letters"] == 1


def test_every_route_needs_the_token(relay):
    for path in ("/admin/events", "/admin/events/wms:s-failed:8", "/admin/stats"):
        assert relay.client.get(path).status_code == 401
        assert relay.client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert relay.client.post(path, headers=AUTH).status_code == 405
