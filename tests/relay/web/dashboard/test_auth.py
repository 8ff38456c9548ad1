"""Who gets in: the login form, the session cookie, CSRF and Origin checks, logout, and the
dashboard's absence without RELAY_ADMIN_TOKEN; the webhook ingest never gets a cookie."""

import logging
import time

import pytest

from config.secret import Secret
from relay.domain.samples import sample_session, to_body
from relay.store import destination_state
from tests.conftest import ADMIN_TOKEN, signed_post
from tests.relay.web.dashboard.conftest import CSRF_FAILED, csrf_of, login, post_form

PAGES = [
    "/admin/ui/",
    "/admin/ui/sessions",
    "/admin/ui/sessions/wms/s-1",
    "/admin/ui/events",
    "/admin/ui/events/wms:s-1:0",
    "/admin/ui/destinations",
    "/admin/ui/dead-letters",
    "/admin/ui/dead-letters/crm/wms:s-1:0",
    "/admin/ui/dead-letters/purge?destination=crm",
    "/admin/ui/no-such-page",
]
OFF = {"error": "not_found", "detail": "no such endpoint; webhooks are received at POST /hooks/<source>"}


def test_the_right_token_logs_in_and_sets_the_session_cookie_with_its_flags(relay, caplog):
    caplog.set_level(logging.DEBUG)
    response = login(relay.client)
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/ui/")
    (cookie,) = response.headers.getlist("Set-Cookie")
    parts = [p.strip() for p in cookie.split(";")]
    assert parts[0].startswith("relay_admin=")
    assert {"HttpOnly", "Secure", "SameSite=Strict", "Path=/admin/ui"} <= set(parts)
    assert any(p.startswith("Expires=") for p in parts)
    assert relay.client.get("/admin/ui/").status_code == 200
    assert "dashboard: login from 127.0.0.1" in caplog.text
    assert ADMIN_TOKEN not in caplog.text


def test_a_wrong_token_is_401_with_the_login_form_again_and_logs_no_token(relay, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-0123456789abcdef-secret"
    response = login(relay.client, wrong)
    assert response.status_code == 401
    assert '<p class="error" id="error">wrong admin token</p>' in response.text
    assert '<form id="login" method="post" action="/admin/ui/login">' in response.text
    assert wrong not in response.text and ADMIN_TOKEN not in response.text
    assert [r.levelno for r in caplog.records if "refused login" in r.getMessage()] == [logging.WARNING]
    assert wrong not in caplog.text and ADMIN_TOKEN not in caplog.text
    assert relay.client.get("/admin/ui/").status_code == 303  # still logged out


def test_the_login_page_has_the_contracts_form(relay):
    page = relay.client.get("/admin/ui/login").text
    assert '<form id="login" method="post" action="/admin/ui/login"' in page
    assert '<input type="password" name="token" id="token"' in page
    assert '<button type="submit" id="login-button">' in page
    assert csrf_of(page)
    assert "<nav>" not in page  # nothing to navigate to before a login


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_a_stranger_to_the_login_page(relay, path):
    response = relay.client.get(path)
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/ui/login?next=" + path.replace("?", "%3F").replace("=", "%3D")
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/admin/ui/logout",
        "/admin/ui/destinations/crm/pause",
        "/admin/ui/dead-letters/purge",
        "/admin/ui/dead-letters/crm/wms:s-1:0/replay",
    ],
)
def test_a_post_from_a_stranger_goes_to_the_login_page_and_changes_nothing(relay, path):
    response = relay.client.post(path, data={"destination": "crm", "csrf_token": "x"})
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/ui/login")
    assert destination_state.get(relay.redis, "crm").paused is None


def test_after_the_login_the_browser_comes_back_to_the_page_it_asked_for(relay):
    response = login(relay.client, next_="/admin/ui/events?code=API_ERROR")
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/ui/events?code=API_ERROR")


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/admin/ui/",
        "//evil.example/admin/ui/",
        "/\\evil.example/admin/ui/",
        "\\\\evil.example",
        "/admin/ui/../../evil",
        "/admin/ui/%2e%2e/%2e%2e/evil",
        "/admin/uievil",
        "/hooks/wms",
        "javascript:alert(1)",
        "/admin/ui/\r\nSet-Cookie: x=1",
    ],
)
def test_next_refuses_anything_but_a_dashboard_path(relay, target):
    page = relay.client.get("/admin/ui/login", query_string={"next": target}).text
    assert 'name="next"' not in page
    response = relay.client.post(
        "/admin/ui/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(page), "next": target}
    )
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/ui/")


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test_a_login_without_the_right_csrf_token_is_403_and_logs_nobody_in(relay, token):
    relay.client.get("/admin/ui/login")
    data = {"token": ADMIN_TOKEN, **({"csrf_token": token} if token is not None else {})}
    response = relay.client.post("/admin/ui/login", data=data)
    assert response.status_code == 403
    assert CSRF_FAILED in response.text
    assert relay.client.get("/admin/ui/").status_code == 303


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test_a_post_without_the_right_csrf_token_is_403_and_changes_nothing(ui, token, caplog):
    caplog.set_level(logging.DEBUG)
    data = {"csrf_token": token} if token is not None else {}
    response = ui.client.post("/admin/ui/destinations/crm/pause", data=data)
    assert response.status_code == 403
    assert CSRF_FAILED in response.text
    assert destination_state.get(ui.redis, "crm").paused is None
    assert "dashboard: refused POST '/admin/ui/destinations/crm/pause' from 127.0.0.1: missing or wrong CSRF token" in (
        caplog.text
    )
    assert ui.client.post("/admin/ui/logout", data=data).status_code == 403
    assert ui.client.get("/admin/ui/").status_code == 200  # still logged in


def test_the_csrf_token_of_another_session_is_refused(relay, relay_factory):
    other = relay.client.application.test_client()
    login(other)
    login(relay.client)
    foreign = csrf_of(other.get("/admin/ui/").text)
    response = relay.client.post("/admin/ui/destinations/crm/pause", data={"csrf_token": foreign})
    assert response.status_code == 403
    assert destination_state.get(relay.redis, "crm").paused is None


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost.evil.example"])
def test_a_post_from_another_origin_is_refused_even_with_the_csrf_token(ui, origin):
    response = post_form(ui.client, "/admin/ui/destinations/crm/pause", headers={"Origin": origin})
    assert response.status_code == 403
    assert CSRF_FAILED in response.text
    assert destination_state.get(ui.redis, "crm").paused is None


def test_a_post_from_this_origin_is_done(ui):
    response = post_form(ui.client, "/admin/ui/destinations/crm/pause", headers={"Origin": "http://localhost"})
    assert response.status_code == 303
    assert destination_state.get(ui.redis, "crm").paused == "paused from the dashboard"


def test_logout_clears_the_cookie_and_the_session(ui, caplog):
    caplog.set_level(logging.DEBUG)
    page = ui.client.get("/admin/ui/").text
    assert '<form id="logout" method="post" action="/admin/ui/logout">' in page
    assert 'id="logout-button"' in page
    response = ui.client.post("/admin/ui/logout", data={"csrf_token": csrf_of(page)})
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/ui/login")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("relay_admin=;") and "Path=/admin/ui" in cookie and "Expires=Thu, 01 Jan 1970" in cookie
    assert ui.client.get("/admin/ui/").status_code == 303
    assert "dashboard: logout from 127.0.0.1" in caplog.text


def test_an_old_cookie_stops_working_when_the_token_changes(ui, relay_factory):
    cookie = ui.client.get_cookie("relay_admin", path="/admin/ui")
    assert cookie is not None
    assert ui.client.get("/admin/ui/").status_code == 200
    settings = ui.client.application.config["RELAY_SETTINGS"]
    ui.client.application.config["RELAY_SETTINGS"] = type(settings)(
        **{**settings.__dict__, "admin_token": Secret("another-admin-token-0123456789abcdef")}
    )
    assert ui.client.get("/admin/ui/").status_code == 303


@pytest.mark.parametrize("path", [*PAGES, "/admin/ui", "/admin/ui/login", "/admin/ui/static/dashboard.css"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_without_an_admin_token_every_dashboard_path_is_404_like_the_rest_of_admin(client, path, method):
    response = getattr(client, method)(path)
    assert (response.status_code, response.json) == (404, OFF)
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("path", ["/admin/ui/login", "/admin/ui/", "/admin/ui/static/dashboard.css", "/admin/ui/x"])
def test_dashboard_answers_carry_the_security_headers(ui, path):
    response = ui.client.get(path)
    assert response.status_code in (200, 404)
    assert response.headers["Content-Security-Policy"] == (
        "default-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_have_no_inline_style_or_script(ui):
    for path in ("/admin/ui/", "/admin/ui/sessions", "/admin/ui/events", "/admin/ui/destinations"):
        page = ui.client.get(path).text
        assert "<script" not in page and "style=" not in page and "<style" not in page, path


def test_webhooks_never_get_a_cookie_even_from_a_logged_in_browser(ui):
    ui.client.set_cookie("relay_admin", ui.client.get_cookie("relay_admin", path="/admin/ui").value, path="/")
    for event in sample_session(("WMS_LOADED",)):
        response = signed_post(ui.client, to_body(event))
        assert response.status_code == 202
        assert "Set-Cookie" not in response.headers
        assert "Cookie" not in response.headers.get("Vary", "")
    assert "Set-Cookie" not in ui.client.get("/healthz").headers
    admin = ui.client.get("/admin/stats", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status_code == 200 and "Set-Cookie" not in admin.headers


def test_an_unknown_dashboard_path_is_a_404_page_once_logged_in(ui):
    response = ui.client.get("/admin/ui/no-such-page")
    assert response.status_code == 404
    assert '<p class="error" id="error">no such page: /admin/ui/no-such-page</p>' in response.text
    assert "<nav>" in response.text


def test_a_wrong_method_on_a_dashboard_path_is_a_405_page(ui):
    response = ui.client.delete("/admin/ui/destinations")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert '<p class="error" id="error">method not allowed; this page accepts GET, HEAD, OPTIONS</p>' in response.text
    get = ui.client.get("/admin/ui/destinations/crm/pause")
    assert (get.status_code, get.headers["Allow"]) == (405, "OPTIONS, POST")


def test_the_prefix_without_its_slash_leads_to_the_overview(ui):
    response = ui.client.get("/admin/ui")
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/ui/")


def test_the_json_admin_api_is_unchanged_beside_the_dashboard(ui):
    assert ui.client.get("/admin/ui-not").status_code == 401
    assert ui.client.get("/admin/stats").status_code == 401


def test_a_login_lasts_twelve_hours_from_the_login_not_from_the_last_page(ui):
    cookie = ui.client.get_cookie("relay_admin", path="/admin/ui")
    assert cookie.expires is not None
    assert abs(cookie.expires.timestamp() - (time.time() + 12 * 3600)) < 60
    assert "Set-Cookie" not in ui.client.get("/admin/ui/sessions").headers  # seeing a page extends nothing
    with ui.client.session_transaction("/admin/ui/") as session:
        session["login_at"] = time.time() - 12 * 3600 - 1
    assert ui.client.get("/admin/ui/").status_code == 303
