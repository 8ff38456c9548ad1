"""`relay events list|show`: the event log (relay/store/event_log.py), as GET /admin/events answers."""

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from config.model import RelayConfig
from config.settings import Settings
from relay.cli.options import duration, redis_and_config
from relay.cli.sessions import shown
from relay.store import event_log

EXIT_UNKNOWN = 1  # no such event in the log


def register(main: click.Group, load: Callable[[], tuple[Settings, RelayConfig]]) -> None:
    """Add the events commands to the `relay` command; `load` reads settings and config."""

    @main.group("events")
    def group() -> None:
        """The event log: every event, the rules that fired, its deliveries and their attempts."""

    @group.command("list", short_help="List logged events, newest first.")
    @click.option("--session", help="Only events of this sessionId")
    @click.option("--measurement", help="Only events with this measurementId")
    @click.option("--code", help="Only events with this code, e.g. CONSTRAINT_VIOLATION or SESSION_FAILED")
    @click.option("--destination", help="Only events routed to this destination")
    @click.option("--outcome", type=click.Choice(event_log.OUTCOMES), help="Only events that came to this")
    @click.option("--since", callback=duration, help="Only events of the last ..., e.g. 2h, 30m, 7d")
    @click.option(
        "--limit", type=click.IntRange(1, event_log.LIMIT_MAX), default=50, show_default=True, help="At most this many"
    )
    @click.option("--json", "as_json", is_flag=True, help="One JSON object, as GET /admin/events answers")
    def list_(
        session: str | None,
        measurement: str | None,
        code: str | None,
        destination: str | None,
        outcome: str | None,
        since: float | None,
        limit: int,
        as_json: bool,
    ) -> None:
        """One line per event, newest first: when it was received (UTC), its id, code, outcome,
        and each destination's state with its attempts."""
        redis, _ = redis_and_config(load)
        query = event_log.Query(
            session, measurement, code, destination, outcome, None if since is None else time.time() - since
        )
        listing = event_log.find(redis, query, limit)
        if as_json:
            click.echo(json.dumps(listing))
            return
        click.echo("\n".join(list_lines(listing)))

    @group.command("show", short_help="Show an event: body, rules fired, every attempt.")
    @click.argument("event_id")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object, as GET /admin/events/<id> answers")
    def show(event_id: str, as_json: bool) -> None:
        """The event's code, session, rules fired and destinations, every attempt with its status
        and duration, then its body."""
        redis, config = redis_and_config(load)
        found = event_log.detail(redis, event_id)
        if found is None:
            click.echo(f"error: {event_log.not_found(event_id, config.event_log.retention)}", err=True)
            sys.exit(EXIT_UNKNOWN)
        if as_json:
            click.echo(json.dumps(found))
            return
        click.echo("\n".join(show_lines(found)))


def _time(iso: str) -> str:
    return iso[:19] + "Z"  # UTC, to the second, as `relay sessions` shows times


def destinations_text(event: dict[str, Any]) -> str:
    """Each destination's state and attempts, e.g. 'ops-slack ok, crm retrying (2 attempts)'."""
    parts = [
        f"{name} {d['state']}" + (f" ({d['attempts']} attempts)" if d["attempts"] > 1 else "")
        for name, d in event["destinations"].items()
    ]
    parts += [f"{name} grouped" for name in event["grouped"]]
    return ", ".join(parts) or "no destination"


def list_lines(listing: dict[str, Any]) -> list[str]:
    """The text of `relay events list`: GET /admin/events's answer, a line per event."""
    lines = ["no events"] if not listing["events"] else []
    rows = [[_time(e["received_at"]), shown(e["id"]), e["code"], e["outcome"]] for e in listing["events"]]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(4)]
    for row, event in zip(rows, listing["events"], strict=True):
        lines.append(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + f"  -> {destinations_text(event)}"
        )
    if listing["more"]:
        lines.append(f"more events may match ({listing['scanned']} read): raise --limit, or narrow --since")
    return lines


def show_lines(event: dict[str, Any]) -> list[str]:
    """The text of `relay events show`: GET /admin/events/<id>'s answer."""
    lines = [
        f"event {shown(event['id'])}",
        f"code: {event['code'] or '?'} ({event['severity'] or '?'})",
        f"session: {event['source']}:{shown(event['session_id'])}",
        f"measurement: {shown(event['measurement_id']) if event['measurement_id'] else 'none'}",
        f"received: {_time(event['received_at'])}",
        f"rules fired: {', '.join(event['rules']) or 'none'}",
        f"outcome: {event['outcome']}: {destinations_text(event)}",
        "attempts:" if event["attempts"] else "attempts: none",
    ]
    for a in event["attempts"]:
        line = f"  {_time(a['at'])}  {a['destination']} #{a['attempt']}  {a['outcome']}  {a['status']}"
        line += f"  {a['duration_ms']:g} ms"
        if a["next_retry_in"] is not None:
            line += f"  retry in {a['next_retry_in']:g}s"
        if a["detail"]:
            line += f"  {a['detail']}"
        lines.append(line)
    kept = len(event["body"].encode())
    cut = f" (its first {kept:,} of {event['body_bytes']:,} bytes: the log keeps no more)"
    lines += ["body" + (cut if kept < event["body_bytes"] else "") + ":", event["body"]]
    return lines
