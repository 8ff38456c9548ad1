"""The admin API's front: nothing under /admin is said before the token is checked (issue 11, #7)."""

import logging

import pytest

from relay.store import dead_letters
from tests.conftest import ADMIN_TOKEN
from tests.relay.store.test_dead_letters import make_letters

UNAUTHORIZED = {"error": "unauthorized", "detail": "missing or invalid bearer token"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/admin/dead-letters"),  # a route, another method: was 405 with an Allow header
        ("put", "/admin/dead-letters/replay"),
        ("get", "/admin/dead-letters/purge"),
        ("get", "/admin/no-such-thing"),  # was 404: told a stranger which paths exist
        ("post", "/admin"),
    ],
)
def test_with_the_admin_api_off_every_method_and_path_under_admin_is_404(client, method, path):
    response = getattr(client, method)(path, headers={"Authorization": "Bearer anything"})
    assert (response.status_code, response.json) == (
        404,
        {"error": "not_found", "detail": "no such endpoint; webhooks are received at POST /hooks/<source>"},
    )
    assert "Allow" not in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [("delete", "/admin/dead-letters"), ("put", "/admin/dead-letters/replay"), ("get", "/admin/no-such-thing")],
)
@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef"])
def test_with_the_admin_api_on_a_stranger_gets_401_whatever_the_method_or_path(relay, method, path, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = getattr(relay.client, method)(path, headers=headers)
    assert (response.status_code, response.json) == (401, UNAUTHORIZED)
    assert "Allow" not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/admin/dead-letters", "GET, HEAD, OPTIONS"),
        ("get", "/admin/dead-letters/replay", "OPTIONS, POST"),
        ("patch", "/admin/dead-letters/crm/wms:s:1", "GET, HEAD, OPTIONS"),
    ],
)
def test_with_the_token_a_wrong_method_is_405_naming_what_the_path_takes(relay, method, path, allowed):
    response = getattr(relay.client, method)(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (response.status_code, response.json) == (
        405,
        {"error": "method_not_allowed", "detail": f"method not allowed; this endpoint accepts {allowed}"},
    )
    assert response.headers["Allow"] == allowed


def test_with_the_token_an_unknown_path_is_404_naming_it(relay):
    response = relay.client.get("/admin/nope", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (response.status_code, response.json) == (
        404,
        {"error": "not_found", "detail": "no such endpoint: /admin/nope"},
    )


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        # Found by the contract fuzz (issue 11): each was a 500, a lost letter or a real replay.
        ("/admin/dead-letters/purge", b"[" * 100_000 + b"]" * 100_000, "the body must be a JSON object"),
        ("/admin/dead-letters/replay", b'{"all": true, "rate": NaN}', "the body must be a JSON object"),
        (
            "/admin/dead-letters/replay",
            b'{"all": true, "rate": 1e-300}',
            "rate: must be a number of replays per second from 0.01 to 1000.0, got 1e-300",
        ),
        (
            "/admin/dead-letters/replay",
            b'{"all": true, "rate": 1e999}',
            "rate: must be a number of replays per second from 0.01 to 1000.0, got inf",
        ),
        (
            "/admin/dead-letters/replay",
            b'{"all": true, "dry_run": "true"}',
            "dry_run: must be true or false, got 'true'",
        ),
        ("/admin/dead-letters/replay", b'{"dry_run": true, "force": 1}', "force: must be true or false, got 1"),
        ("/admin/dead-letters/purge", b'{"all": "yes"}', "all: must be true or false, got 'yes'"),
    ],
)
def test_a_bad_admin_body_is_400_and_changes_nothing(relay, path, body, detail):
    make_letters(relay, 2)
    response = relay.client.post(
        path, data=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    )
    assert (response.status_code, response.json) == (400, {"error": "invalid_request", "detail": detail})
    assert len(dead_letters.find(relay.redis, dead_letters.Filter())) == 2


def test_no_admin_answer_is_cached(relay):
    make_letters(relay, 1)
    for headers in ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, {}):  # an answer and a refusal
        response = relay.client.get("/admin/dead-letters", headers=headers)
        assert response.headers["Cache-Control"] == "no-store", response.status_code


def test_a_refusal_logs_a_path_with_a_newline_as_its_escape(relay, caplog):
    caplog.set_level(logging.INFO)
    relay.client.get("/admin/x%0aWARNING forged: login from 10.6.6.6")
    assert "rejected GET /admin/x\\nWARNING forged: login from 10.6.6.6 from 127.0.0.1: " in caplog.text
    assert not any("\n" in record.getMessage() for record in caplog.records)
