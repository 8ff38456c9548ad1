"""Every HTTP error is JSON {"error": ..., "detail": ...}, produced here and nowhere else."""

import logging

from flask import Flask, Response, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from relay import logs

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error response: status, a stable machine-readable code, and a human-readable detail;
    `log_detail`, when given, is what the log says instead (a 401's precise cause, never answered)."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        headers: dict[str, str] | None = None,
        log_detail: str | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.log_detail = log_detail


# Werkzeug's own errors (routing, size limit) under our codes and wording; looked up by
# HTTPException.code, which is typed int | None.
_HTTP_ERRORS: dict[int | None, tuple[str, str]] = {
    404: ("not_found", "no such endpoint; webhooks are received at POST /hooks/<source>"),
    405: ("method_not_allowed", "method not allowed"),
    413: ("payload_too_large", "request body is too large"),
    500: ("internal_error", "internal error; retry later"),
}


def too_large(limit: int) -> ApiError:
    """The 413 for a body over `limit` bytes, however the excess was noticed."""
    return ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes")


def rejected(status: int, error: str, reason: str) -> None:
    """One log line for the request in hand when it is answered 4xx (a 5xx is logged where it
    happens: a Redis error at ERROR, a bug with its traceback)."""
    if 400 <= status < 500:
        logs.rejected(
            log,
            status,
            error,
            reason,
            method=request.method,
            path=request.path,
            remote=request.remote_addr,
            source=(request.view_args or {}).get("source"),
        )


def register(app: Flask) -> None:
    """Install the JSON error handlers on the app."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        rejected(exc.status, exc.error, exc.log_detail or exc.detail)
        response = jsonify(error=exc.error, detail=exc.detail)
        response.status_code = exc.status
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(RedisError)
    def _redis_error(exc: RedisError) -> Response:
        # Any route that finds Redis unreachable says so, instead of a bare 500.
        response = jsonify(error="unavailable", detail="redis is unavailable; retry later")
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        error, detail = _HTTP_ERRORS.get(exc.code, ("http_error", (exc.description or exc.name).lower()))
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or ()))
        if exc.code == 405:
            detail = f"method not allowed; this endpoint accepts {allowed}"
        if exc.code == 413:
            detail = too_large(app.config["RELAY"].ingest.max_body_bytes).detail
        rejected(exc.code or 500, error, detail)
        response = jsonify(error=error, detail=detail)
        response.status_code = exc.code or 500
        if allowed:
            response.headers["Allow"] = allowed
        return response
