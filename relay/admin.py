"""The admin API, under /admin: dead letters (list, show, replay, purge) for operators' tools.

Off unless RELAY_ADMIN_TOKEN is set; every request must then carry `Authorization: Bearer <token>`,
compared in constant time. With no token configured, /admin answers 404 as if it did not exist.
"""

import hmac

from flask import Blueprint, current_app, jsonify, request

from relay import dead_letters
from relay.errors import ApiError

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _authorize():
    token = current_app.config["RELAY_SETTINGS"].admin_token
    if token is None:
        raise ApiError(404, "not_found", "no such endpoint; webhooks are received at POST /hooks/<source>")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
        raise ApiError(401, "unauthorized", "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})


def _filter(values) -> dead_letters.Filter:
    try:
        return dead_letters.Filter(
            values.get("destination"), values.get("source"), values.get("session"),
            dead_letters.parse_time(values["since"]) if values.get("since") else None,
            dead_letters.parse_time(values["until"]) if values.get("until") else None,
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_filter", f"since/until: {exc}") from None


def _redis():
    return current_app.extensions["relay.redis"]


@bp.get("/dead-letters")
def list_dead_letters():
    """Dead letters matching ?destination, source, session, since, until (oldest first)."""
    letters = dead_letters.find(_redis(), _filter(request.args))
    return jsonify(count=len(letters), dead_letters=[letter.summary() for letter in letters])


@bp.get("/dead-letters/<destination>/<path:event_id>")
def show_dead_letter(destination: str, event_id: str):
    """One dead letter with its event's raw body."""
    letter = dead_letters.get(_redis(), destination, event_id)
    if letter is None:
        raise ApiError(404, "not_found", f"no dead letter for {event_id!r} to {destination!r}")
    return jsonify(**letter.summary(), body=letter.envelope["body"], attempt_records=dead_letters.attempts(_redis(), letter))


@bp.post("/dead-letters/replay")
def replay_dead_letters():
    """Replay the dead letters matching the JSON body's filters; dry_run, force and rate as in the CLI."""
    body = _json_body()
    rate = body.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
        raise ApiError(400, "invalid_request", f"rate: must be a positive number of replays per second, got {rate!r}")
    redis = _redis()
    result = dead_letters.replay(
        redis, dead_letters.find(redis, _filter(body)), current_app.config["RELAY"].state_ttl,
        force=body.get("force") is True, dry_run=body.get("dry_run") is True, rate=rate,
    )
    return jsonify(dry_run=body.get("dry_run") is True, replayed=len(result.replayed),
                   refused=[{"destination": l.destination, "event_id": l.event_id, "reason": "already delivered"}
                            for l in result.refused])


@bp.post("/dead-letters/purge")
def purge_dead_letters():
    """Delete the dead letters matching the JSON body's filters."""
    redis = _redis()
    return jsonify(purged=dead_letters.purge(redis, dead_letters.find(redis, _filter(_json_body()))))


def _json_body() -> dict:
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    return body
