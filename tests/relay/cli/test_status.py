"""`relay status`: its lines for a given moment, and the command on a real Redis (--json, exit codes).
The worker processes themselves: tests/test_presence.py."""

import json
import re
import time

from click.testing import CliRunner

from relay.cli.main import main
from relay.cli.status import lines
from relay.store import keys, presence
from tests.conftest import CONFIG_ENV

T0 = 1_800_000_000.0


def test_the_lines_for_a_running_a_stopped_and_a_killed_worker(redis):
    presence.beat(redis, "dyno-a:10", started=T0 - 3600, ttl=15, now=T0 - 1.5)
    presence.beat(redis, "dyno-b:11", started=T0 - 3600, ttl=15, now=T0 - 100)  # killed: never left
    presence.beat(redis, "dyno-c:12", started=T0 - 3600, ttl=15, now=T0 - 30)
    presence.leave(redis, "dyno-c:12", now=T0 - 20)
    redis.xadd(keys.INBOX, {"id": "wms:s:0"}, id=f"{int((T0 - 4.2) * 1000)}-0")
    assert lines(presence.status(redis, 60, now=T0)) == [
        "workers: 1 running",
        "  dyno-a:10 (host dyno-a, pid 10): running, last seen 1.5 s ago, started 2027-01-15T07:00:00+00:00",
        "  dyno-c:12 (host dyno-c, pid 12): stopped 20 s ago, started 2027-01-15T07:00:00+00:00",
        "  dyno-b:11 (host dyno-b, pid 11): presumed gone: last seen 100 s ago, started 2027-01-15T07:00:00+00:00",
        "inbox: 1 waiting, the oldest for 4.2 s",
    ]


def test_the_lines_when_events_wait_for_no_worker(redis):
    presence.beat(redis, "dyno-a:10", started=T0 - 3600, ttl=15, now=T0 - 45)
    presence.leave(redis, "dyno-a:10", now=T0 - 45)
    redis.xadd(keys.INBOX, {"id": "wms:s:0"}, id=f"{int((T0 - 30) * 1000)}-0")
    assert lines(presence.status(redis, 45, now=T0))[-2:] == [
        "inbox: 1 waiting, the oldest for 30.0 s",
        (
            "events are being accepted but no worker has been seen for 45 s: scale the worker process "
            "(heroku ps:scale worker=1)"
        ),
    ]


def run(env, *args):
    return CliRunner().invoke(main, ["status", *args], env=env, catch_exceptions=False)


def test_status_json_and_exit_codes(redis, redis_server, config_path):
    env = {"RELAY_CONFIG": str(config_path), "REDIS_URL": redis_server.url, "WORKER_ABSENT_AFTER": "5", **CONFIG_ENV}
    now = time.time()
    presence.beat(redis, "dyno-a:10", started=now - 60, ttl=15, now=now)
    ok = run(env, "--json")
    assert ok.exit_code == 0, ok.output
    body = json.loads(ok.stdout)
    assert {k: body[k] for k in ("running", "absent_for", "inbox", "problem", "absent_after")} == {
        "running": 1,
        "absent_for": 0.0,
        "inbox": {"waiting": 0, "oldest_age": None},
        "problem": None,
        "absent_after": 5,
    }
    assert [(w["id"], w["host"], w["pid"], w["running"], w["left"]) for w in body["workers"]] == [
        ("dyno-a:10", "dyno-a", 10, True, False)
    ]

    presence.leave(redis, "dyno-a:10", now=now - 10)
    redis.xadd(keys.INBOX, {"id": "wms:s:0"})
    absent = run(env)
    assert absent.exit_code == 1
    assert re.fullmatch(
        r"events are being accepted but no worker has been seen for 1\d s: scale the worker process "
        r"\(heroku ps:scale worker=1\)",
        absent.stdout.splitlines()[-1],
    ), absent.stdout
