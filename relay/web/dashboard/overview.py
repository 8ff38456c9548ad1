"""/admin/ui/: the relay at a glance: events per minute, failures, the inbox's lag and workers,
and the destinations that need an operator (paused or lagging)."""

from flask import Response

from relay.store import presence, stats
from relay.web.dashboard.blueprint import bp, config, page, redis, settings
from relay.web.dashboard.destinations import LAGGING_AFTER, rows


@bp.get("/")
def overview() -> Response:
    """The overview page."""
    report = stats.report(redis())
    hour = report["hour"]
    failures = {name: f for name, f in hour["destinations"].items() if f["failed"] or f["dead_letters"]}
    found, _ = rows(redis(), config())
    return page(
        "overview.html",
        report=report,
        per_minute=round(hour["requests"]["accepted"] / 60, 1),
        failures=failures,
        workers=presence.status(redis(), settings().worker_absent_after),
        attention=[row for row in found if row.state.paused is not None or row.lagging],
        lagging_after=LAGGING_AFTER,
    )
