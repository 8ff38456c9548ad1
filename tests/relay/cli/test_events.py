"""`relay events list|show` and `relay stats` on a session built through the real path (signed
events posted to the app, fanned out and delivered by an in-process worker to local peers:
tests/relay/cli/test_sessions.py's failed_session). Times and durations vary from run to run:
they are checked for their shape, the rest of every line exactly."""

# The fixtures `relay` and `env` are test_sessions.py's, imported: a test naming one is no redefinition.
# ruff: noqa: F811

import json
import re

from click.testing import CliRunner

from relay.cli.main import main
from relay.domain.samples import to_body
from relay.domain.scenarios import play
from relay.store import event_log
from tests.conftest import Relay, signed_post
from tests.relay.cli.test_sessions import FAILED_MID, T0, env, failed_session, relay  # noqa: F401 (fixtures)

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MS = re.compile(r"\b\d+(\.\d)? ms\b")
RETRY = re.compile(r"retry in \d+(\.\d)?s")


def run(env, *args: str):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


BOUND = re.compile(r"<= \d+ ms|> 30000 ms")  # a send time's bucket bound
SINCE = re.compile(r"since \d{4}-\d\d-\d\d \d\d:\d\dZ")  # a window's start


def stats_shape(text: str) -> list[str]:
    """`relay stats`'s lines with the bounds and times replaced, runs of spaces made one."""
    return [
        re.sub(r" +", " ", SINCE.sub("since <date> <hh:mm>Z", BOUND.sub("<ms>", line))) for line in text.splitlines()
    ]


def shape(text: str) -> list[str]:
    """The lines with times, durations and retry delays replaced by what they stand for."""
    return [RETRY.sub("retry in <s>", MS.sub("<ms>", TIME.sub("<time>", line))) for line in text.splitlines()]


def test_list_prints_every_event_newest_first_with_its_outcome_and_destinations(relay, env):
    failed_session(relay)
    result = run(env, "events", "list")
    assert result.exit_code == 0, result.output
    assert shape(result.output) == [
        "<time>  wms:s-failed:session  SESSION_FAILED             delivered  -> ops-slack ok, crm ok",
        "<time>  wms:s-failed:10       PAGE_UNLOADED              delivered  -> crm ok",
        "<time>  wms:s-failed:9        MEASUREMENT_CANCELED       delivered  -> ops-slack ok, ops-email ok, crm ok",
        "<time>  wms:s-failed:8        CONSTRAINT_VIOLATION       failed     -> ops-slack retrying, ops-email failed, crm ok",
        "<time>  wms:s-failed:7        INTERMEDIATE_RESULTS       delivered  -> crm ok",
        "<time>  wms:s-failed:6        INTERMEDIATE_RESULTS       delivered  -> crm ok",
        "<time>  wms:s-failed:5        MEASUREMENT_CREATED        delivered  -> crm ok",
        "<time>  wms:s-failed:2        CAMERA_PERMISSION_GRANTED  delivered  -> crm ok",
        "<time>  wms:s-failed:1        CONFIGURATION_LOADED       delivered  -> crm ok",
        "<time>  wms:s-failed:0        WMS_LOADED                 delivered  -> crm ok",
    ]


def test_list_filters_and_says_when_more_may_match(relay, env):
    failed_session(relay)
    assert shape(run(env, "events", "list", "--outcome", "failed", "--since", "1h").output) == [
        "<time>  wms:s-failed:8  CONSTRAINT_VIOLATION  failed  -> ops-slack retrying, ops-email failed, crm ok"
    ]
    assert shape(run(env, "events", "list", "--destination", "ops-email", "--code", "MEASUREMENT_CANCELED").output) == [
        "<time>  wms:s-failed:9  MEASUREMENT_CANCELED  delivered  -> ops-slack ok, ops-email ok, crm ok"
    ]
    assert shape(run(env, "events", "list", "--session", "s-failed", "--limit", "2").output) == [
        "<time>  wms:s-failed:session  SESSION_FAILED  delivered  -> ops-slack ok, crm ok",
        "<time>  wms:s-failed:10       PAGE_UNLOADED   delivered  -> crm ok",
        "more events may match (3 read): raise --limit, or narrow --since",
    ]
    assert run(env, "events", "list", "--session", "nobody").output == "no events\n"
    assert len(json.loads(run(env, "events", "list", "--measurement", FAILED_MID, "--json").output)["events"]) == 7
    refused = run(env, "events", "list", "--outcome", "lost")
    assert refused.exit_code == 2 and "'lost' is not one of 'failed', 'retrying'" in refused.output


def test_list_json_is_the_store_s_listing(relay, env):
    failed_session(relay)
    printed = json.loads(run(env, "events", "list", "--code", "CONSTRAINT_VIOLATION", "--json").output)
    assert printed == event_log.find(relay.redis, event_log.Query(code="CONSTRAINT_VIOLATION"))
    assert printed["count"] == 1 and printed["events"][0]["id"] == "wms:s-failed:8"


def test_show_prints_the_rules_every_attempt_and_the_body(relay, env):
    failed_session(relay)
    result = run(env, "events", "show", "wms:s-failed:8")
    assert result.exit_code == 0, result.output
    lines = shape(result.output)
    assert lines[:8] == [
        "event wms:s-failed:8",
        "code: CONSTRAINT_VIOLATION (ERROR)",
        "session: wms:s-failed",
        f"measurement: {FAILED_MID}",
        "received: <time>",
        "rules fired: failed-measurements, everything-downstream",
        "outcome: failed: ops-slack retrying, ops-email failed, crm ok",
        "attempts:",
    ]
    assert sorted(lines[8:11]) == [
        "  <time>  crm #1  ok  HTTP 200  <ms>  ok",
        (
            "  <time>  ops-email #1  permanent  SMTP 550  <ms>  all recipients refused: "
            "{'ops@example.com': (550, b'5.1.1 no such user')}"
        ),
        "  <time>  ops-slack #1  transient  HTTP 503  <ms>  retry in <s>  unavailable",
    ]
    assert lines[11] == "body:"
    assert json.loads(lines[12])["payload"] == {"constraint": "FACE_NOT_CENTERED", "measurementId": FAILED_MID}
    assert len(lines) == 13
    shown = json.loads(run(env, "events", "show", "wms:s-failed:8", "--json").output)
    assert shown == event_log.detail(relay.redis, "wms:s-failed:8")


def test_show_of_an_unknown_event_says_what_an_id_is(relay, env):
    result = run(env, "events", "show", "wms:nobody:1")
    assert result.exit_code == 1
    assert result.output == (
        "error: no event 'wms:nobody:1' in the event log (kept 7d, at most 10,000 events a session; an id is "
        "<source>:<sessionId>:<sequence>, or <source>:<sessionId>:session)\n"
    )


def refusals(relay: Relay) -> None:
    """A duplicate of the session's first event, a request with a wrong MAC, one to a source that
    does not exist, and one whose body is not an event: each counted for `relay stats`."""
    first = to_body(play("constraint-violation", "s-failed", T0)[0])
    assert signed_post(relay.client, first).status_code == 200
    assert signed_post(relay.client, first, secret="wrong").status_code == 401
    assert signed_post(relay.client, first, source="nowhere").status_code == 404
    assert signed_post(relay.client, b"{}").status_code == 400


def test_stats_prints_the_last_hour_and_day_per_destination(relay, env):
    failed_session(relay)
    refusals(relay)
    result = run(env, "stats")
    assert result.exit_code == 0, result.output
    window = [
        "  destination  attempts  delivered  failed  dead letters  p50  p99",
        "  crm                10         10       0             0  <ms>  <ms>",
        "  ops-email           2          1       1             1  <ms>  <ms>",
        "  ops-slack           3          2       1             0  <ms>  <ms>",
    ]
    lines = stats_shape(result.output)
    counts = "9 accepted, 1 duplicates, refused: 1 invalid, 1 unauthorized, 1 unknown_source"
    assert lines == [
        re.sub(r" +", " ", line)
        for line in [
            f"last hour (since <date> <hh:mm>Z): {counts}",
            *window,
            f"last day (since <date> <hh:mm>Z): {counts}",
            *window,
            "p50/p99: bounds of send time buckets; 503 answers (Redis down) are counted only by GET /metrics",
        ]
    ]
    figures = json.loads(run(env, "stats", "--json").output)
    assert figures["day"]["destinations"]["crm"]["attempts"] == 10
    assert figures["day"]["requests_by_source"] == {
        "-": {"unknown_source": 1},  # not the name in the URL: a stranger must not make up labels
        "wms": {"accepted": 9, "duplicate": 1, "invalid": 1, "unauthorized": 1},
    }


def test_stats_on_an_empty_redis(relay, env):
    counts = "0 accepted, 0 duplicates, refused: none"
    assert stats_shape(run(env, "stats").output) == [
        f"last hour (since <date> <hh:mm>Z): {counts}",
        " no delivery attempts",
        f"last day (since <date> <hh:mm>Z): {counts}",
        " no delivery attempts",
        "p50/p99: bounds of send time buckets; 503 answers (Redis down) are counted only by GET /metrics",
    ]
