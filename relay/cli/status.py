"""`relay status`: the worker processes seen (relay/store/presence.py), the inbox's lag, and a
line to act on when events wait but no worker has been seen for WORKER_ABSENT_AFTER seconds."""

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import click

from config.model import RelayConfig
from config.settings import Settings
from relay.store import presence
from relay.store.connection import connect

EXIT_ABSENT = 1  # events wait and no worker has been seen for WORKER_ABSENT_AFTER seconds


def register(main: click.Group, load: Callable[[], tuple[Settings, RelayConfig]]) -> None:
    """Add `relay status` to the `relay` command; `load` reads settings and config."""

    @main.command("status")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object")
    def status(as_json: bool) -> None:
        """Workers seen (id, host, pid, last seen), the inbox's lag, and whether events wait for
        a worker that is not there; exit 1 when they have waited WORKER_ABSENT_AFTER seconds."""
        settings, _ = load()
        redis = connect(settings.require_redis_url(), settings.redis_tls_verify)
        found = presence.status(redis, settings.worker_absent_after)
        if as_json:
            click.echo(json.dumps(found.to_json()))
        else:
            click.echo("\n".join(lines(found)))
        if found.problem is not None:
            sys.exit(EXIT_ABSENT)


def lines(found: presence.Status) -> list[str]:
    """The text of `relay status`."""
    running = found.running
    out = [f"workers: {len(running)} running"]
    for worker in found.workers:
        ago = found.now - worker.seen
        if worker.running(found.now):
            state = f"running, last seen {ago:.1f} s ago"
        elif worker.left:
            state = f"stopped {ago:.0f} s ago"
        else:
            state = f"presumed gone: last seen {ago:.0f} s ago"
        out.append(f"  {worker.id} (host {worker.host}, pid {worker.pid}): {state}, started {_iso(worker.started)}")
    oldest = found.oldest_age
    if oldest is None:
        out.append("inbox: 0 waiting")
    else:
        out.append(f"inbox: {found.waiting} waiting, the oldest for {oldest:.1f} s")
    if found.problem is not None:
        out.append(found.problem)
    return out


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")
