"""The admin API, under /admin: dead letters (list, show, replay, purge), the sessions followed
(list, show), the event log (list, show) and its stats, for operators' tools.

Off unless RELAY_ADMIN_TOKEN is set; every request must then carry `Authorization: Bearer <token>`,
compared in constant time. With no token configured, /admin answers 404 as if it did not exist.
Every method and path under /admin reaches this blueprint (`elsewhere` takes what no other route
does), so the token is checked before anything else is said: a stranger learns no route or method.
"""

import hmac
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

from flask import Blueprint, Response, current_app, jsonify, request
from redis import Redis

from relay import logs
from relay.domain.session import OUTCOMES
from relay.store import dead_letters, event_log, session_view, stats
from relay.web import filters
from relay.web.errors import ApiError
from relay.web.routes import METHODS, other_methods

bp = Blueprint("admin", __name__, url_prefix="/admin")
log = logging.getLogger(__name__)


@bp.before_request
def _authorize() -> None:
    token = current_app.config["RELAY_SETTINGS"].admin_token
    if token is None:
        raise ApiError(404, "not_found", "no such endpoint; webhooks are received at POST /hooks/<source>")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
        log.warning(
            "admin: refused %s %s from %s: missing or invalid bearer token",
            request.method,
            logs.printable(request.path),
            request.remote_addr,
        )
        raise ApiError(401, "unauthorized", "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})


@bp.after_request
def _not_cached(response: Response) -> Response:
    # Event bodies, sessionIds and receivers' answers: nothing a proxy or a browser should keep.
    response.headers["Cache-Control"] = "no-store"
    return response


FILTER_KEYS = filters.DEAD_LETTER_KEYS


@contextmanager
def _checked() -> Iterator[None]:
    """A filter refused (relay/web/filters.py) is the client's 400 `invalid_filter`."""
    try:
        yield
    except filters.Invalid as exc:
        raise ApiError(400, "invalid_filter", str(exc)) from None


def _filter(values: Mapping[str, Any], allowed: tuple[str, ...] = FILTER_KEYS) -> dead_letters.Filter:
    with _checked():
        filters.known(values, allowed)
        for key in FILTER_KEYS:  # a JSON body may hold anything
            if key in values and not isinstance(values[key], str):
                raise filters.Invalid(f"{key}: must be a string")
        return filters.dead_letter_filter({key: values[key] for key in FILTER_KEYS if values.get(key)})


def _redis() -> Redis:
    return current_app.extensions["relay.redis"]


@bp.get("/dead-letters")
def list_dead_letters() -> Response:
    """Dead letters matching ?destination, source, session, since, until (oldest first)."""
    letters = dead_letters.find(_redis(), _filter(request.args))
    return jsonify(count=len(letters), dead_letters=[letter.summary() for letter in letters])


@bp.get("/dead-letters/<destination>/<path:event_id>")
def show_dead_letter(destination: str, event_id: str) -> Response:
    """One dead letter with its event's raw body."""
    letter = dead_letters.get(_redis(), destination, event_id)
    if letter is None:
        raise ApiError(404, "not_found", f"no dead letter for {event_id!r} to {destination!r}")
    return jsonify(
        **letter.summary(), body=letter.envelope["body"], attempt_records=dead_letters.attempts(_redis(), letter)
    )


@bp.post("/dead-letters/replay")
def replay_dead_letters() -> Response:
    """Replay the dead letters matching the JSON body's filters; dry_run, force and rate as in the CLI."""
    body = _json_body()
    which = _filter(body, (*FILTER_KEYS, "dry_run", "force", "rate", "all"))
    _check_flags(body)
    rate = body.get("rate")
    low, high = dead_letters.REPLAY_RATES
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not low <= rate <= high):
        raise ApiError(
            400, "invalid_request", f"rate: must be a number of replays per second from {low} to {high}, got {rate!r}"
        )
    if body.get("dry_run") is not True:  # a dry run changes nothing: it may count everything
        _require_scope(which, body)
    redis = _redis()
    result = dead_letters.replay(
        redis,
        dead_letters.find(redis, which),
        current_app.config["RELAY"].state_ttl,
        force=body.get("force") is True,
        dry_run=body.get("dry_run") is True,
        rate=rate,
    )
    log.warning(
        "admin: replay of %d dead letter(s) (dry run: %s) from %s",
        len(result.replayed),
        body.get("dry_run") is True,
        request.remote_addr,
    )
    return jsonify(
        dry_run=body.get("dry_run") is True,
        replayed=len(result.replayed),
        refused=[
            {"destination": letter.destination, "event_id": letter.event_id, "reason": "already delivered"}
            for letter in result.refused
        ],
    )


@bp.post("/dead-letters/purge")
def purge_dead_letters() -> Response:
    """Delete the dead letters matching the JSON body's filters."""
    body = _json_body()
    which = _filter(body, (*FILTER_KEYS, "all"))
    _check_flags(body)
    _require_scope(which, body)
    redis = _redis()
    purged = dead_letters.purge(redis, dead_letters.find(redis, which))
    log.warning("admin: purged %d dead letter(s) from %s", purged, request.remote_addr)
    return jsonify(purged=purged)


SESSION_KEYS = ("outcome", "since", "source", "limit")


@bp.get("/sessions")
def list_sessions() -> Response:
    """Sessions matching ?outcome, since (a duration ago), source, newest first, at most ?limit
    (as `relay sessions list --json`)."""
    with _checked():
        args = filters.values(request.args, SESSION_KEYS)
        outcome = filters.outcome(args.get("outcome"), OUTCOMES)
        since = filters.since(args.get("since"))
        limit = filters.limit(args.get("limit"), session_view.LIMIT_MAX)
    listing = session_view.find(_redis(), outcome, args.get("source"), since, limit)
    return jsonify(listing.to_json())


@bp.get("/sessions/<source>/<path:session_id>")
def show_session(source: str, session_id: str) -> Response:
    """One session: its outcome, what decided it, and its timeline with each event's deliveries
    (as `relay sessions show --json`)."""
    config = current_app.config["RELAY"]
    found = session_view.lookup(_redis(), session_id, [source])
    if not found:
        raise ApiError(404, "not_found", session_view.not_found(session_id, [source], config.sessions.retention))
    return jsonify(session_view.detail(_redis(), config, found[0]))


EVENT_KEYS = ("session", "measurement", "code", "destination", "outcome", "since", "limit")


@bp.get("/events")
def list_events() -> Response:
    """Logged events matching ?session, measurement, code, destination, outcome, since (a
    duration ago), newest first, at most ?limit (as `relay events list --json`)."""
    with _checked():
        args = filters.values(request.args, EVENT_KEYS)
        outcome = filters.outcome(args.get("outcome"), event_log.OUTCOMES)
        since = filters.since(args.get("since"))
        limit = filters.limit(args.get("limit"), event_log.LIMIT_MAX)
    query = event_log.Query(
        args.get("session"), args.get("measurement"), args.get("code"), args.get("destination"), outcome, since
    )
    return jsonify(event_log.find(_redis(), query, limit))


@bp.get("/events/<path:event_id>")
def show_event(event_id: str) -> Response:
    """One logged event: body, rules fired, each destination's state, every attempt (as
    `relay events show --json`)."""
    found = event_log.detail(_redis(), event_id)
    if found is None:
        retention = current_app.config["RELAY"].event_log.retention
        raise ApiError(404, "not_found", event_log.not_found(event_id, retention))
    return jsonify(found)


@bp.get("/stats")
def show_stats() -> Response:
    """The last hour's and day's requests and deliveries (as `relay stats --json`)."""
    if request.args:
        raise ApiError(400, "invalid_filter", f"unknown key {sorted(request.args)[0]!r} (this endpoint takes none)")
    return jsonify(stats.report(_redis()))


@bp.route("", defaults={"rest": ""}, methods=METHODS)
@bp.route("/<path:rest>", methods=METHODS)
def elsewhere(rest: str) -> Response:
    """Any other method or path under /admin, answered only once the token is checked: 405 with
    the methods the path takes, or 404."""
    allowed = other_methods()
    if not allowed:
        raise ApiError(404, "not_found", f"no such endpoint: /admin/{rest}")
    raise ApiError(
        405,
        "method_not_allowed",
        f"method not allowed; this endpoint accepts {', '.join(allowed)}",
        {"Allow": ", ".join(allowed)},
    )


def _check_flags(body: dict) -> None:
    # Only a JSON true is yes: a string "true" must not turn a dry run into a replay.
    for flag in ("dry_run", "force", "all"):
        if flag in body and not isinstance(body[flag], bool):
            raise ApiError(400, "invalid_request", f"{flag}: must be true or false, got {body[flag]!r}")


def _require_scope(which: dead_letters.Filter, body: dict) -> None:
    if which == dead_letters.Filter() and body.get("all") is not True:
        raise ApiError(400, "invalid_filter", 'no filter given: name one, or say "all": true to mean every dead letter')


def _json_body() -> dict:
    data = request.get_data()
    if not data:
        return {}
    try:
        # Not Flask's get_json: it takes NaN and Infinity, and lets a RecursionError through.
        body = json.loads(data, parse_constant=_not_json)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    return body


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")
