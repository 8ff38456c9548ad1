"""/admin/ui/destinations: each destination's health and backlog (what `relay destinations`
prints), and pausing or resuming one by hand."""

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import flash, redirect, request
from redis import Redis
from werkzeug.wrappers import Response

from config.model import RelayConfig
from relay.domain.times import iso
from relay.store import destination_state, queues, stats
from relay.web.dashboard.blueprint import PREFIX, PageError, bp, config, log, page, redis

# An operator's pause, told apart from the workers' automatic ones ("auto") in the state and in
# the announcement.
PAUSED_BY = "operator"
RESUMED_BY = "an operator (dashboard)"
REASON = "paused from the dashboard"
# A due delivery that has waited this long means its destination is slow, failing or held back
# by its rate limit: lanes take what is due at least every second.
LAGGING_AFTER = 60.0


@dataclass(frozen=True)
class Row:
    """One destination as the page shows it."""

    name: str
    kind: str
    state: destination_state.State
    backlog: queues.Backlog
    recent: stats.Destination  # attempts since the start of the minute before

    @property
    def paused_at(self) -> str | None:
        """When it was paused, as ISO 8601 UTC."""
        return iso(self.state.paused_at) if self.state.paused_at is not None else None

    @property
    def lagging(self) -> bool:
        """Whether its oldest due delivery has waited LAGGING_AFTER or more."""
        return (self.backlog.oldest_wait or 0.0) >= LAGGING_AFTER


def rows(redis: Redis, config: RelayConfig) -> tuple[list[Row], float]:
    """Every configured destination, then any removed one that still has deliveries; and since
    when (unix s) their recent attempts are counted (the start of the minute before, UTC)."""
    names = list(config.destinations) + sorted(queues.names_in_use(redis) - set(config.destinations))
    recent = stats.read(redis, stats.MINUTE)
    found = []
    for name in names:
        destination = config.destinations.get(name)
        found.append(
            Row(
                name,
                destination.type if destination else "no longer configured",
                destination_state.get(redis, name),
                queues.backlog(redis, name),
                recent.destinations.get(name, stats.Destination()),
            )
        )
    return found, recent.since


@bp.get("/destinations")
def destinations() -> Response:
    """The destinations' table."""
    found, since = rows(redis(), config())
    # The time of day alone, as `relay destinations` says it: the column stays narrow.
    return page("destinations.html", rows=found, recent_since=datetime.fromtimestamp(since, UTC).strftime("%H:%MZ"))


@bp.post("/destinations/<id:name>/pause")
def pause(name: str) -> Response:
    """Pause a configured destination: its deliveries wait, parked, until it is resumed."""
    if name not in config().destinations:
        raise PageError(404, _unknown(name), "Not found")
    if destination_state.pause(redis(), name, REASON, PAUSED_BY, None):
        log.warning("dashboard: paused destination %s from %s", name, request.remote_addr)
        flash(f"paused {name}")
    else:
        flash(f"{name} is already paused")
    return redirect(f"{PREFIX}/destinations", 303)


@bp.post("/destinations/<id:name>/resume")
def resume(name: str) -> Response:
    """Resume a destination (a removed one too: its parked deliveries can still be released)."""
    if name not in config().destinations and name not in queues.names_in_use(redis()):
        raise PageError(404, _unknown(name), "Not found")
    released = destination_state.resume(redis(), name, RESUMED_BY, config().state_ttl)
    if released is None:
        flash(f"{name} is not paused")
    else:
        log.warning("dashboard: resumed destination %s (%d released) from %s", name, released, request.remote_addr)
        flash(f"resumed {name}; released {released} waiting deliveries")
    return redirect(f"{PREFIX}/destinations", 303)


def _unknown(name: str) -> str:
    defined = ", ".join(map(repr, config().destinations)) or "none"
    return f"no destination named {name!r} (defined: {defined})"
