"""/admin/ui/sessions: the sessions followed (what `relay sessions list` shows) and one session's
timeline, its gaps, and each event's deliveries (`relay sessions show`)."""

import json
from typing import Any

from flask import Response, request

from relay.domain.event import event_id
from relay.domain.session import OUTCOMES
from relay.store import session_view
from relay.web import filters
from relay.web.dashboard.blueprint import PageError, bp, config, page, redis

KEYS = ("outcome", "source", "since", "limit")


@bp.get("/sessions")
def sessions() -> Response:
    """Sessions matching the filter form, newest first."""
    try:
        given = filters.values(request.args, KEYS)
        outcome = filters.outcome(given.get("outcome"), OUTCOMES)
        since = filters.since(given.get("since"))
        limit = filters.limit(given.get("limit"), session_view.LIMIT_MAX)
    except filters.Invalid as exc:
        return page("sessions.html", 400, error=str(exc), given=request.args, outcomes=OUTCOMES, listing=None)
    listing = session_view.find(redis(), outcome, given.get("source"), since, limit)
    return page("sessions.html", given=given, outcomes=OUTCOMES, listing=listing.to_json())


@bp.get("/sessions/<id:source>/<id:session_id>")
def session(source: str, session_id: str) -> Response:
    """One session: its outcome and why, and its timeline with gaps and deliveries."""
    found = session_view.lookup(redis(), session_id, [source])
    if not found:
        raise PageError(
            404, session_view.not_found(session_id, [source], config().sessions.retention), "Session not found"
        )
    shown = session_view.detail(redis(), config(), found[0])
    return page("session.html", session=shown, lines=timeline(shown))


def timeline(shown: dict[str, Any]) -> list[dict[str, Any]]:
    """The timeline's rows in sequence order: each event (with its event id and payload as JSON),
    and a `gap` row before the first event after each missing range."""
    gaps = [tuple(gap) for gap in shown["gaps"]]
    lines: list[dict[str, Any]] = []
    for line in shown["timeline"]:
        while gaps and gaps[0][0] < line["sequence"]:
            first, last = gaps.pop(0)
            lines.append({"gap": (first, last)})
        payload = line.get("payload")
        lines.append(
            {
                **line,
                "id": event_id(shown["source"], shown["session_id"], line["sequence"]),
                "payload_text": json.dumps(payload, ensure_ascii=False, separators=(",", ":")) if payload else "",
            }
        )
    return lines
