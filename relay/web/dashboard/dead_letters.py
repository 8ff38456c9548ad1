"""/admin/ui/dead-letters: dead letters filtered, one shown with its attempts and replayed, and a
purge that asks first (what `relay dead-letters list|show|replay|purge` do)."""

from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from relay.domain.times import iso
from relay.store import dead_letters
from relay.web import filters
from relay.web.dashboard.blueprint import PREFIX, PageError, bp, config, log, page, redis

LIST_MAX = 1000  # letters one page lists; the purge page counts them all
NO_SCOPE = "no filter given: name one, or say all=1 to mean every dead letter"
PURGE_KEYS = (*filters.DEAD_LETTER_KEYS, "all")


@bp.get("/dead-letters")
def letters() -> Response:
    """Dead letters matching the filter form, oldest first."""
    try:
        given = filters.values(request.args, filters.DEAD_LETTER_KEYS)
        which = filters.dead_letter_filter(given)
    except filters.Invalid as exc:
        return page("dead_letters.html", 400, error=str(exc), given=request.args, found=None, purge_query="")
    found = dead_letters.find(redis(), which, LIST_MAX + 1)
    return page(
        "dead_letters.html",
        given=given,
        found=[letter.summary() for letter in found[:LIST_MAX]],
        more=len(found) > LIST_MAX,
        purge_query=urlencode(given),
    )


@bp.get("/dead-letters/purge")
def purge_confirm() -> Response:
    """How many letters a purge with these filters would delete, and the form that does it."""
    given, which = _purge_scope(request.args)
    # The letters that die after this page was seen are not in the count: the form says `until`.
    if "until" not in given:
        given["until"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        which = filters.dead_letter_filter(given)
    count = dead_letters.count(redis(), which)
    return page("purge.html", given=given, count=count)


@bp.post("/dead-letters/purge")
def purge() -> Response:
    """Delete the dead letters matching the confirmed filters."""
    _, which = _purge_scope({k: v for k, v in request.form.items() if k != "csrf_token"})
    purged = dead_letters.purge(redis(), dead_letters.find(redis(), which))
    log.warning("dashboard: purged %d dead letter(s) from %s", purged, request.remote_addr)
    flash(f"purged {purged} dead letter(s)")
    return redirect(f"{PREFIX}/dead-letters", 303)


def _purge_scope(args: dict[str, str]) -> tuple[dict[str, str], dead_letters.Filter]:
    try:
        given = filters.values(args, PURGE_KEYS)
        if given.get("all", "1") != "1":
            raise filters.Invalid(f"all: must be 1 to mean every dead letter, got {given['all']!r}")
        which = filters.dead_letter_filter(given)
    except filters.Invalid as exc:
        raise PageError(400, str(exc), "Purge refused") from None
    if which == dead_letters.Filter() and given.get("all") != "1":
        raise PageError(400, NO_SCOPE, "Purge refused")
    return given, which


@bp.get("/dead-letters/<id:destination>/<id:event_id>")
def letter(destination: str, event_id: str) -> Response:
    """One dead letter: why it died, its body, its attempts, and the replay form."""
    found = dead_letters.get(redis(), destination, event_id)
    if found is None:
        raise PageError(404, _missing(destination, event_id), "Dead letter not found")
    return page(
        "dead_letter.html",
        letter=found.summary(),
        body=found.envelope.get("body", ""),
        attempts=[_timed(record) for record in dead_letters.attempts(redis(), found)],
    )


def _timed(record: dict) -> dict:
    """An attempt record with its time as ISO 8601 UTC."""
    at = record.get("at")
    return {**record, "at": iso(at)} if isinstance(at, (int, float)) else record


@bp.post("/dead-letters/<id:destination>/<id:event_id>/replay")
def replay(destination: str, event_id: str) -> Response:
    """Give one dead letter a fresh delivery, as the admin API's replay does (never forced)."""
    found = dead_letters.get(redis(), destination, event_id)
    if found is None:
        raise PageError(404, _missing(destination, event_id), "Dead letter not found")
    result = dead_letters.replay(redis(), [found], config().state_ttl)
    if result.refused:
        flash(f"not replayed: {event_id} was already delivered to {destination}")
        return redirect(url_for("dashboard.letter", destination=destination, event_id=event_id), 303)
    log.warning("dashboard: replay of 1 dead letter (%s to %s) from %s", event_id, destination, request.remote_addr)
    flash("replayed 1 dead letter")
    return redirect(f"{PREFIX}/dead-letters", 303)


def _missing(destination: str, event_id: str) -> str:
    return f"no dead letter for {event_id!r} to {destination!r}"
