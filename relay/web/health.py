"""Liveness and readiness probes for the platform's health checks."""

from flask import Blueprint, Response, current_app, jsonify
from redis.exceptions import RedisError

from relay.web.errors import ApiError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and serving."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Config is loaded (the app would not exist otherwise) and Redis answers."""
    try:
        current_app.extensions["relay.redis"].ping()
    except RedisError as exc:
        raise ApiError(503, "not_ready", f"redis: {exc.__class__.__name__}") from None
    return jsonify(status="ready")
