"""What the session cookie is signed with (a random secret in Redis mixed with the admin token),
what a logout ends (the session id, revoked in Redis), which of several relay_admin cookies
counts, and the dashboard without Redis (a 503 page, no cookie)."""

import hashlib
import hmac
import logging

import pytest
from flask.json.tag import TaggedJSONSerializer
from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devtools.local_redis import free_port
from relay.store import destination_state, keys
from relay.web.app import create_app
from tests.conftest import ADMIN_TOKEN
from tests.relay.web.dashboard.conftest import csrf_of, login

UNAVAILABLE = '<p class="error" id="error">redis is unavailable; retry later</p>'


def serializer(key: bytes) -> URLSafeTimedSerializer:
    """A reader of the dashboard's cookie signed with `key`, as relay/web/dashboard/auth.py signs it."""
    return URLSafeTimedSerializer(
        key,
        salt="relay-dashboard-session",
        serializer=TaggedJSONSerializer(),
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
    )


def key_of(secret: bytes, token: str = ADMIN_TOKEN) -> bytes:
    return hmac.new(secret, token.encode() + b"\0relay dashboard session", hashlib.sha256).digest()


def unreachable() -> Redis:
    """A client of a port where no server listens, that gives up at once (no retries)."""
    return Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


def cookie_of(client) -> str:
    cookie = client.get_cookie("relay_admin", path="/admin/ui")
    assert cookie is not None
    return cookie.value


def another_app(relay):
    """A second app on the same Redis, settings and config: another gunicorn worker or process."""
    app = relay.client.application
    return create_app(app.config["RELAY_SETTINGS"], app.config["RELAY"], relay.redis)


def with_cookie(app, value: str):
    client = app.test_client()
    client.set_cookie("relay_admin", value, path="/admin/ui")
    return client


def test_even_the_login_pages_cookie_cannot_test_guesses_of_the_token(relay):
    relay.client.get("/admin/ui/login")
    anonymous = cookie_of(relay.client)  # what anyone gets without the token
    secret = relay.redis.get(keys.DASHBOARD_SECRET)
    assert isinstance(secret, bytes) and len(secret) == 32
    assert relay.redis.ttl(keys.DASHBOARD_SECRET) == -1  # no expiry
    assert set(serializer(key_of(secret)).loads(anonymous)) == {"csrf"}
    token_alone = hmac.new(ADMIN_TOKEN.encode(), b"relay dashboard session", hashlib.sha256).digest()
    for key in (token_alone, key_of(b"", ADMIN_TOKEN), ADMIN_TOKEN.encode()):
        with pytest.raises(BadSignature):
            serializer(key).loads(anonymous)


def test_a_login_holds_a_random_session_id(relay):
    login(relay.client)
    other = relay.client.application.test_client()
    login(other)
    secret = relay.redis.get(keys.DASHBOARD_SECRET)
    first, second = (serializer(key_of(secret)).loads(cookie_of(c)) for c in (relay.client, other))
    assert set(first) == {"_permanent", "login_at", "csrf", "sid"}
    assert isinstance(first["sid"], str) and len(first["sid"]) >= 20 and first["sid"] != second["sid"]


def test_two_apps_on_one_redis_accept_each_others_cookies(relay):
    login(relay.client)
    other = another_app(relay)
    assert with_cookie(other, cookie_of(relay.client)).get("/admin/ui/").status_code == 200
    there = other.test_client()
    assert login(there).status_code == 303
    assert with_cookie(relay.client.application, cookie_of(there)).get("/admin/ui/").status_code == 200
    assert other.extensions["relay.dashboard.secret"] == relay.client.application.extensions["relay.dashboard.secret"]


def test_a_cookie_signed_with_another_secret_is_refused(relay):
    login(relay.client)
    cookie = cookie_of(relay.client)
    relay.redis.set(keys.DASHBOARD_SECRET, b"\x01" * 32)
    assert with_cookie(another_app(relay), cookie).get("/admin/ui/").status_code == 303  # read the new one
    # The app that cached the old secret sees it changed on the next login check, and ends the login.
    response = relay.client.get("/admin/ui/")
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/ui/login?next=/admin/ui/")
    assert relay.client.application.extensions["relay.dashboard.secret"] == b"\x01" * 32
    assert login(relay.client).status_code == 303
    assert relay.client.get("/admin/ui/").status_code == 200


def test_flushing_redis_logs_everyone_out_and_a_new_secret_is_made(relay):
    login(relay.client)
    before = relay.redis.get(keys.DASHBOARD_SECRET)
    relay.redis.flushall()
    assert relay.client.get("/admin/ui/").status_code == 303
    after = relay.redis.get(keys.DASHBOARD_SECRET)
    assert isinstance(after, bytes) and len(after) == 32 and after != before
    assert login(relay.client).status_code == 303
    assert with_cookie(another_app(relay), cookie_of(relay.client)).get("/admin/ui/").status_code == 200


def test_a_cookie_copied_before_the_logout_is_dead_after_it(ui, caplog):
    caplog.set_level(logging.DEBUG)
    copied = cookie_of(ui.client)
    page = ui.client.get("/admin/ui/destinations").text
    csrf = csrf_of(page)
    sid = serializer(key_of(ui.redis.get(keys.DASHBOARD_SECRET))).loads(copied)["sid"]
    assert ui.client.post("/admin/ui/logout", data={"csrf_token": csrf}).status_code == 303
    revoked = keys.dashboard_revoked_key(sid)
    assert revoked == f"relay:dashboard:revoked:{sid}"
    assert ui.redis.get(revoked) == b"1"
    assert 12 * 3600 - 60 < ui.redis.ttl(revoked) <= 12 * 3600  # what was left of the login

    replayed = with_cookie(ui.client.application, copied)
    response = replayed.get("/admin/ui/destinations")
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/ui/login?next=/admin/ui/destinations")
    post = replayed.post("/admin/ui/destinations/crm/pause", data={"csrf_token": csrf})
    assert (post.status_code, post.headers["Location"]) == (303, "/admin/ui/login")
    assert destination_state.get(ui.redis, "crm").paused is None
    assert "dashboard: paused" not in caplog.text


def test_a_logout_ends_only_its_own_login(ui):
    other = ui.client.application.test_client()
    login(other)
    page = ui.client.get("/admin/ui/").text
    ui.client.post("/admin/ui/logout", data={"csrf_token": csrf_of(page)})
    assert other.get("/admin/ui/").status_code == 200


def test_of_two_relay_admin_cookies_a_login_counts(relay):
    stranger = relay.client.application.test_client()
    stranger.get("/admin/ui/login")
    tossed = cookie_of(stranger)  # valid, signed by us, but no login: what a sibling subdomain could set
    login(relay.client)
    mine = cookie_of(relay.client)
    bare = relay.client.application.test_client(use_cookies=False)
    for header in (
        f"relay_admin={tossed}; relay_admin={mine}",
        f"relay_admin={mine}; relay_admin={tossed}",
        f"relay_admin=forged.value.x; relay_admin={mine}",
    ):
        assert bare.get("/admin/ui/", headers={"Cookie": header}).status_code == 200, header
    response = bare.get("/admin/ui/", headers={"Cookie": f"relay_admin={tossed}; relay_admin=forged"})
    assert response.status_code == 303


@pytest.fixture
def no_redis(relay):
    """relay's app with a Redis client pointed at a port where no server listens."""
    app = relay.client.application
    down = unreachable()
    yield create_app(app.config["RELAY_SETTINGS"], app.config["RELAY"], down)
    down.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/admin/ui/login"), ("post", "/admin/ui/login"), ("get", "/admin/ui/"), ("post", "/admin/ui/logout")],
)
def test_without_redis_the_dashboard_is_a_503_page_and_sets_no_cookie(no_redis, caplog, method, path):
    caplog.set_level(logging.DEBUG)
    client = no_redis.test_client()
    client.set_cookie("relay_admin", "some.old.cookie", path="/admin/ui")
    response = getattr(client, method)(path, data={"token": ADMIN_TOKEN} if method == "post" else None)
    assert response.status_code == 503
    assert UNAVAILABLE in response.text and "<title>Redis is unavailable · relay dashboard</title>" in response.text
    assert response.headers["Retry-After"] == "5"
    assert "Set-Cookie" not in response.headers
    assert f"dashboard: {method.upper()} '{path}': redis error reading the session secret:" in caplog.text
    assert "Traceback" not in response.text


def test_redis_lost_after_the_login_is_a_503_page_without_a_cookie(ui):
    app = ui.client.application
    down = unreachable()
    app.extensions["relay.redis"] = down
    try:
        for path in ("/admin/ui/", "/admin/ui/login"):
            response = ui.client.get(path)
            assert response.status_code == 503, path
            assert UNAVAILABLE in response.text
            assert "Set-Cookie" not in response.headers
    finally:
        app.extensions["relay.redis"] = ui.redis
        down.close()
    assert ui.client.get("/admin/ui/").status_code == 200  # the cookie outlived the outage


def test_a_refused_path_is_logged_quoted_so_it_cannot_forge_a_line(ui, caplog):
    caplog.set_level(logging.DEBUG)
    forged = "/admin/ui/destinations/crm\r2026-11-30 WARNING dashboard: login from 10.0.0.9/pause"
    response = ui.client.post(forged.replace("\r", "%0D").replace(" ", "%20"), data={"csrf_token": "x"})
    assert response.status_code == 403
    (line,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert line == (
        "dashboard: refused POST '/admin/ui/destinations/crm\\r2026-11-30 WARNING dashboard: login from "
        "10.0.0.9/pause' from 127.0.0.1: missing or wrong CSRF token"
    )
    assert "\r" not in line
