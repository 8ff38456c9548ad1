"""`relay simulate`: play scripted WMS sessions (relay/domain/scenarios.py) against a running
relay, signed as WMS signs them, and say what each session's outcome should be.

Sessions are played concurrently, each on its own thread, its events one after the other: real
users' sessions overlap, which is what the relay's session tracking and alert grouping must
handle, and `--interval` then spaces each session's events without multiplying the run's length
by the number of sessions. The report is printed in the order the sessions were planned.
"""

import random
import sys
import time
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import click
import requests

from config.model import RelayConfig
from config.settings import Settings
from relay.cli.webhook import Webhook
from relay.domain import samples
from relay.domain.scenarios import SCENARIOS, Scenario, play, shuffled

ALL = "all"  # the scenario argument that plays every scenario
DEFAULT_DUPLICATE = 0.2  # with --shuffle: the "shuffled and 20% duplicated"
MAX_PARALLEL = 16  # sessions in flight at once; enough for a burst without a thread per session
SHOWN_FAILURES = 5  # failed answers printed per session; the rest are counted


@dataclass(frozen=True)
class Plan:
    """One session to play: its scenario, its id, and its events in the order they are sent."""

    scenario: Scenario
    session_id: str
    events: list[dict[str, Any]]


@dataclass
class Played:
    """What the relay answered to one session's events."""

    plan: Plan
    accepted: int = 0
    duplicate: int = 0
    failures: list[str] = field(default_factory=list)
    unreachable: requests.RequestException | None = None  # the post that got no answer; the session stopped there

    @property
    def sent(self) -> int:
        """Events the relay answered."""
        return self.accepted + self.duplicate + len(self.failures)


def register(main: click.Group, load: Callable[..., tuple[Settings, RelayConfig]]) -> None:
    """Add `relay simulate` to the `relay` command; `load` reads settings and config."""

    @main.command("simulate")
    @click.argument("name", metavar="SCENARIO", required=False)
    @click.option("--list", "listing", is_flag=True, help="List the scenarios and the outcome each should come to")
    @click.option("--sessions", default=1, show_default=True, type=click.IntRange(min=1), help="Sessions per scenario")
    @click.option("--shuffle", is_flag=True, help="Send each session's events in a random order, some of them twice")
    @click.option(
        "--duplicate",
        type=click.FloatRange(0, 1),
        help=f"With --shuffle: the fraction of events sent twice [default: {DEFAULT_DUPLICATE}]",
    )
    @click.option("--seed", type=int, help="With --shuffle: the seed, to send in the same order again [default: new]")
    @click.option("--url", help="Webhook URL [default: http://127.0.0.1:$PORT/hooks/<source>]")
    @click.option("--source", default="wms", show_default=True, help="Source whose first MAC secret signs the events")
    @click.option(
        "--interval",
        default=0.0,
        show_default=True,
        type=click.FloatRange(min=0),
        help="Seconds between two events of a session",
    )
    def simulate(
        name: str | None,
        listing: bool,
        sessions: int,
        shuffle: bool,
        duplicate: float | None,
        seed: int | None,
        url: str | None,
        source: str,
        interval: float,
    ) -> None:
        """Play a scripted WMS session (SCENARIO, or all of them) against a running relay, signed
        as WMS signs it, with new session ids; print the relay's answers and the outcome each
        session should come to. Exit 1 when a post failed (a duplicate's 200 is no failure)."""
        if listing:
            click.echo("\n".join(scenario_lines()))
            return
        chosen = _chosen(name)
        if not shuffle:
            for option, value in (("--duplicate", duplicate), ("--seed", seed)):
                if value is not None:
                    raise click.BadParameter("applies only with --shuffle", param_hint=option)
        settings, config = load(tool=True)
        webhook = Webhook.of(settings, config, source, url)
        if shuffle:
            seed = random.SystemRandom().randrange(2**32) if seed is None else seed
            duplicate = DEFAULT_DUPLICATE if duplicate is None else duplicate
            order = f"shuffled with --seed {seed}, {duplicate:.0%} of events twice"
        else:
            order = "in order"
        what = repr(chosen[0].name) if name != ALL else f"each of {len(chosen)} scenarios"
        click.echo(f"POST {webhook.url}: {sessions} session(s) of {what}, {order}")
        rng = random.Random(seed) if shuffle else None
        plans = make_plans(chosen, sessions, time.time(), samples.new_session_id, rng, duplicate or 0.0)
        # closing: leaving early (the relay is unreachable) cancels the sessions not yet started
        with closing(run(plans, webhook, interval, time.sleep)) as results:
            ok = report(results, webhook)
        if not ok:
            sys.exit(1)


def scenario_lines() -> list[str]:
    """The text of `relay simulate --list`: name, expected outcome, event count, what happens."""
    width = max(len(name) for name in SCENARIOS)
    expected_width = max(len(s.expected) for s in SCENARIOS.values())
    lines = [
        f"{s.name:{width}}  {s.expected:{expected_width}}  {len(s.steps):2} events: {s.description}"
        for s in SCENARIOS.values()
    ]
    return [*lines, f"{ALL:{width}}  every scenario above"]


def _chosen(name: str | None) -> list[Scenario]:
    known = ", ".join(map(repr, [*SCENARIOS, ALL]))
    if name is None:
        raise click.UsageError(f"missing SCENARIO: one of {known} (--list describes them)")
    if name == ALL:
        return list(SCENARIOS.values())
    if name not in SCENARIOS:
        raise click.BadParameter(f"no scenario named {name!r} (known: {known})", param_hint="SCENARIO")
    return [SCENARIOS[name]]


def make_plans(
    chosen: list[Scenario],
    sessions: int,
    now: float,
    new_id: Callable[[], str],
    rng: random.Random | None,
    duplicate: float,
) -> list[Plan]:
    """`sessions` sessions of each scenario, each with an id of `new_id`; shuffled when `rng` is given."""
    plans = []
    for scenario in chosen:
        # The session ends now: WMS sends no timestamp from the future, and a freshness window
        # refuses timestamps far from now whichever side they are on.
        start = int(now) - scenario.duration
        for _ in range(sessions):
            session_id = new_id()
            events = play(scenario.name, session_id, start)
            plans.append(Plan(scenario, session_id, events if rng is None else shuffled(events, rng, duplicate)))
    return plans


def play_session(plan: Plan, webhook: Webhook, interval: float, sleep: Callable[[float], None]) -> Played:
    """Post one session's events in its plan's order, `interval` s apart; stop at a post with no answer."""
    played = Played(plan)
    with requests.Session() as http:  # one connection a session, as one browser tab has
        for i, event in enumerate(plan.events):
            if i and interval:
                sleep(interval)
            try:
                response = webhook.post(samples.to_body(event), http)
            except requests.RequestException as exc:
                played.unreachable = exc
                break
            if response.status_code == 202:
                played.accepted += 1
            elif response.status_code == 200 and _json(response).get("status") == "duplicate":
                played.duplicate += 1
            else:
                played.failures.append(f"sequence {event['sequence']} {event['event']}: {_answer(response)}")
    return played


def run(
    plans: list[Plan], webhook: Webhook, interval: float, sleep: Callable[[float], None]
) -> Generator[Played, None, None]:
    """Play every plan, MAX_PARALLEL sessions at a time; yield each session's answers in plan order."""
    with ThreadPoolExecutor(max_workers=min(len(plans), MAX_PARALLEL)) as pool:
        futures = [pool.submit(play_session, plan, webhook, interval, sleep) for plan in plans]
        try:
            for future in futures:
                yield future.result()
        finally:  # closed early: start no more sessions
            for future in futures:
                future.cancel()


def report(results: Iterable[Played], webhook: Webhook) -> bool:
    """Print a line per session and a total; False when a post failed or got no answer."""
    sessions = sent = accepted = duplicate = failed = 0
    for played in results:
        if played.unreachable is not None:
            click.echo(webhook.unreachable(played.unreachable), err=True)
            return False
        click.echo("\n".join(session_lines(played)))
        sessions += 1
        sent += played.sent
        accepted += played.accepted
        duplicate += played.duplicate
        failed += len(played.failures)
    click.echo(
        f"total: {sessions} session(s), {sent} events sent: {accepted} accepted, {duplicate} duplicate, {failed} failed"
    )
    return failed == 0


def session_lines(played: Played) -> list[str]:
    """One session's line, then its failed answers (the first SHOWN_FAILURES of them)."""
    plan = played.plan
    answers = f"{played.accepted} accepted, {played.duplicate} duplicate"
    if played.failures:
        answers += f", {len(played.failures)} failed"
    lines = [f"session {plan.session_id} ({plan.scenario.name}): {played.sent} sent: {answers}; "]
    lines[0] += f"expect {plan.scenario.expected}"
    lines += [f"  {failure}" for failure in played.failures[:SHOWN_FAILURES]]
    if len(played.failures) > SHOWN_FAILURES:
        lines.append(f"  ... and {len(played.failures) - SHOWN_FAILURES} more")
    return lines


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _answer(response: requests.Response) -> str:
    """A failed answer in one line: the relay's '<status> <error>: <detail>', or the start of another's body."""
    data = _json(response)
    if "error" in data:
        return f"{response.status_code} {data['error']}: {data.get('detail', '')}"
    text = " ".join(response.text.split())
    return f"{response.status_code} {text[:200]}" if text else str(response.status_code)
