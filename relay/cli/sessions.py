"""`relay sessions list|show`: the sessions the workers followed, and one session's timeline with
each event's deliveries. The content is GET /admin/sessions's (relay/store/session_view.py),
printed as lines; --json prints it as the admin API answers it."""

import json
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from config.model import RelayConfig
from config.settings import Settings
from relay.cli.options import duration, redis_and_config
from relay.domain.session import OUTCOMES
from relay.store import session_view

EXIT_UNKNOWN = 1  # no such session
_PLAIN = re.compile(r"[!-~]+")  # printable ASCII without spaces: shown as it is, anything else quoted


def register(main: click.Group, load: Callable[[], tuple[Settings, RelayConfig]]) -> None:
    """Add the sessions commands to the `relay` command; `load` reads settings and config."""

    @main.group("sessions")
    def group() -> None:
        """The WMS sessions followed: their outcomes, and each one's timeline and deliveries."""

    @group.command("list", short_help="List sessions, newest first.")
    @click.option("--outcome", type=click.Choice(OUTCOMES), help="Only sessions with this outcome")
    @click.option("--since", callback=duration, help="Only sessions with an event within this long, e.g. 2h, 30m, 7d")
    @click.option("--source", help="Only sessions at this source")
    @click.option(
        "--limit",
        type=click.IntRange(1, session_view.LIMIT_MAX),
        default=50,
        show_default=True,
        help="At most this many sessions",
    )
    @click.option("--json", "as_json", is_flag=True, help="One JSON object, as GET /admin/sessions answers")
    def list_(outcome: str | None, since: float | None, source: str | None, limit: int, as_json: bool) -> None:
        """One line per session, newest first: its last event's time (UTC), source, sessionId,
        outcome (and reason), events, gaps and measurementId."""
        redis, _ = redis_and_config(load)
        listing = session_view.find(
            redis, outcome, source, None if since is None else time.time() - since, limit
        ).to_json()
        if as_json:
            click.echo(json.dumps(listing))
            return
        click.echo("\n".join(list_lines(listing, _wanted(outcome, source, since))))

    @group.command("show", short_help="Show a session's outcome, timeline and deliveries.")
    @click.argument("session_id")
    @click.option("--source", help="The session's source (default: every configured source that has it)")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per session, as the admin API answers")
    def show(session_id: str, source: str | None, as_json: bool) -> None:
        """The session's outcome and what decided it, then its timeline: one line per event with
        its deliveries to each destination, and a line for each gap in its sequence numbers."""
        redis, config = redis_and_config(load)
        where = [source] if source else list(config.sources)
        found = session_view.lookup(redis, session_id, where)
        if not found:
            click.echo(f"error: {session_view.not_found(session_id, where, config.sessions.retention)}", err=True)
            sys.exit(EXIT_UNKNOWN)
        if len(found) > 1:
            names = ", ".join(repr(s.source) for s in found)
            click.echo(
                f"session {session_id!r} is at {len(found)} sources ({names}): all shown; --source picks one", err=True
            )
        now = time.time()
        details = [session_view.detail(redis, config, session, now) for session in found]
        if as_json:
            click.echo("\n".join(json.dumps(d) for d in details))
            return
        click.echo("\n\n".join("\n".join(show_lines(d)) for d in details))


def _wanted(outcome: str | None, source: str | None, since: float | None) -> str:
    words = [outcome or "", "sessions"]
    if source:
        words.append(f"at source {source!r}")
    if since is not None:
        words.append(f"with an event in the last {session_view.span(since)}")
    return " ".join(w for w in words if w)


def list_lines(listing: dict[str, Any], wanted: str = "sessions") -> list[str]:
    """The text of `relay sessions list`: GET /admin/sessions's answer, a line per session."""
    if not listing["sessions"]:
        return [f"no {wanted}"]
    rows: list[list[str] | str] = [
        [
            _time(s["last_event_at"]),
            s["source"],
            shown(s["session_id"]),
            _outcome(s["outcome"], s["reason"], None, s["emitted"]),
            _count(s["events"], "event"),
            _count(s["gaps"], "gap"),
            f"measurement {shown(s['measurement_id'])}" if s["measurement_id"] else "no measurement",
        ]
        for s in listing["sessions"]
    ]
    lines = _columns(rows, 6, right=(4, 5))
    if listing["more"]:
        lines.append(f"more {wanted} may match: raise --limit, or narrow --since")
    return lines


def show_lines(detail: dict[str, Any]) -> list[str]:
    """The text of `relay sessions show` for one session: GET /admin/sessions/<source>/<id>'s answer."""
    emitted = detail["outcome_event"]
    outcome = _outcome(detail["outcome"], detail["reason"], detail["reason_sequence"], detail["emitted"])
    if emitted and emitted["emitted_at"]:
        outcome += f", emitted {_time(emitted['emitted_at'])}"
    lines = [f"session {detail['source']}:{shown(detail['session_id'])}", f"outcome: {outcome}"]
    if emitted:
        lines.append(f"outcome event: {emitted['id']} {emitted['event']} -> {_deliveries(emitted['deliveries'])}")
    ids = detail["measurement_ids"]
    snr = detail["last_snr"]
    lines += [
        f"measurement ids: {', '.join(map(shown, ids)) if ids else 'none'}",
        (
            f"events: {detail['event_count']} from {_time(detail['started_at'])} to {_time(detail['ended_at'])} "
            f"({detail['duration_seconds']} s); {_count(len(detail['gaps']), 'gap')}, "
            f"{detail['out_of_order']} out of order, {detail['late']} late"
        ),
        f"last SNR: {'none' if snr is None else snr}",
    ]
    lines += [
        f"skipped by {name} (ordered) after its gap timeout: sequence {_ranges(sequences)}"
        for name, sequences in detail["skipped"].items()
        if sequences
    ]
    lines.append("timeline:")
    gaps = dict(detail["gaps"])
    rows: list[list[str] | str] = []
    expected = 0
    for event in detail["timeline"]:
        if expected in gaps:
            rows.append(_gap(expected, gaps[expected]))
        expected = event["sequence"] + 1
        row = [
            _time(event["timestamp"]),
            f"+{event['offset_seconds']}s" if event["offset_seconds"] >= 0 else f"{event['offset_seconds']}s",
            f"#{event['sequence']}",
            event["event"],
            event["severity"],
        ]
        if event["payload"]:  # as ASCII JSON: nothing in it can break the line or drive the terminal
            row.append(json.dumps(event["payload"], separators=(",", ":")))
        row.append(f"-> {_deliveries(event['deliveries'])}")
        rows.append(row)
    return lines + _columns(rows, 5, right=(1, 2))


def _gap(first: int, last: int) -> str:
    return f"… sequence {first} missing" if first == last else f"… sequence {first}–{last} missing"


def _ranges(sequences: list[int]) -> str:
    """Ascending sequence numbers as ranges: [3, 4, 5, 9] as '3–5, 9'."""
    ranges: list[list[int]] = []
    for n in sequences:
        if ranges and n <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], n)
        else:
            ranges.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in ranges)


def _deliveries(deliveries: list[dict[str, Any]] | None) -> str:
    if deliveries is None:
        return "delivery records expired"
    if not deliveries:
        return "no destination"
    return ", ".join(delivery_text(d) for d in deliveries)


def delivery_text(delivery: dict[str, Any]) -> str:
    """One destination's delivery of one event: 'crm ok', 'ops-slack attempt 2 scheduled (last:
    HTTP 503)', 'ops-email dead at attempt 5 (SMTP 451)', 'ops-slack ok in grouped message 1'."""
    name, state, attempt, status = (delivery[k] for k in ("destination", "state", "attempt", "last_status"))
    via = f" in grouped message {delivery['grouped_in'].rsplit(':part-', 1)[1]}" if delivery.get("grouped_in") else ""
    last = f" (last: {status})" if status else ""
    if state == "ok":
        return f"{name} ok{via}" if attempt in (None, 1) else f"{name} ok{via} at attempt {attempt}"
    if state == "dead":
        return f"{name} dead{via}" + (f" at attempt {attempt}" if attempt else "") + (f" ({status})" if status else "")
    if state == "waiting":
        return f"{name} attempt {attempt}{via} waiting: destination paused{last}"
    if state == "held":
        return f"{name} held until the session's earlier events are done"
    if state == "grouped":
        return f"{name} grouped: waits for the session's next grouped message"
    if state == "unknown":
        return f"{name}{via} in an unknown state"
    return f"{name} attempt {attempt}{via} {state}{last}"


def _outcome(outcome: str, reason: str | None, sequence: int | None, emitted: bool) -> str:
    why = [reason] if reason else []
    if reason and sequence is not None:
        why = [f"{reason} at sequence {sequence}"]
    if outcome != "in_progress" and not emitted:
        why.append("not emitted yet")
    return f"{outcome} ({'; '.join(why)})" if why else outcome


def _columns(rows: list[list[str] | str], aligned: int, right: tuple[int, ...] = ()) -> list[str]:
    """Rows with their first `aligned` columns padded to a common width (those in `right` to
    the right), two spaces apart; a plain string is a line of its own."""
    widths = [max((len(r[i]) for r in rows if isinstance(r, list)), default=0) for i in range(aligned)]
    return [
        row
        if isinstance(row, str)
        else "  ".join(
            (cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])) if i < aligned else cell
            for i, cell in enumerate(row)
        )
        for row in rows
    ]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _time(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%dT%H:%M:%SZ")


def shown(text: str) -> str:
    """An id as a line can show it: as it is when it is printable ASCII without spaces, else
    quoted as JSON (which escapes anything that could drive a terminal)."""
    return text if _PLAIN.fullmatch(text) else json.dumps(text)
