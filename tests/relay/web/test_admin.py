"""The admin API's front: nothing under /admin is said before the token is checked (issue 11, #7)."""

import pytest

from tests.conftest import ADMIN_TOKEN

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
