"""Dead letters end to end: made by a destination that stays down, listed, replayed, purged,
expired; through the store, the CLI and the admin API."""

import itertools
import json
import logging
import time

import pytest
from click.testing import CliRunner

from relay.cli.main import main
from relay.domain.event import parse_event
from relay.domain.samples import sample_session, to_body
from relay.store import dead_letters, keys, queues
from relay.store.event_log import attempts_of
from relay.store.inbox import envelope_of
from tests.conftest import ADMIN_TOKEN, FANOUT_YAML, signed_post
from tests.peers import Reply

SHORT = FANOUT_YAML.replace("    timeout: 2s\n", "    timeout: 2s\n    retry: {delays: [1s, 1s], jitter: 0}\n")
CRM = "/crm?token=crm-token"


def kill_callbacks(relay, event_count=1):
    relay.http.script(CRM, *[Reply(503, b"down for maintenance")] * (3 * event_count))


def run_schedule_out(relay):
    relay.drain()
    while relay.run_due_retries():
        relay.drain()


def test_a_destination_down_for_the_whole_schedule_leaves_a_dead_letter_then_replay_delivers_once(relay_factory):
    relay = relay_factory(SHORT)
    (event,) = sample_session(("WMS_LOADED",))
    event_id = f"wms:{event['sessionId']}:0"
    kill_callbacks(relay)
    signed_post(relay.client, to_body(event))
    run_schedule_out(relay)

    assert len(relay.http.to(CRM)) == 3  # the attempt and both retries of the shortened schedule
    (letter,) = dead_letters.find(relay.redis, dead_letters.Filter())
    assert (letter.destination, letter.event_id, letter.attempts, letter.status) == ("crm", event_id, 3, "HTTP 503")
    assert [(a["attempt"], a["outcome"]) for a in attempts_of(relay.redis, event_id)] == [
        (1, "transient"),
        (2, "transient"),
        (3, "transient"),
    ]

    # The receiver is back: replay delivers it once, and a second replay has nothing to do.
    result = dead_letters.replay(relay.redis, [letter], 3600)
    assert (len(result.replayed), result.refused) == (1, [])
    run_schedule_out(relay)
    assert len(relay.http.to(CRM)) == 4 and relay.http.to(CRM)[-1].body == to_body(event)
    assert dead_letters.find(relay.redis, dead_letters.Filter()) == []
    assert relay.redis.hget(keys.delivery_key(event_id), "crm") == b"ok"


def test_replaying_to_a_destination_that_already_has_the_event_is_refused_unless_forced(relay):
    (event,) = sample_session(("WMS_LOADED",))
    signed_post(relay.client, to_body(event))
    relay.drain()
    envelope = envelope_of(parse_event("wms", to_body(event)), to_body(event))
    fake = dead_letters.DeadLetter("crm", envelope, time.time(), 1, "permanent", "HTTP 400", "")
    assert dead_letters.replay(relay.redis, [fake], 3600).refused == [fake]
    relay.drain()
    assert len(relay.http.to(CRM)) == 1
    assert dead_letters.replay(relay.redis, [fake], 3600, force=True).replayed == [fake]
    relay.drain()
    assert len(relay.http.to(CRM)) == 2


def make_letters(relay, count=3):
    relay.http.script(CRM, *[Reply(400, b"rejected")] * count)
    events = sample_session(("WMS_LOADED",) * count)
    for event in events:  # one at a time: sends run in parallel, and the listing is by time of death
        signed_post(relay.client, to_body(event))
        relay.drain()
    return [f"wms:{e['sessionId']}:{e['sequence']}" for e in events]


def test_filters_and_time_windows(relay):
    ids = make_letters(relay)
    everything = dead_letters.find(relay.redis, dead_letters.Filter())
    assert [letter.event_id for letter in everything] == ids
    session = everything[0].session_id
    assert (
        len(dead_letters.find(relay.redis, dead_letters.Filter(destination="crm", source="wms", session_id=session)))
        == 3
    )
    assert dead_letters.find(relay.redis, dead_letters.Filter(destination="ops-slack")) == []
    assert dead_letters.find(relay.redis, dead_letters.Filter(session_id="other")) == []
    assert len(dead_letters.find(relay.redis, dead_letters.Filter(since=time.time() - 60))) == 3
    assert dead_letters.find(relay.redis, dead_letters.Filter(until=time.time() - 60)) == []


def test_a_count_is_what_a_find_finds_whatever_the_filter(relay):
    ids = make_letters(relay)
    session = ids[0].split(":")[1]
    for which in [
        dead_letters.Filter(),
        dead_letters.Filter(destination="crm"),
        dead_letters.Filter(destination="ops-slack"),
        dead_letters.Filter(since=time.time() - 60),
        dead_letters.Filter(until=time.time() - 60),
        dead_letters.Filter(destination="crm", session_id=session),
        dead_letters.Filter(source="kiosk"),
    ]:
        assert dead_letters.count(relay.redis, which) == len(dead_letters.find(relay.redis, which)), which
    assert dead_letters.count(relay.redis, dead_letters.Filter(destination="crm")) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2h", 1_000_000 - 7200), ("2026-11-28T09:00:00", 1795856400.0), ("2026-11-28T10:00:00+01:00", 1795856400.0)],
)
def test_parse_time(text, expected):
    assert dead_letters.parse_time(text, now=1_000_000) == expected


def test_parse_time_says_what_it_takes():
    with pytest.raises(ValueError) as exc:
        dead_letters.parse_time("yesterday")
    assert (
        str(exc.value) == "must be an ISO 8601 time like 2026-11-28T09:00:00 or a duration ago like 2h, got 'yesterday'"
    )


def test_a_rate_capped_replay_is_spread_over_time(relay):
    ids = make_letters(relay)
    result = dead_letters.replay(relay.redis, dead_letters.find(relay.redis, dead_letters.Filter()), 3600, rate=0.5)
    assert len(result.replayed) == 3
    # Each replay is a fresh first attempt in crm's queue, at its own turn: the first at once, then
    # one every 2 s.
    queued = relay.redis.zrange(keys.queue_key("crm"), 0, -1, withscores=True)
    assert [queues.parse_member(member) for member, _ in queued] == [(i, "crm", 1, 0) for i in ids]
    due = [when for _, when in queued]
    assert due[0] <= time.time()
    assert [when for *_, when in relay.scheduled()] == due[1:]
    assert [b - a for a, b in itertools.pairwise(due)] == pytest.approx([2.0, 2.0], abs=0.001)


def test_dead_letters_past_retention_are_removed_with_a_log_line(relay, caplog):
    ids = make_letters(relay, 1)
    caplog.set_level(logging.WARNING, logger="relay.store.dead_letters")
    assert dead_letters.expire(relay.redis, 14 * 86400) == 0
    assert dead_letters.expire(relay.redis, 14 * 86400, now=time.time() + 15 * 86400) == 1
    assert f"dead letter {ids[0]} -> crm removed: older than the 14-day retention" in caplog.text
    assert relay.redis.zcard(keys.DEAD_LETTERS) == 0 and relay.redis.keys("relay:dead-letter:*") == []


@pytest.fixture
def cli_env(relay, monkeypatch):

    rt = relay.rt
    monkeypatch.setenv("REDIS_URL", rt.settings.redis_url.reveal())
    monkeypatch.setenv("RELAY_CONFIG", rt.settings.config_path)
    monkeypatch.setenv("SMTP_URL", rt.settings.smtp_url.reveal())
    monkeypatch.setenv("EMAIL_FROM", rt.settings.email_from)


def run(*args, input=None):
    return CliRunner().invoke(main, ["dead-letters", *args], input=input, catch_exceptions=False)


def test_the_cli_lists_shows_replays_and_purges(relay, cli_env):
    ids = make_letters(relay, 2)
    listed = run("list", "--json")
    assert [json.loads(line)["event_id"] for line in listed.stdout.splitlines()] == ids
    assert run("list").stderr == "2 dead letter(s)\n"
    shown = json.loads(run("show", "crm", ids[0]).stdout)
    assert (shown["status"], shown["detail"], json.loads(shown["body"])["sequence"]) == ("HTTP 400", "rejected", 0)
    assert [(a["attempt"], a["outcome"], a["status"]) for a in shown["attempt_records"]] == [
        (1, "permanent", "HTTP 400")
    ]
    assert run("show", "crm", "wms:nope:1").exit_code == 1

    assert run("replay", "--dry-run").stdout == "would replay 2 dead letter(s)\n"
    assert len(dead_letters.find(relay.redis, dead_letters.Filter())) == 2  # a dry run changes nothing
    assert run("replay", "--session", shown["session_id"], "--since", "1h").stdout == "replayed 2 dead letter(s)\n"
    relay.drain()
    assert len(relay.http.to(CRM)) == 4

    make_letters(relay, 1)
    assert run("purge", input="n\n").exit_code == 1  # asked, refused
    assert run("purge", "--yes").stdout == "purged 1 dead letter(s)\n"
    assert run("list").stderr == "0 dead letter(s)\n"
    assert "Invalid value for --since: must be an ISO 8601 time" in run("list", "--since", "whenever").output


def admin(relay, method, path, token=ADMIN_TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return getattr(relay.client, method)(f"/admin{path}", headers=headers, **kwargs)


def test_the_admin_api_needs_the_bearer_token(relay):
    for token in (None, "wrong-token-0123456789abcdef"):
        response = admin(relay, "get", "/dead-letters", token=token)
        assert (response.status_code, response.json) == (
            401,
            {"error": "unauthorized", "detail": "missing or invalid bearer token"},
        )
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_admin_api_lists_shows_replays_and_purges(relay):
    ids = make_letters(relay, 2)
    listed = admin(relay, "get", "/dead-letters?destination=crm").json
    assert (listed["count"], [letter["event_id"] for letter in listed["dead_letters"]]) == (2, ids)
    shown = admin(relay, "get", f"/dead-letters/crm/{ids[0]}").json
    assert shown["event_id"] == ids[0] and json.loads(shown["body"])["sequence"] == 0
    assert [a["status"] for a in shown["attempt_records"]] == ["HTTP 400"]
    assert admin(relay, "get", "/dead-letters/crm/wms:nope:1").status_code == 404
    assert admin(relay, "post", "/dead-letters/replay", json={"dry_run": True}).json == {
        "dry_run": True,
        "replayed": 2,
        "refused": [],
    }
    assert admin(relay, "post", "/dead-letters/replay", json={"rate": "fast"}).json == {
        "error": "invalid_request",
        "detail": "rate: must be a number of replays per second from 0.01 to 1000.0, got 'fast'",
    }
    assert admin(relay, "post", "/dead-letters/replay", json={"session": "other"}).json["replayed"] == 0
    assert admin(relay, "post", "/dead-letters/replay", json={"session": ids[0].split(":")[1]}).json["replayed"] == 2
    make_letters(relay, 1)
    assert admin(relay, "post", "/dead-letters/purge", json={"all": True}).json == {"purged": 1}
    assert admin(relay, "get", "/dead-letters").json["count"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "detail"),
    [
        ("post", "/dead-letters/purge", {}, 'no filter given: name one, or say "all": true to mean every dead letter'),
        (
            "post",
            "/dead-letters/purge",
            {"destinaton": "crm"},
            "unknown key 'destinaton' (allowed: 'destination', 'source', 'session', 'since', 'until', 'all')",
        ),
        ("post", "/dead-letters/replay", {"since": [1]}, "since: must be a string"),
        (
            "get",
            "/dead-letters?since=whenever",
            None,
            "since: must be an ISO 8601 time like 2026-11-28T09:00:00 or a duration ago like 2h, got 'whenever'",
        ),
    ],
)
def test_the_admin_api_refuses_filters_it_does_not_understand(relay, method, path, body, detail):
    make_letters(relay, 1)
    response = admin(relay, method, path, json=body) if body is not None else admin(relay, method, path)
    assert (response.status_code, response.json) == (400, {"error": "invalid_filter", "detail": detail})
    assert len(dead_letters.find(relay.redis, dead_letters.Filter())) == 1  # nothing changed


def test_without_a_token_the_admin_api_does_not_exist(client):
    response = client.get("/admin/dead-letters", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 404
