"""The dashboard's blueprint under /admin/ui: how its pages are rendered, the headers every one
of its answers carries, its error pages, and the catch-all that keeps every /admin/ui path here
(away from the admin API's own catch-all, relay/web/admin.py)."""

import logging
from typing import Any

from flask import Blueprint, Response, current_app, get_flashed_messages, render_template, request
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from config.model import RelayConfig
from config.settings import Settings

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
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


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


@bp.errorhandler(RedisError)
def _redis_error(exc: RedisError) -> Response:
    log.error("dashboard: %s %s: redis error: %s", request.method, request.path, exc)
    response = page("error.html", 503, error="redis is unavailable; retry later", title="Redis is unavailable")
    response.headers["Retry-After"] = "5"
    return response


@bp.route("/<path:rest>", methods=METHODS)
def elsewhere(rest: str) -> Response:
    """Any other path or method under /admin/ui (reached only once logged in): 405 naming the
    methods the path takes, or 404."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in METHODS:
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.append(method)
    if allowed:
        response = page(
            "error.html", 405, error=f"method not allowed; this page accepts {', '.join(allowed)}", title="Error 405"
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response
    raise PageError(404, f"no such page: {PREFIX}/{rest}", "Not found")
