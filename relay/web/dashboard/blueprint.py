"""The dashboard's blueprint under /admin/ui: how its pages are rendered (every value shown with
its invisible formatting characters made visible), the URL converter of the ids its paths carry,
the headers every one of its answers carries, its error pages, and the catch-all that keeps every
/admin/ui path here (away from the admin API's own catch-all, relay/web/admin.py)."""

import functools
import logging
import re
import sys
import unicodedata
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, get_flashed_messages, render_template, request
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.routing import BaseConverter

from config.model import RelayConfig
from config.settings import Settings
from relay.web.routes import METHODS, other_methods

PREFIX = "/admin/ui"
bp = Blueprint("dashboard", __name__, url_prefix=PREFIX, template_folder="templates", static_folder="static")
log = logging.getLogger("relay.web.dashboard")

# No inline style or script anywhere: the one stylesheet is served from here.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show event bodies and dead letters: no shared or browser cache may keep them.
    "Cache-Control": "no-store",
}
UNAVAILABLE = "redis is unavailable; retry later"


class IdConverter(BaseConverter):
    """`<id:name>`: an id chosen by a sender (event and session ids) or a destination's name.

    Written into a URL with every "/" percent-encoded (and "?", "#", "%", "\\"), so that an id
    such as "x/../../crm/wms:victim" stays one path segment that a browser cannot normalise into
    another page's address. It matches slashes, as `path` does: the server decodes the path
    before routing.
    """

    part_isolating = False
    regex = "[^/].*?"
    weight = 200

    def to_url(self, value: Any) -> str:
        """`value` quoted for a path with "/" encoded too; ":" and "@" stay as they read."""
        return quote(str(value), safe="!$&'()*+,:;=@")


@functools.cache
def _invisible() -> re.Pattern[str]:
    """Every character of Unicode's category Cf (bidi controls, zero-width ones...): made once."""
    found = (chr(c) for c in range(128, sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf")
    return re.compile("[" + re.escape("".join(found)) + "]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible(value: Any) -> Any:
    """The Jinja finalize of the app: a string's invisible formatting characters (category Cf,
    such as U+202E, U+2066, U+200B) as escapes ("\\u202e") that cannot reorder or hide what an
    operator reads. Markup (a macro's or include's output) was made of values already shown so."""
    if not isinstance(value, str) or value.isascii() or hasattr(value, "__html__"):
        return value
    return _invisible().sub(_escape, value)


class PageError(Exception):
    """An error page: its status and the sentence shown in `<p class="error" id="error">`."""

    def __init__(self, status: int, message: str, title: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title


def redis() -> Redis:
    """The app's Redis client."""
    return current_app.extensions["relay.redis"]


def config() -> RelayConfig:
    """The loaded config file."""
    return current_app.config["RELAY"]


def settings() -> Settings:
    """The environment's settings."""
    return current_app.config["RELAY_SETTINGS"]


def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render one of the dashboard's templates, with the notices left by the last action."""
    notices = get_flashed_messages()
    response = current_app.make_response(render_template(f"dashboard/{template}", notices=notices, **context))
    response.status_code = status
    return response


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.errorhandler(PageError)
def _page_error(exc: PageError) -> Response:
    return page("error.html", exc.status, error=exc.message, title=exc.title or f"Error {exc.status}")


def unavailable() -> Response:
    """The 503 page answered while Redis cannot be reached."""
    response = page("error.html", 503, error=UNAVAILABLE, title="Redis is unavailable")
    response.headers["Retry-After"] = "5"
    return response


@bp.errorhandler(RedisError)
def _redis_error(exc: RedisError) -> Response:
    log.error("dashboard: %s %r: redis error: %s", request.method, request.path, exc)
    return unavailable()


@bp.route("/<path:rest>", methods=METHODS)
def elsewhere(rest: str) -> Response:
    """Any other path or method under /admin/ui (reached only once logged in): 405 naming the
    methods the path takes, or 404."""
    allowed = other_methods()
    if allowed:
        response = page(
            "error.html", 405, error=f"method not allowed; this page accepts {', '.join(allowed)}", title="Error 405"
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response
    raise PageError(404, f"no such page: {PREFIX}/{rest}", "Not found")
