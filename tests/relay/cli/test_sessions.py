"""`relay sessions list|show` on sessions built through the real path: signed events posted to the
app, fanned out and delivered by an in-process worker to local peers, outcomes settled by the
sessions' timers. The same sessions over the admin API: tests/relay/web/test_admin_sessions.py."""

import json
import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from relay.cli.main import main
from relay.cli.sessions import delivery_text
from relay.domain.samples import to_body
from relay.domain.scenarios import measurement_id, play
from relay.store import destination_state, due, keys, session_view, sessions
from tests.conftest import Relay, signed_post
from tests.peers import Reply

SESSIONS_YAML = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
  kiosk: {mac_secrets: ["%(secret)s"]}
destinations:
  ops-slack: {type: slack, webhook_url: "%(http)s/slack/T000/B000/XXXX", retry: {delays: [10m]}}
  ops-email: {type: email, to: [ops@example.com]}
  crm: {type: http, url: "%(http)s/crm", signing_secret: "%(crm_secret)s"}
rules:
  - {name: failed-measurements, match: {severity: ">=WARN"}, to: [ops-slack, ops-email]}
  - {name: everything-downstream, match: {}, to: [crm]}
  - {name: outcomes, match: {event: [SESSION_FAILED]}, to: [ops-slack, crm]}
"""
SLACK = "/slack/T000/B000/XXXX"
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z: WMS's timestamps of the played sessions
FAILED_MID = measurement_id("s-failed")


@pytest.fixture
def relay(relay_factory) -> Relay:
    """The relay of SESSIONS_YAML: sources wms and kiosk; Slack, mail and a callback (crm)."""
    return relay_factory(SESSIONS_YAML)


@pytest.fixture
def env(redis_server, tmp_path, smtp_peer):
    """The environment of a `relay` command run beside the relay relay_factory builds (the
    config file it writes, its Redis and SMTP server)."""
    return {
        "RELAY_CONFIG": str(tmp_path / "relay.yaml"),
        "REDIS_URL": redis_server.url,
        "SMTP_URL": smtp_peer.url,
        "EMAIL_FROM": "relay@wms.example.com",
    }


def post(relay: Relay, events: list[dict], source: str = "wms") -> None:
    for event in events:
        response = signed_post(relay.client, to_body(event), source=source)
        assert response.status_code == 202, response.json


def failed_session(relay: Relay, settle: bool = True) -> None:
    """s-failed: a constraint violation, sequences 3-4 never received. Its ERROR event finds
    Slack answering 503 (a retry is scheduled) and the mail server refusing the address (a dead
    letter); the events after it are delivered everywhere. Settled, SESSION_FAILED goes out."""
    events = [e for e in play("constraint-violation", "s-failed", T0) if e["sequence"] not in (3, 4)]
    relay.http.script(SLACK, Reply(503, b"unavailable"))
    relay.smtp.rcpt_reply = "550 5.1.1 no such user"
    post(relay, events[:7])  # up to the CONSTRAINT_VIOLATION, sequence 8
    relay.drain()
    relay.smtp.rcpt_reply = None
    post(relay, events[7:])
    relay.drain()
    if settle:
        assert relay.settle_sessions() == 1
        relay.drain()


def run(env, *args):
    return CliRunner().invoke(main, ["sessions", *args], env=env, catch_exceptions=False)


def utc(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_event_at(relay: Relay, source: str, session_id: str) -> str:
    score = relay.redis.zscore(keys.SESSIONS, f"{source}:{session_id}")
    assert score is not None
    return utc(score)


def test_show_prints_the_outcome_then_the_timeline_with_gaps_and_deliveries(relay, env):
    failed_session(relay)
    emitted = sessions.read(relay.redis, "wms", "s-failed").final["at"]
    result = run(env, "show", "s-failed")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "session wms:s-failed",
        f"outcome: failed (CONSTRAINT_VIOLATION at sequence 8), emitted {utc(emitted)}",
        "outcome event: wms:s-failed:session SESSION_FAILED -> ops-slack ok, crm ok",
        f"measurement ids: {FAILED_MID}",
        "events: 9 from 2023-11-14T22:13:20Z to 2023-11-14T22:13:44Z (24 s); 1 gap, 0 out of order, 0 late",
        "last SNR: 1.4",
        "timeline:",
        "2023-11-14T22:13:20Z   +0s   #0  WMS_LOADED                 INFO   -> crm ok",
        "2023-11-14T22:13:21Z   +1s   #1  CONFIGURATION_LOADED       INFO   -> crm ok",
        "2023-11-14T22:13:25Z   +5s   #2  CAMERA_PERMISSION_GRANTED  INFO   -> crm ok",
        "… sequence 3–4 missing",
        "2023-11-14T22:13:30Z  +10s   #5  MEASUREMENT_CREATED        INFO   -> crm ok",
        '2023-11-14T22:13:35Z  +15s   #6  INTERMEDIATE_RESULTS       INFO   {"snr":2.1,"sequence":1}  -> crm ok',
        '2023-11-14T22:13:40Z  +20s   #7  INTERMEDIATE_RESULTS       INFO   {"snr":1.4,"sequence":2}  -> crm ok',
        (
            '2023-11-14T22:13:41Z  +21s   #8  CONSTRAINT_VIOLATION       ERROR  {"constraint":"FACE_NOT_CENTERED"}  '
            "-> ops-slack attempt 2 scheduled (last: HTTP 503), ops-email dead at attempt 1 (SMTP 550), crm ok"
        ),
        "2023-11-14T22:13:42Z  +22s   #9  MEASUREMENT_CANCELED       WARN   -> ops-slack ok, ops-email ok, crm ok",
        "2023-11-14T22:13:44Z  +24s  #10  PAGE_UNLOADED              INFO   -> crm ok",
    ]


def test_show_follows_a_retry_to_its_end_and_a_paused_destination(relay, env):
    failed_session(relay)
    destination_state.pause(relay.redis, "ops-slack", "paused by an operator", "operator", None)
    line = next(line for line in run(env, "show", "s-failed").output.splitlines() if "#8" in line)
    assert line.endswith(
        "-> ops-slack attempt 2 waiting: destination paused (last: HTTP 503), "
        "ops-email dead at attempt 1 (SMTP 550), crm ok"
    )
    destination_state.resume(relay.redis, "ops-slack", "an operator", relay.rt.config.state_ttl)
    assert relay.run_due_retries() == 1
    relay.drain()
    line = next(line for line in run(env, "show", "s-failed").output.splitlines() if "#8" in line)
    assert line.endswith("-> ops-slack ok at attempt 2, ops-email dead at attempt 1 (SMTP 550), crm ok")


def test_an_outcome_not_yet_emitted_says_so(relay, env):
    failed_session(relay, settle=False)
    lines = run(env, "show", "s-failed").output.splitlines()
    assert lines[:3] == [
        "session wms:s-failed",
        "outcome: failed (CONSTRAINT_VIOLATION at sequence 8; not emitted yet)",
        f"measurement ids: {FAILED_MID}",
    ]


def test_delivery_records_that_expired_are_said_to_have(relay):
    failed_session(relay)
    for key in relay.redis.scan_iter(match=keys.delivery_key("*")):
        relay.redis.delete(key)
    session = sessions.read(relay.redis, "wms", "s-failed")
    config = relay.rt.config
    recent = session_view.detail(relay.redis, config, session)
    assert recent["timeline"][0]["deliveries"] == [] and recent["outcome_event"]["deliveries"] == []
    later = session_view.detail(relay.redis, config, session, now=time.time() + config.state_ttl + 86400 + 1)
    assert [e["deliveries"] for e in later["timeline"]] == [None] * 9
    assert later["outcome_event"]["deliveries"] is None


@pytest.mark.parametrize(
    ("delivery", "text"),
    [
        ({"state": "ok", "attempt": 1, "last_status": None}, "crm ok"),
        ({"state": "ok", "attempt": 3, "last_status": "HTTP 200"}, "crm ok at attempt 3"),
        ({"state": "dead", "attempt": 8, "last_status": "HTTP 503"}, "crm dead at attempt 8 (HTTP 503)"),
        ({"state": "sending", "attempt": 1, "last_status": None}, "crm attempt 1 sending"),
        ({"state": "scheduled", "attempt": 3, "last_status": "timeout"}, "crm attempt 3 scheduled (last: timeout)"),
        ({"state": "waiting", "attempt": 1, "last_status": None}, "crm attempt 1 waiting: destination paused"),
        (
            {"state": "held", "attempt": None, "last_status": None},
            "crm held until the session's earlier events are done",
        ),
        (
            {"state": "grouped", "attempt": None, "last_status": None},
            "crm grouped: waits for the session's next grouped message",
        ),
        (
            {"state": "scheduled", "attempt": 2, "last_status": "HTTP 503", "grouped_in": "wms:s:group:crm:part-3"},
            "crm attempt 2 in grouped message 3 scheduled (last: HTTP 503)",
        ),
        ({"state": "unknown", "attempt": None, "last_status": None}, "crm in an unknown state"),
    ],
)
def test_each_state_of_a_delivery_in_words(delivery, text):
    assert delivery_text({"destination": "crm", **delivery}) == text


def three_sessions(relay: Relay) -> None:
    """s-failed (the oldest), s-done (completed), then s-open: three
    events, still in progress (posted after the others were settled)."""
    failed_session(relay)
    post(relay, play("success", "s-done", T0 + 60))
    relay.drain()
    relay.settle_sessions()
    relay.drain()
    post(relay, play("idle", "s-open", T0 + 120)[:3])
    relay.drain()


def test_list_shows_one_line_per_session_newest_first(relay, env):
    three_sessions(relay)
    result = run(env, "list")
    assert result.exit_code == 0, result.output
    at = {sid: last_event_at(relay, "wms", sid) for sid in ("s-open", "s-done", "s-failed")}
    assert result.output.splitlines() == [
        f"{at['s-open']}  wms  s-open    in_progress                     3 events  0 gaps  no measurement",
        (
            f"{at['s-done']}  wms  s-done    completed                      13 events  0 gaps  "
            f"measurement {measurement_id('s-done')}"
        ),
        f"{at['s-failed']}  wms  s-failed  failed (CONSTRAINT_VIOLATION)   9 events   1 gap  measurement {FAILED_MID}",
    ]
    listed = json.loads(run(env, "list", "--json").output)
    assert (listed["count"], listed["more"]) == (3, False)
    assert listed["sessions"][2] == {
        "source": "wms",
        "session_id": "s-failed",
        "last_event_at": listed["sessions"][2]["last_event_at"],
        "outcome": "failed",
        "reason": "CONSTRAINT_VIOLATION",
        "emitted": True,
        "events": 9,
        "gaps": 1,
        "measurement_id": FAILED_MID,
    }
    assert utc(datetime.fromisoformat(listed["sessions"][2]["last_event_at"]).timestamp()) == at["s-failed"]


def test_list_filters_by_outcome_source_and_limit(relay, env):
    three_sessions(relay)
    assert [line.split()[2] for line in run(env, "list", "--outcome", "failed").output.splitlines()] == ["s-failed"]
    assert [line.split()[2] for line in run(env, "list", "--outcome", "in_progress").output.splitlines()] == ["s-open"]
    assert run(env, "list", "--outcome", "abandoned").output == "no abandoned sessions\n"
    assert run(env, "list", "--source", "kiosk").output == "no sessions at source 'kiosk'\n"
    limited = run(env, "list", "--limit", "2").output.splitlines()
    assert [line.split()[2] for line in limited[:2]] == ["s-open", "s-done"]
    assert limited[2:] == ["more sessions may match: raise --limit, or narrow --since"]
    assert len(run(env, "list", "--limit", "3").output.splitlines()) == 3  # none beyond: no such line


def test_a_listing_reads_the_index_page_by_page_up_to_its_bound(relay, monkeypatch):
    three_sessions(relay)
    monkeypatch.setattr(session_view, "_PAGE", 1)
    listing = session_view.find(relay.redis, outcome="failed")
    assert ([s.session_id for s, _ in listing.sessions], listing.more) == (["s-failed"], False)
    listing = session_view.find(relay.redis, limit=2)
    assert ([s.session_id for s, _ in listing.sessions], listing.more) == (["s-open", "s-done"], True)
    monkeypatch.setattr(session_view, "SCAN_MAX", 2)  # the failed session is the third newest
    assert session_view.find(relay.redis, outcome="failed") == session_view.Listing([], more=True)


def test_since_keeps_the_sessions_with_an_event_within_that_long(relay, env):
    three_sessions(relay)
    relay.redis.zadd(keys.SESSIONS, {"wms:s-failed": time.time() - 3 * 3600})  # its last event 3 h ago
    assert [line.split()[2] for line in run(env, "list", "--since", "2h").output.splitlines()] == [
        "s-open",
        "s-done",
    ]
    assert len(run(env, "list", "--since", "4h").output.splitlines()) == 3
    assert run(env, "list", "--since", "1m", "--outcome", "failed").output == (
        "no failed sessions with an event in the last 1m\n"
    )


def test_no_sessions_at_all_says_so(relay, env):
    assert (run(env, "list").exit_code, run(env, "list").output) == (0, "no sessions\n")
    assert json.loads(run(env, "list", "--json").output) == {"count": 0, "more": False, "sessions": []}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--since", "yesterday"],
            (
                "Error: Invalid value for '--since': must be a duration like '30s', '5m', '7d' or a number of seconds, "
                "got 'yesterday'"
            ),
        ),
        (["--since", "0"], "Error: Invalid value for '--since': must be a positive duration, got '0'"),
        (
            ["--outcome", "lost"],
            (
                "Error: Invalid value for '--outcome': 'lost' is not one of "
                "'in_progress', 'completed', 'failed', 'abandoned'."
            ),
        ),
        (["--limit", "0"], "Error: Invalid value for '--limit': 0 is not in the range 1<=x<=1000."),
    ],
)
def test_bad_filters_are_refused_with_exit_2(env, args, error):
    result = run(env, "list", *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == error


def test_an_unknown_session_is_an_error_and_exit_1(relay, env):
    result = run(env, "show", "nobody")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no session 'nobody' at any source ('wms', 'kiosk') (a session is kept 7d after its last event)\n"
    )
    result = run(env, "show", "nobody", "--source", "wms")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: no session 'nobody' at source 'wms' (a session is kept 7d after its last event)\n",
    )


def test_a_session_id_at_two_sources_shows_both_unless_source_picks_one(relay, env):
    post(relay, play("camera-denied", "s-twice", T0))
    post(relay, play("idle", "s-twice", T0 + 5)[:2], source="kiosk")
    relay.drain()
    both = run(env, "show", "s-twice")
    assert both.exit_code == 0, both.output
    assert both.stderr == "session 's-twice' is at 2 sources ('wms', 'kiosk'): all shown; --source picks one\n"
    headers = [line for line in both.stdout.splitlines() if line.startswith(("session ", "outcome:"))]
    assert headers == [
        "session wms:s-twice",
        "outcome: failed (CAMERA_PERMISSION_DENIED at sequence 2; not emitted yet)",
        "session kiosk:s-twice",
        "outcome: in_progress",
    ]
    assert "\n\nsession kiosk:s-twice\n" in both.stdout
    one = run(env, "show", "s-twice", "--source", "kiosk")
    assert (one.exit_code, one.stderr, one.stdout.splitlines()[0]) == (0, "", "session kiosk:s-twice")
    lines = [json.loads(line) for line in run(env, "show", "s-twice", "--json").stdout.splitlines()]
    assert [(d["source"], d["outcome"], d["event_count"]) for d in lines] == [
        ("wms", "failed", 4),
        ("kiosk", "in_progress", 2),
    ]


def test_ids_and_payload_values_cannot_break_a_line_or_drive_the_terminal(relay, env):
    events = play("constraint-violation", "s x", T0)[:9]
    events[8]["payload"]["constraint"] = "\x1b[31mred\nline"
    post(relay, events)
    relay.drain()
    output = run(env, "show", "s x").output
    assert "\x1b" not in output and output.splitlines()[0] == 'session wms:"s x"'
    assert '{"constraint":"\\u001b[31mred\\nline"}' in output
    assert run(env, "list").output.split("  ")[2] == '"s x"'


ORDERED_YAML = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  crm: {type: http, url: "%(http)s/crm", signing_secret: "%(crm_secret)s", ordered: true, gap_timeout: 200ms}
rules:
  - {name: everything-downstream, match: {}, to: [crm]}
"""


def test_an_ordered_destination_shows_what_it_holds_and_what_it_skipped(relay_factory, env):
    relay = relay_factory(ORDERED_YAML)
    post(relay, [e for e in play("camera-denied", "s-ordered", T0) if e["sequence"] != 1])
    relay.drain()
    lines = run(env, "show", "s-ordered").output.splitlines()
    assert lines[-4:] == [
        "2023-11-14T22:13:20Z  +0s  #0  WMS_LOADED                INFO   -> crm ok",
        "… sequence 1 missing",
        "2023-11-14T22:13:25Z  +5s  #2  CAMERA_PERMISSION_DENIED  ERROR  -> crm held until the session's earlier events are done",
        "2023-11-14T22:13:27Z  +7s  #3  PAGE_UNLOADED             INFO   -> crm held until the session's earlier events are done",
    ]
    time.sleep(0.3)  # past the gap timeout
    assert relay.run_due_timers((due.ORDER,)) == 1
    relay.drain()
    lines = run(env, "show", "s-ordered").output.splitlines()
    assert "skipped by crm (ordered) after its gap timeout: sequence 1" in lines
    assert [line.rsplit("-> ", 1)[1] for line in lines[-4:] if "#" in line] == ["crm ok", "crm ok", "crm ok"]


GROUPED_YAML = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  ops-slack: {type: slack, webhook_url: "%(http)s/slack/T000/B000/XXXX"}
  crm: {type: http, url: "%(http)s/crm", signing_secret: "%(crm_secret)s"}
rules:
  - {name: failed-measurements, match: {severity: ">=WARN"}, to: [ops-slack], group_by: session}
  - {name: everything-downstream, match: {}, to: [crm]}
"""


def test_events_of_a_grouped_rule_show_their_grouped_message(relay_factory, env):
    relay = relay_factory(GROUPED_YAML)
    post(relay, play("constraint-violation", "s-grouped", T0)[:10])
    relay.drain()

    def deliveries() -> list[str]:
        lines = run(env, "show", "s-grouped").output.splitlines()
        return [line.rsplit("-> ", 1)[1] for line in lines if "#7 " in line or "#8 " in line or "#9 " in line]

    grouped = "ops-slack grouped: waits for the session's next grouped message, crm ok"
    assert deliveries() == ["crm ok", grouped, grouped]
    assert relay.run_due_timers((due.GROUP,)) == 1
    relay.drain()
    assert len(relay.http.to(SLACK)) == 1
    assert deliveries() == [
        "crm ok",
        "ops-slack ok in grouped message 1, crm ok",
        "ops-slack ok in grouped message 1, crm ok",
    ]
