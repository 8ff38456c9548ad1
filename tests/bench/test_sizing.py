"""The sizing bench (bench/sizing.py): its arithmetic, the retention it reads off the config model,
and a tiny run that measures every structure. The figures themselves are the bench's to report
(docs/operations.md "Sizing Redis"), not the suite's."""

import json
from pathlib import Path

import pytest
from redis import Redis

from bench import sizing
from bench.sizing import DAY, MB, SCENARIOS, Structure, capacity, footprint, retention, steady_state, tables
from config.destinations import RetryPolicy
from config.model import RelayConfig
from devtools.local_redis import LocalRedis

STRUCTURES = [
    Structure("dedup marks", "dedup_window", 14.0, 150.0),
    Structure("delivery states", "state_ttl", 14.0, 180.0),
    Structure("dead letters", "dead_letters", 0.03, 700.0),
    Structure("session records", "sessions", 1.0, 1500.0),
    Structure("event log", "event_log", 1.0, 9000.0),
]
FIXED = {"other keys": 4_000.0, "connections": 200_000.0, "Redis itself": 2_000_000.0}


def test_each_structure_grows_with_traffic_times_its_retention() -> None:
    kept = SCENARIOS[0]
    one, ten = steady_state(STRUCTURES, FIXED, kept, 1_000), steady_state(STRUCTURES, FIXED, kept, 10_000)
    assert one["dedup marks"] == pytest.approx(1_000 * 14 * 150 * 7)
    assert one["delivery states"] == pytest.approx(1_000 * 14 * 180 * kept.state_ttl / DAY)
    assert one["dead letters"] == pytest.approx(1_000 * 0.03 * 700 * kept.dead_letters / DAY)
    assert one["event log"] == pytest.approx(1_000 * 9000 * kept.event_log / DAY)
    for name in ("dedup marks", "delivery states", "dead letters", "session records", "event log"):
        assert ten[name] == pytest.approx(10 * one[name]) and one[name] > 0
    assert {name: one[name] for name in FIXED} == FIXED == {name: ten[name] for name in FIXED}


def test_shrunk_settings_shrink_only_what_they_keep() -> None:
    defaults, shrunk = (steady_state(STRUCTURES, FIXED, kept, 10_000) for kept in SCENARIOS)
    assert shrunk["dedup marks"] == pytest.approx(defaults["dedup marks"] / 7)
    assert shrunk["dead letters"] < defaults["dead letters"]
    assert shrunk["event log"] == pytest.approx(defaults["event log"] / 7)
    assert shrunk["delivery states"] == defaults["delivery states"]  # the retry horizon's, not a setting


def test_a_plan_holds_the_most_sessions_whose_steady_state_with_headroom_fits() -> None:
    for kept in SCENARIOS:
        for plan_mb in (25, 50):
            most = capacity(STRUCTURES, FIXED, kept, plan_mb * MB)
            assert sum(steady_state(STRUCTURES, FIXED, kept, most).values()) * sizing.HEADROOM <= plan_mb * MB
            assert sum(steady_state(STRUCTURES, FIXED, kept, most + 1).values()) * sizing.HEADROOM > plan_mb * MB
    assert capacity(STRUCTURES, FIXED, SCENARIOS[0], 1 * MB) == 0  # too small for the fixed part alone


def test_the_retention_is_read_off_the_config_model() -> None:
    defaults = RelayConfig.model_validate({"sources": {"wms": {"mac_secrets": ["s"]}}})
    kept = retention("defaults", {})
    assert (kept.dedup_window, kept.state_ttl, kept.event_log) == (7 * DAY, defaults.state_ttl, 7 * DAY)
    assert kept.dead_letters == 14 * DAY + RetryPolicy().horizon
    shrunk = retention(
        "shrunk",
        {"ingest": {"dedup_window": "1d"}, "dead_letters": {"retention": "3d"}, "event_log": {"retention": "2d"}},
    )
    assert (shrunk.dedup_window, shrunk.event_log) == (DAY, 2 * DAY)
    assert shrunk.dead_letters == 3 * DAY + RetryPolicy().horizon


@pytest.mark.slow  # starts a Procfile worker process
def test_a_tiny_run_measures_every_structure_and_adds_up_to_used_memory(
    redis: Redis, redis_server: LocalRedis, tmp_path: Path
) -> None:
    measured = sizing.measure(redis, redis_server.url, tmp_path, sessions=8, workers=1, fail_rate=0.3, dead_rate=0.1)
    assert measured["events"] == 6 * 15 + 2 * 12 and measured["deliveries"]["ops-slack"] == 4
    structures, fixed = footprint(measured)
    for s in structures:
        assert s.items_per_session > 0 and s.bytes_per_item > 0, s
    assert sum(s.bytes_per_session for s in structures) * 8 + sum(fixed.values()) == pytest.approx(
        measured["after"]["used_memory"]
    )
    assert 0 < sizing.per_key_overhead(measured) < 200  # the TTL table's entry and the buckets
    result = json.loads(json.dumps(tables(structures, fixed)))  # what report.json keeps
    defaults = result["scenarios"][0]["steady_state"]
    for name in ("dedup marks", "delivery states", "dead letters", "session records", "event log"):
        assert defaults["100000"][name] == pytest.approx(100 * defaults["1000"][name])
    assert "## Sizing Redis (8 sessions" in "\n".join(sizing.report_lines({"measurement": measured, **result}))
