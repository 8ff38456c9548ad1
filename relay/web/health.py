"""Liveness and readiness probes for the platform's health checks, and the workers' presence for
a monitor.

/readyz is about this web process only: it fails when Redis does not answer, never because no
worker runs (a platform would restart or unroute the web process for nothing, and events are
still accepted safely). It shows the workers' status in its body; /healthz/workers is the probe
that fails (503) when events wait and no worker has been seen for WORKER_ABSENT_AFTER seconds,
for an uptime monitor that pages someone.
"""

from flask import Blueprint, Response, current_app, jsonify
from redis import Redis
from redis.exceptions import RedisError

from relay.store import presence
from relay.store.connection import explain
from relay.web.errors import ApiError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and serving."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Config is loaded (the app would not exist otherwise) and Redis answers; the workers'
    status is shown, and does not count."""
    redis: Redis | None = None
    try:
        redis = current_app.extensions["relay.redis"]
        redis.ping()
        found = presence.status(redis, current_app.config["RELAY_SETTINGS"].worker_absent_after)
    except RedisError as exc:
        raise ApiError(503, "not_ready", _why(exc, redis)) from None
    return jsonify(status="ready", workers=found.summary())


@bp.get("/healthz/workers")
def workers() -> Response:
    """503 when events wait and no worker has been seen for WORKER_ABSENT_AFTER seconds."""
    redis: Redis | None = None
    try:
        redis = current_app.extensions["relay.redis"]
        found = presence.status(redis, current_app.config["RELAY_SETTINGS"].worker_absent_after)
    except RedisError as exc:
        raise ApiError(503, "not_ready", _why(exc, redis)) from None
    if found.problem is not None:
        raise ApiError(503, "workers_absent", found.problem)
    return jsonify(status="ok", workers=found.summary())


def _why(exc: RedisError, redis: Redis | None) -> str:
    return explain(exc, redis) if redis is not None else f"redis: {exc.__class__.__name__}"
