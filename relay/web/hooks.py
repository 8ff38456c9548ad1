"""POST /hooks/<source>: verify the MAC, validate the event, dedup and queue it, acknowledge."""

import logging
import time
from time import perf_counter

from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from config.model import RelayConfig
from relay.domain import signature
from relay.domain.event import InvalidEvent, parse_event
from relay.store import stats
from relay.web.errors import ApiError, too_large
from relay.web.metrics import UNKNOWN_SOURCE

log = logging.getLogger(__name__)
bp = Blueprint("hooks", __name__)

# How long a sender should wait before retrying while Redis is unreachable.
RETRY_AFTER_SECONDS = "5"


# GET /metrics's `result` of each error code (relay_ingest_requests_total).
RESULTS = {
    "unauthorized": "unauthorized",
    "payload_too_large": "too_large",
    "unavailable": "unavailable",
    "unknown_source": "unknown_source",
}


@bp.post("/hooks/<source>")
def receive(source: str) -> tuple[Response, int]:
    """Accept one WMS event: 202 when queued, 200 for a duplicate, 4xx/503 with a JSON reason."""
    started = perf_counter()
    config = current_app.config["RELAY"]
    result = "error"  # a bug: the 500
    try:
        answer = _receive(config, source)
        result = "accepted" if answer[1] == 202 else "duplicate"
        return answer
    except ApiError as exc:
        result = RESULTS.get(exc.error, "invalid")
        raise
    except RequestEntityTooLarge:
        result = "too_large"
        raise
    finally:
        label = source if source in config.sources else UNKNOWN_SOURCE
        current_app.extensions["relay.metrics"].observe(label, result, perf_counter() - started)
        if result in REFUSED:
            _count_refused(label, result)


# The results that `relay stats` counts here; the accept script counts accepted and duplicates.
REFUSED = frozenset(stats.INGEST_RESULTS) - {"accepted", "duplicate"}


def _count_refused(source: str, result: str) -> None:
    """Count a refused request for `relay stats` (relay/store/stats.py): one round trip, spent
    only on refusals. Its answer does not wait on it failing: it is logged already."""
    try:
        stats.count_ingest(current_app.extensions["relay.redis"], source, result)
    except RedisError as exc:
        log.debug("could not count a refused request: %s", exc.__class__.__name__)


def _receive(config: RelayConfig, source: str) -> tuple[Response, int]:
    source_config = config.sources.get(source)
    if source_config is None:
        raise ApiError(404, "unknown_source", f"no source named {source!r} is configured")
    # Flask refuses a Content-Length over the limit; a chunked body is cut at MAX_CONTENT_LENGTH
    # (limit + 1) without an error, so one byte more than the limit is how we see it was too big.
    body = request.get_data(cache=False)
    if len(body) > config.ingest.max_body_bytes:
        raise too_large(config.ingest.max_body_bytes)

    try:
        signature.verify(request.headers.get(signature.HEADER), body, source_config.mac_secrets)
    except signature.SignatureError as exc:
        # The precise cause goes to the log only: a generic answer tells a prober nothing.
        generic = f"missing or invalid {signature.HEADER} signature"
        raise ApiError(401, "unauthorized", generic, log_detail=str(exc)) from None

    try:
        event = parse_event(source, body)
    except InvalidEvent as exc:
        raise ApiError(400, exc.error, exc.detail) from None
    _check_freshness(event.timestamp, config.ingest.freshness_window)

    try:
        accepted = current_app.extensions["relay.store.inbox"].accept(event, body)
    except RedisError as exc:
        # redis-py's messages name host and port, never the password.
        log.error(
            "redis unavailable, refused event %s: %s: %s",
            event.id,
            exc.__class__.__name__,
            exc,
            extra={"event_id": event.id, "source": source, "status": 503, "outcome": "unavailable"},
        )
        raise ApiError(
            503,
            "unavailable",
            "cannot store the event right now; retry later",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ) from None
    fields = {"event_id": accepted.event_id, "source": source}
    if not event.known:
        log.info(
            "accepted unknown event code %r as %s: not in the WMS catalogue",
            event.code,
            event.id,
            extra={**fields, "outcome": "unknown_code"},
        )
    if accepted.duplicate:
        log.info("duplicate %s not queued again", accepted.event_id, extra={**fields, "outcome": "duplicate"})
        return jsonify(status="duplicate", id=accepted.event_id), 200
    # DEBUG, not INFO: a line per accepted event costs ingest throughput (docs/performance.md).
    log.debug(
        "accepted %s (%s, %s)", accepted.event_id, event.code, event.severity, extra={**fields, "outcome": "accepted"}
    )
    return jsonify(status="accepted", id=accepted.event_id), 202


def _check_freshness(timestamp: int, window: float | None) -> None:
    if window is None:
        return
    skew = int(time.time()) - timestamp
    if abs(skew) > window:
        when = f"{skew}s in the past" if skew > 0 else f"{-skew}s in the future"
        raise ApiError(400, "stale_event", f"timestamp: {timestamp} is {when}; the freshness window is {window:g}s")
