"""`relay stats`: the last hour's and day's requests and deliveries, as GET /admin/stats answers."""

import json
from collections.abc import Callable
from typing import Any

import click

from config.model import RelayConfig
from config.settings import Settings
from relay.store import stats as counts
from relay.store.connection import connect


def register(main: click.Group, load: Callable[[], tuple[Settings, RelayConfig]]) -> None:
    """Add `relay stats` to the `relay` command; `load` reads settings and config."""

    @main.command("stats")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object, as GET /admin/stats answers")
    def stats(as_json: bool) -> None:
        """The last hour and day: requests accepted, duplicates and refused by reason, and per
        destination the attempts, deliveries, failed attempts, dead letters and p50/p99 send time."""
        settings, _ = load()
        figures = counts.report(connect(settings.require_redis_url(), settings.redis_tls_verify))
        if as_json:
            click.echo(json.dumps(figures))
            return
        click.echo("\n".join(stats_lines(figures)))


def _ms(value: float | str | None) -> str:
    if value is None:
        return "-"
    return f"> {counts.MS_BOUNDS[-1]} ms" if value == "+Inf" else f"<= {value:g} ms"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in rows
    ]


def stats_lines(figures: dict[str, Any]) -> list[str]:
    """The text of `relay stats`: GET /admin/stats's answer."""
    lines: list[str] = []
    for name, _ in counts.WINDOWS:
        window = figures[name]
        requests = window["requests"]
        refused = ", ".join(f"{n} {r}" for r, n in requests.items() if r not in ("accepted", "duplicate") and n)
        lines.append(
            f"last {name} (since {window['since'][:10]} {window['since'][11:16]}Z): {requests['accepted']} accepted, "
            f"{requests['duplicate']} duplicates, refused: {refused or 'none'}"
        )
        rows = [["destination", "attempts", "delivered", "failed", "dead letters", "p50", "p99"]]
        rows += [
            [
                d,
                *(str(v[k]) for k in ("attempts", "delivered", "failed", "dead_letters")),
                _ms(v["p50_ms"]),
                _ms(v["p99_ms"]),
            ]
            for d, v in window["destinations"].items()
        ]
        lines += _table(rows) if len(rows) > 1 else ["  no delivery attempts"]
    lines.append("p50/p99: bounds of send time buckets; 503 answers (Redis down) are counted only by GET /metrics")
    return lines
