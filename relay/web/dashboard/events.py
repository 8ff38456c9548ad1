"""/admin/ui/events: the event log's search (what `relay events list` shows) and one event with
its body, the rules that fired, each destination's state and every attempt (`relay events show`)."""

from flask import Response, request

from relay.store import event_log
from relay.web import filters
from relay.web.dashboard.blueprint import PageError, bp, config, page, redis

KEYS = ("session", "measurement", "code", "destination", "outcome", "since", "limit")


@bp.get("/events")
def events() -> Response:
    """Logged events matching the search form, newest first."""
    try:
        given = filters.values(request.args, KEYS)
        outcome = filters.outcome(given.get("outcome"), event_log.OUTCOMES)
        since = filters.since(given.get("since"))
        limit = filters.limit(given.get("limit"), event_log.LIMIT_MAX)
    except filters.Invalid as exc:
        return page("events.html", 400, error=str(exc), given=request.args, outcomes=event_log.OUTCOMES, found=None)
    query = event_log.Query(
        given.get("session"), given.get("measurement"), given.get("code"), given.get("destination"), outcome, since
    )
    found = event_log.find(redis(), query, limit)
    return page("events.html", given=given, outcomes=event_log.OUTCOMES, found=found)


@bp.get("/events/<id:event_id>")
def event(event_id: str) -> Response:
    """One logged event."""
    found = event_log.detail(redis(), event_id)
    if found is None:
        raise PageError(404, event_log.not_found(event_id, config().event_log.retention), "Event not found")
    return page("event.html", event=found)
