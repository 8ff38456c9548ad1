"""`relay simulate` against the real app behind a real HTTP server, on the private Redis: what it
prints, and what the relay's inbox holds afterwards."""

import json
import random
import re

import pytest
from click.testing import CliRunner

from config.secret import Secret
from devtools.local_redis import free_port
from relay.cli.main import main
from relay.cli.simulate import Plan, play_session
from relay.cli.webhook import Webhook
from relay.domain.scenarios import SCENARIOS, play, shuffled
from relay.store.keys import INBOX
from tests.conftest import CONFIG_ENV, SECRET

KNOWN = (
    "'success', 'camera-denied', 'constraint-violation', 'websocket-recovered', "
    "'reconnection-failed', 'api-error', 'tab-closed', 'idle', 'all'"
)


@pytest.fixture
def env(config_path, redis_server):
    return {"RELAY_CONFIG": str(config_path), "REDIS_URL": redis_server.url, **CONFIG_ENV}


def simulate(env, *args):
    return CliRunner().invoke(main, ["simulate", *args], env=env, catch_exceptions=False)


def session_ids(output: str) -> list[str]:
    return re.findall(r"^session (\S+) ", output, re.MULTILINE)


def inbox(redis) -> list[tuple[str, dict]]:
    """(event id, body) of every inbox entry, in arrival order."""
    return [(f[b"id"].decode(), json.loads(f[b"body"])) for _, f in redis.xrange(INBOX)]


def test_a_session_is_played_in_order_signed_and_accepted(env, live_url, redis):
    url = f"{live_url}/hooks/wms"
    result = simulate(env, "success", "--url", url)
    assert result.exit_code == 0, result.output
    (sid,) = session_ids(result.output)
    assert result.output.splitlines() == [
        f"POST {url}: 1 session(s) of 'success', in order",
        f"session {sid} (success): 13 sent: 13 accepted, 0 duplicate; expect completed",
        "total: 1 session(s), 13 events sent: 13 accepted, 0 duplicate, 0 failed",
    ]
    assert SECRET not in result.output
    entries = inbox(redis)
    assert [event_id for event_id, _ in entries] == [f"wms:{sid}:{i}" for i in range(13)]
    assert [body["event"] for _, body in entries] == list(SCENARIOS["success"].codes)
    assert entries[6][1]["payload"]["snr"] == 1.8


def test_shuffled_sessions_send_a_fifth_twice_and_the_relay_answers_duplicate(env, live_url, redis):
    url = f"{live_url}/hooks/wms"
    result = simulate(env, "constraint-violation", "--url", url, "--sessions", "3", "--shuffle", "--seed", "7")
    assert result.exit_code == 0, result.output
    sids = session_ids(result.output)
    assert len(set(sids)) == 3
    assert result.output.splitlines() == [
        f"POST {url}: 3 session(s) of 'constraint-violation', shuffled with --seed 7, 20% of events twice",
        *(
            f"session {sid} (constraint-violation): 13 sent: 11 accepted, 2 duplicate; expect failed (CONSTRAINT_VIOLATION)"
            for sid in sids
        ),
        "total: 3 session(s), 39 events sent: 33 accepted, 6 duplicate, 0 failed",
    ]
    # Each session's events arrived in the order the seed gives (the first of each pair accepted).
    rng = random.Random(7)
    entries = inbox(redis)
    for sid in sids:
        order = [e["sequence"] for e in shuffled(play("constraint-violation", sid, 0), rng)]
        accepted = [body["sequence"] for event_id, body in entries if body["sessionId"] == sid]
        assert accepted == list(dict.fromkeys(order))
        assert sorted(accepted) == list(range(11))


def test_all_plays_every_scenario(env, live_url, redis):
    url = f"{live_url}/hooks/wms"
    result = simulate(env, "all", "--url", url, "--duplicate", "0", "--shuffle", "--seed", "1")
    assert result.exit_code == 0, result.output
    sids = session_ids(result.output)
    assert result.output.splitlines() == [
        f"POST {url}: 1 session(s) of each of 8 scenarios, shuffled with --seed 1, 0% of events twice",
        f"session {sids[0]} (success): 13 sent: 13 accepted, 0 duplicate; expect completed",
        f"session {sids[1]} (camera-denied): 4 sent: 4 accepted, 0 duplicate; expect failed (CAMERA_PERMISSION_DENIED)",
        f"session {sids[2]} (constraint-violation): 11 sent: 11 accepted, 0 duplicate; expect failed (CONSTRAINT_VIOLATION)",
        f"session {sids[3]} (websocket-recovered): 12 sent: 12 accepted, 0 duplicate; expect completed",
        f"session {sids[4]} (reconnection-failed): 10 sent: 10 accepted, 0 duplicate; expect failed (WEBSOCKET_RECONNECTION_FAILED)",
        f"session {sids[5]} (api-error): 12 sent: 12 accepted, 0 duplicate; expect failed (API_ERROR)",
        f"session {sids[6]} (tab-closed): 9 sent: 9 accepted, 0 duplicate; expect abandoned (PAGE_UNLOADED)",
        f"session {sids[7]} (idle): 7 sent: 7 accepted, 0 duplicate; expect abandoned (idle)",
        "total: 8 session(s), 78 events sent: 78 accepted, 0 duplicate, 0 failed",
    ]
    assert len(inbox(redis)) == 78


def test_many_sessions_at_once_each_arrive_in_order(env, live_url, redis):
    result = simulate(env, "idle", "--url", f"{live_url}/hooks/wms", "--sessions", "20")
    assert result.exit_code == 0, result.output
    assert (
        result.output.splitlines()[-1] == "total: 20 session(s), 140 events sent: 140 accepted, 0 duplicate, 0 failed"
    )
    entries = inbox(redis)
    for sid in session_ids(result.output):
        assert [body["sequence"] for _, body in entries if body["sessionId"] == sid] == list(range(7))


def test_refused_posts_are_shown_and_exit_1(env, live_url, redis):
    url = f"{live_url}/hooks/wms"
    result = simulate(dict(env, WMS_MAC_SECRET="not-the-relays-secret"), "idle", "--url", url)
    assert result.exit_code == 1
    (sid,) = session_ids(result.output)
    refused = "401 unauthorized: missing or invalid X-WMS-Content-MAC signature"
    assert result.output.splitlines() == [
        f"POST {url}: 1 session(s) of 'idle', in order",
        f"session {sid} (idle): 7 sent: 0 accepted, 0 duplicate, 7 failed; expect abandoned (idle)",
        f"  sequence 0 WMS_LOADED: {refused}",
        f"  sequence 1 CONFIGURATION_LOADED: {refused}",
        f"  sequence 2 CAMERA_PERMISSION_GRANTED: {refused}",
        f"  sequence 3 CAMERA_STARTED: {refused}",
        f"  sequence 4 MEASUREMENT_STARTED: {refused}",
        "  ... and 2 more",
        "total: 1 session(s), 7 events sent: 0 accepted, 0 duplicate, 7 failed",
    ]
    assert inbox(redis) == []


def test_an_answer_that_is_not_the_relays_is_shown_as_it_came(env, live_url):
    result = simulate(env, "camera-denied", "--url", f"{live_url}/nowhere")
    assert result.exit_code == 1
    assert result.output.splitlines()[2].startswith("  sequence 0 WMS_LOADED: 404 ")


def test_an_unreachable_relay_is_one_line_and_exit_1(env):
    url = f"http://127.0.0.1:{free_port()}/hooks/wms"
    result = simulate(env, "success", "--url", url, "--sessions", "3")
    assert result.exit_code == 1
    assert result.stdout == f"POST {url}: 3 session(s) of 'success', in order\n"
    assert result.stderr == f"error: cannot reach {url}: ConnectionError (is the relay running?)\n"


def test_the_default_url_is_the_local_relay_on_port(env, live_url):
    port = live_url.rsplit(":", 1)[1]
    result = simulate(dict(env, PORT=port), "camera-denied")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"POST http://127.0.0.1:{port}/hooks/wms: 1 session(s)")


def test_an_unknown_scenario_is_refused_with_the_known_ones(env):
    result = simulate(env, "sucess")
    assert result.exit_code == 2
    assert (
        result.stderr.splitlines()[-1]
        == f"Error: Invalid value for SCENARIO: no scenario named 'sucess' (known: {KNOWN})"
    )


def test_a_missing_scenario_says_which_exist(env):
    result = simulate(env)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: missing SCENARIO: one of {KNOWN} (--list describes them)"


@pytest.mark.parametrize("option", [["--duplicate", "0.5"], ["--seed", "3"]])
def test_shuffle_options_need_shuffle(env, option):
    result = simulate(env, "success", *option)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for {option[0]}: applies only with --shuffle"


def test_an_unknown_source_is_refused(env):
    result = simulate(env, "success", "--source", "crm")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "Error: Invalid value for --source: no source named 'crm' (defined: 'wms')"


def test_list_describes_every_scenario_without_a_config():
    result = CliRunner().invoke(main, ["simulate", "--list"], env={"RELAY_CONFIG": "/nonexistent.yaml"})
    assert (result.exit_code, result.output.splitlines()) == (
        0,
        [
            "success               completed                               13 events: the camera starts, four intermediate results with a rising SNR, results, the redirect",
            "camera-denied         failed (CAMERA_PERMISSION_DENIED)        4 events: the user denies the camera and closes the tab",
            "constraint-violation  failed (CONSTRAINT_VIOLATION)           11 events: mid-scan the face leaves the centre: the measurement is canceled, the tab closed",
            "websocket-recovered   completed                               12 events: the websocket drops mid-scan and reconnects; results arrive",
            "reconnection-failed   failed (WEBSOCKET_RECONNECTION_FAILED)  10 events: the websocket drops mid-scan and fails to reconnect: the measurement is canceled",
            "api-error             failed (API_ERROR)                      12 events: the scan completes but the API refuses the results (MEASUREMENT_CLOSED)",
            "tab-closed            abandoned (PAGE_UNLOADED)                9 events: mid-scan the user switches away and closes the tab",
            "idle                  abandoned (idle)                         7 events: one intermediate result, then nothing more",
            "all                   every scenario above",
        ],
    )


def test_interval_spaces_a_sessions_events(live_url, redis):
    sleeps: list[float] = []
    plan = Plan(SCENARIOS["camera-denied"], "s-1", play("camera-denied", "s-1", 1689684577))
    webhook = Webhook(f"{live_url}/hooks/wms", Secret(SECRET))
    played = play_session(plan, webhook, 2.5, sleeps.append)
    assert (played.sent, played.accepted, sleeps) == (4, 4, [2.5, 2.5, 2.5])
