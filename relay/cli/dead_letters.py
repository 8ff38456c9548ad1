"""`relay dead-letters list|show|replay|purge`: the operator's hands on deliveries given up on."""

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from config.model import RelayConfig
from config.settings import Settings
from relay.cli.options import redis_and_config
from relay.store import dead_letters

F = TypeVar("F", bound=Callable[..., Any])


def _filters(func: F) -> F:
    for option in reversed(
        [
            click.option("--destination", help="Only this destination"),
            click.option("--source", help="Only events from this source"),
            click.option("--session", "session_id", help="Only this WMS session"),
            click.option("--since", help="Dead since: an ISO 8601 time (UTC by default) or a duration ago, e.g. 2h"),
            click.option("--until", help="Dead until: same forms as --since"),
        ]
    ):
        func = option(func)
    return func


def _filter(
    destination: str | None, source: str | None, session_id: str | None, since: str | None, until: str | None
) -> dead_letters.Filter:
    return dead_letters.Filter(destination, source, session_id, _time(since, "--since"), _time(until, "--until"))


def _time(value: str | None, option: str) -> float | None:
    if not value:
        return None
    try:
        return dead_letters.parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def register(main: click.Group, load: Callable[[], tuple[Settings, RelayConfig]]) -> None:
    """Add the dead-letters commands to the `relay` command; `load` reads settings and config."""

    @main.group("dead-letters")
    def group() -> None:
        """List, show, replay and purge deliveries that will not be retried any more."""

    @group.command("list")
    @_filters
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
    def list_(as_json: bool, **filters: str | None) -> None:
        """List dead letters, oldest first."""
        redis, _ = redis_and_config(load)
        letters = dead_letters.find(redis, _filter(**filters))
        for letter in letters:
            s = letter.summary()
            # The detail is a receiver's text: quoted, so it cannot break the line or drive the terminal.
            click.echo(
                json.dumps(s)
                if as_json
                else f"{s['at']}  {s['destination']}  {s['event_id']}  {s['status']}  {s['detail'][:80]!a}"
            )
        if not as_json:
            click.echo(f"{len(letters)} dead letter(s)", err=True)

    @group.command("show")
    @click.argument("destination")
    @click.argument("event_id")
    def show(destination: str, event_id: str) -> None:
        """Show one dead letter with its event."""
        redis, _ = redis_and_config(load)
        letter = dead_letters.get(redis, destination, event_id)
        if letter is None:
            click.echo(f"no dead letter for {event_id!r} to {destination!r}", err=True)
            sys.exit(1)
        shown = {
            **letter.summary(),
            "body": letter.envelope["body"],
            "attempt_records": dead_letters.attempts(redis, letter),
        }
        click.echo(json.dumps(shown, indent=2))

    @group.command("replay")
    @_filters
    @click.option("--dry-run", is_flag=True, help="Only count what would be replayed")
    @click.option("--rate", type=click.FloatRange(*dead_letters.REPLAY_RATES), help="At most this many per second")
    @click.option("--force", is_flag=True, help="Also replay to destinations that already have the event")
    def replay(dry_run: bool, rate: float | None, force: bool, **filters: str | None) -> None:
        """Deliver dead letters again, with a fresh retry schedule."""
        redis, config = redis_and_config(load)
        result = dead_letters.replay(
            redis,
            dead_letters.find(redis, _filter(**filters)),
            config.state_ttl,
            force=force,
            dry_run=dry_run,
            rate=rate,
        )
        verb = "would replay" if dry_run else "replayed"
        click.echo(f"{verb} {len(result.replayed)} dead letter(s)")
        for letter in result.refused:
            click.echo(
                f"refused {letter.event_id} -> {letter.destination}: already delivered there "
                "(--force replays it anyway)",
                err=True,
            )

    @group.command("purge")
    @_filters
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation")
    def purge(yes: bool, **filters: str | None) -> None:
        """Delete dead letters for good."""
        redis, _ = redis_and_config(load)
        letters = dead_letters.find(redis, _filter(**filters))
        if letters and not yes:
            click.confirm(f"delete {len(letters)} dead letter(s) for good?", abort=True)
        click.echo(f"purged {dead_letters.purge(redis, letters)} dead letter(s)")
