"""`relay destinations [list|pause|resume]`: each destination's health, and pausing by hand."""

import sys
from collections.abc import Callable
from datetime import UTC, datetime

import click
from redis import Redis

from config.model import RelayConfig
from config.settings import Settings
from relay.cli.options import redis_and_config
from relay.store import destination_state, queues, stats


def register(main: click.Group, load: Callable[[], tuple[Settings, RelayConfig]]) -> None:
    """Add the destinations commands to the `relay` command; `load` reads settings and config."""

    @main.group("destinations", invoke_without_command=True)
    @click.pass_context
    def group(ctx: click.Context) -> None:
        """Show each destination's state; pause or resume one by hand."""
        if ctx.invoked_subcommand is None:
            ctx.invoke(list_)

    @group.command("list")
    def list_() -> None:
        """One line per destination: active or paused (why, since when), failures, and its backlog:
        waiting (due now, and how long the oldest has waited), scheduled (retries, rate-capped
        replays), in flight, parked (waiting for a pause to end), and the attempts since the start of the
        minute before (UTC)."""
        redis, config = redis_and_config(load)
        # Deliveries may still wait for a destination that was since removed from the config.
        names = list(config.destinations) + sorted(queues.names_in_use(redis) - set(config.destinations))
        recent = stats.read(redis, stats.MINUTE)
        counted_from = datetime.fromtimestamp(recent.since, UTC).strftime("%H:%M")
        for name in names:
            destination = config.destinations.get(name)
            kind = destination.type if destination else "no longer configured"
            state = destination_state.get(redis, name)
            if state.paused is None:
                status = "active"
            else:
                since = datetime.fromtimestamp(state.paused_at or 0, UTC).isoformat(timespec="seconds")
                status = f"PAUSED by {state.paused_by} since {since}: {state.paused}"
            backlog = queues.backlog(redis, name)
            oldest = f" (oldest {backlog.oldest_wait:.1f}s)" if backlog.oldest_wait is not None else ""
            counts = recent.destinations.get(name, stats.Destination())
            click.echo(
                f"{name} ({kind}): {status}; {state.failures} consecutive failure(s); {backlog.waiting} waiting"
                f"{oldest}, {backlog.scheduled} scheduled, {backlog.in_flight} in flight, {backlog.parked} parked; "
                f"since {counted_from}Z: {counts.attempts} attempt(s), {counts.delivered} ok"
            )

    def known(config: RelayConfig, name: str, redis: Redis | None = None) -> None:
        if name not in config.destinations and not (redis and name in queues.names_in_use(redis)):
            defined = ", ".join(map(repr, config.destinations)) or "none"
            raise click.BadParameter(f"no destination named {name!r} (defined: {defined})")

    @group.command("pause")
    @click.argument("name")
    @click.option("--reason", default="paused by an operator", show_default=True)
    def pause(name: str, reason: str) -> None:
        """Pause NAME: its deliveries wait (they are not dropped) until it is resumed."""
        redis, config = redis_and_config(load)
        known(config, name)
        if not destination_state.pause(redis, name, reason, "operator", None):
            click.echo(f"{name} is already paused", err=True)
            sys.exit(1)
        click.echo(f"paused {name}")

    @group.command("resume")
    @click.argument("name")
    def resume(name: str) -> None:
        """Resume NAME and release the deliveries that waited for it."""
        redis, config = redis_and_config(load)
        known(config, name, redis)  # a removed destination's waiting deliveries can still be released
        released = destination_state.resume(redis, name, "an operator", config.state_ttl)
        if released is None:
            click.echo(f"{name} is not paused", err=True)
            sys.exit(1)
        click.echo(f"resumed {name}; released {released} waiting deliveries")
