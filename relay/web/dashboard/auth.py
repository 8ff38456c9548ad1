"""Who may use the dashboard: the admin token typed into the login form, then a signed session
cookie; a CSRF token in every form; the whole dashboard 404 (JSON, like the rest of /admin)
while RELAY_ADMIN_TOKEN is unset.

The cookie is Flask's signed session, signed with HMAC-SHA256(secret, admin token + context),
the secret 32 random bytes kept in Redis (relay:dashboard:secret, made once with SET NX, read once
per process and cached): a cookie, which anyone gets from the login page, cannot test guesses of
the token offline; every gunicorn worker and every process agree on the key without a setting of
its own; changing the token, or flushing Redis, logs everyone out. Without Redis the dashboard
answers 503 and sets no cookie.

A login carries a random session id (`sid`); its logout records it as revoked in Redis for what
was left of its lifetime, so a copy of the cookie stops working too. Only /admin/ui opens a
session (DashboardSessions.open_session): every other path, the webhook ingest above all, gets
Flask's null session and never a cookie.
"""

import hashlib
import hmac
import math
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard
from urllib.parse import quote, unquote, urlsplit

from flask import Flask, Request, current_app, g, redirect, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from flask.wrappers import Response as FlaskResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.wrappers import Response

from config.secret import Secret
from relay.store import keys
from relay.web.dashboard.blueprint import PREFIX, PageError, bp, log, page, unavailable
from relay.web.errors import ApiError

COOKIE = "relay_admin"
# A working day: an operator logs in once per shift, and a cookie left on a shared or lost
# laptop stops working by the next one. It counts from the login, not from the last page seen.
LIFETIME = timedelta(hours=12)
LOGIN = f"{PREFIX}/login"
HOME = f"{PREFIX}/"
CSRF_FAILED = "the form was stale or not from this dashboard (CSRF check failed); reload the page and try again"
WRONG_TOKEN = "wrong admin token"
# What /admin answers without RELAY_ADMIN_TOKEN (relay/web/admin.py): the dashboard does not exist.
OFF = "no such endpoint; webhooks are received at POST /hooks/<source>"
PUBLIC = {"dashboard.login", "dashboard.static", "dashboard.bare"}  # reached without a login


SECRET_BYTES = 32
CACHED = "relay.dashboard.secret"  # app.extensions: this process's copy of relay:dashboard:secret
CONTEXT = b"\0relay dashboard session"


def signing_key(secret: bytes, token: Secret) -> bytes:
    """The cookie's signing key: HMAC-SHA256(secret, token || context)."""
    return hmac.new(secret, token.reveal().encode() + CONTEXT, hashlib.sha256).digest()


def load_secret(app: Flask) -> bytes:
    """relay:dashboard:secret, made now if no process made it yet, and cached in `app`.

    Raises:
        RedisError: Redis could not be reached.
    """
    redis: Redis = app.extensions["relay.redis"]
    redis.set(keys.DASHBOARD_SECRET, secrets.token_bytes(SECRET_BYTES), nx=True)
    secret = redis.get(keys.DASHBOARD_SECRET)
    if not isinstance(secret, bytes):  # deleted between the two commands: the next request retries
        raise RedisError(f"{keys.DASHBOARD_SECRET} vanished as it was read")
    app.extensions[CACHED] = secret
    return secret


def _secret(app: Flask) -> bytes:
    cached = app.extensions.get(CACHED)
    return cached if isinstance(cached, bytes) else load_secret(app)


def _ours(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class DashboardSession(SecureCookieSession):
    """The dashboard's session; `unavailable` when Redis could not give the signing secret."""

    unavailable = False


class DashboardSessions(SecureCookieSessionInterface):
    """Flask's signed cookie session, for /admin/ui only, keyed by the secret and the admin token."""

    salt = "relay-dashboard-session"
    digest_method = staticmethod(hashlib.sha256)
    session_class = DashboardSession

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """A serializer signing with the key of the secret and the admin token; None without a token.

        Raises:
            RedisError: the secret is not cached yet and Redis could not be reached.
        """
        token = app.config["RELAY_SETTINGS"].admin_token
        if token is None:
            return None
        return URLSafeTimedSerializer(
            signing_key(_secret(app), token),
            salt=self.salt,
            serializer=self.serializer,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
        )

    def open_session(self, app: Flask, request: Request) -> DashboardSession | None:
        """The dashboard's session; None (Flask's null session, no cookie) on any other path.

        Of several relay_admin cookies (one tossed in by a sibling subdomain, say), a login is
        preferred to a session without one, and either to a cookie that does not verify."""
        if not _ours(request.path):
            return None
        try:
            serializer = self.get_signing_serializer(app)
        except RedisError as exc:
            log.error("dashboard: %s %r: redis error reading the session secret: %s", request.method, request.path, exc)
            down = self.session_class()
            down.unavailable = True
            return down
        if serializer is None:
            return None
        found: list[dict[str, Any]] = []
        for value in request.cookies.getlist(COOKIE):
            try:
                loaded = serializer.loads(value, max_age=int(LIFETIME.total_seconds()))
            except BadSignature:  # another key's, tampered with, or too old
                continue
            if isinstance(loaded, dict):
                found.append(loaded)
        found.sort(key=lambda data: not _is_time(data.get("login_at")))  # stable: logins first
        return self.session_class(found[0] if found else {})

    def save_session(self, app: Flask, session: SessionMixin, response: FlaskResponse) -> None:
        """Flask's, except that a session opened without Redis writes nothing, not even a deletion."""
        if isinstance(session, DashboardSession) and session.unavailable:
            return
        super().save_session(app, session, response)

    def get_cookie_name(self, app: Flask) -> str:
        """relay_admin."""
        return COOKIE

    def get_cookie_domain(self, app: Flask) -> str | None:
        """None: a host-only cookie."""
        return None

    def get_cookie_path(self, app: Flask) -> str:
        """The dashboard's prefix: the browser sends the cookie nowhere else."""
        return PREFIX

    def get_cookie_httponly(self, app: Flask) -> bool:
        """Always."""
        return True

    def get_cookie_secure(self, app: Flask) -> bool:
        """Always (browsers treat http://localhost as secure too)."""
        return True

    def get_cookie_samesite(self, app: Flask) -> str:
        """Strict: no other site's link or form carries it."""
        return "Strict"

    def get_expiration_time(self, app: Flask, session: SessionMixin) -> datetime | None:
        """LIFETIME after the login; a pre-login session (its CSRF token only) ends with the browser."""
        at = session.get("login_at")
        return datetime.fromtimestamp(at, UTC) + LIFETIME if _is_time(at) else None

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        """Only when it changed: seeing a page does not extend a login."""
        return session.modified


def _is_time(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def logged_in() -> bool:
    """Whether this request's session is a login younger than LIFETIME, not ended by a logout,
    and signed with the secret Redis holds now (one MGET, once per request).

    Raises:
        RedisError: Redis could not be reached (a second call in the request then says False).
    """
    if "dashboard_login" in g:
        return bool(g.dashboard_login)
    g.dashboard_login = False
    if isinstance(session, DashboardSession) and session.unavailable:
        return False
    at, sid = session.get("login_at"), session.get("sid")
    now = time.time()
    if not (_is_time(at) and now - LIFETIME.total_seconds() < at <= now + 60 and isinstance(sid, str)):
        return False
    secret, revoked = current_app.extensions["relay.redis"].mget(keys.DASHBOARD_SECRET, keys.dashboard_revoked_key(sid))
    if secret != current_app.extensions.get(CACHED):  # deleted or flushed since: every login ends
        load_secret(current_app)
        return False
    g.dashboard_login = revoked is None
    return bool(g.dashboard_login)


def csrf_token() -> str:
    """This session's CSRF token, made on first use (a pre-login session has one too)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


@bp.context_processor
def _template_helpers() -> dict:
    return {"csrf_token": csrf_token, "logged_in": logged_in()}


def safe_next(value: str | None) -> str | None:
    """`value` when it is a path of the dashboard on this host, else None: no open redirect."""
    if not value or len(value) > 2000 or any(c == "\\" or ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not _ours(parts.path):
        return None
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):
        return None
    return value


def login_url(target: str | None = None) -> str:
    """The login page, coming back to `target` after it."""
    return f"{LOGIN}?next={quote(target, safe='/:@')}" if target else LOGIN


def refuse(why: str) -> PageError:
    """A refused POST: logged with the reason (never the form), answered with the CSRF page."""
    log.warning("dashboard: refused %s %r from %s: %s", request.method, request.path, request.remote_addr, why)
    return PageError(403, CSRF_FAILED, "Form refused")


def check_form() -> None:
    """A POST must come from this host's page (Origin, when the browser says it) and carry this
    session's CSRF token."""
    origin = request.headers.get("Origin")
    # The host, not the scheme: TLS may end at a router in front, so the app sees http while the
    # browser says https. "null" (a sandboxed or privacy-stripped origin) has no host and is refused.
    if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
        raise refuse(f"Origin {origin!r} is not this host")
    expected = session.get("csrf")
    given = request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise refuse("missing or wrong CSRF token")


@bp.before_request
def _guard() -> Response | None:
    if current_app.config["RELAY_SETTINGS"].admin_token is None:
        raise ApiError(404, "not_found", OFF)
    if isinstance(session, DashboardSession) and session.unavailable and request.endpoint != "dashboard.static":
        return unavailable()
    if request.endpoint in PUBLIC:
        return None
    if not logged_in():
        if request.method in ("GET", "HEAD"):
            query = request.query_string.decode("latin-1")
            return redirect(login_url(request.path + (f"?{query}" if query else "")), 303)
        return redirect(LOGIN, 303)  # nothing is done; the form must be sent again after a login
    if request.method == "POST":
        check_form()
    return None


@bp.route("", methods=("GET", "HEAD"))
def bare() -> Response:
    """/admin/ui without its slash: the overview."""
    return redirect(HOME, 303)


@bp.route("/login", methods=("GET", "POST"))
def login() -> Response:
    """The login form; posted, the token is checked in constant time and a session begins."""
    target = safe_next(request.values.get("next"))
    if request.method != "POST":
        return page("login.html", next=target)
    check_form()
    token = current_app.config["RELAY_SETTINGS"].admin_token
    given = request.form.get("token", "")
    if not hmac.compare_digest(given.encode(), token.reveal().encode()):
        log.warning("dashboard: refused login from %s: wrong admin token", request.remote_addr)
        return page("login.html", 401, error=WRONG_TOKEN, next=target)
    # Signed with the secret Redis holds now, not a copy cached before a flush.
    load_secret(current_app)
    # A new session: nothing from before the login (its CSRF token included) carries over.
    session.clear()
    session["login_at"] = time.time()
    session["sid"] = secrets.token_urlsafe(16)
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = True
    log.warning("dashboard: login from %s", request.remote_addr)
    return redirect(target or HOME, 303)


@bp.post("/logout")
def logout() -> Response:
    """End the session: its id is revoked in Redis until it would have expired, and the cookie is
    deleted."""
    at, sid = session.get("login_at"), session.get("sid")
    if _is_time(at) and isinstance(sid, str):  # always, past the guard
        left = math.ceil(at + LIFETIME.total_seconds() - time.time())
        current_app.extensions["relay.redis"].set(keys.dashboard_revoked_key(sid), "1", ex=max(left, 1))
    session.clear()
    log.warning("dashboard: logout from %s", request.remote_addr)
    return redirect(LOGIN, 303)
