"""The counts per minute behind `relay stats` (relay/store/stats.py), on a real Redis: what each
writer counts, which minutes a window sums, the percentiles as bucket bounds, and the expiry.
`relay stats` itself, on a session through the real path: tests/relay/cli/test_events.py."""

import pytest

from relay.domain.event import parse_event
from relay.domain.samples import sample_event, to_body
from relay.store import keys, stats
from relay.store.inbox import Inbox

NOW = 1_800_000_030.0  # 30 s into a minute


def attempts(redis, destination: str, times_ms: list[float], ok: bool = True, now: float = NOW) -> None:
    pipe = redis.pipeline(transaction=False)
    for ms in times_ms:
        stats.count_attempt(pipe, destination, ok, ms / 1000, now)
    pipe.execute()


def test_a_window_sums_the_minutes_it_overlaps_and_no_older_one(redis):
    attempts(redis, "crm", [3.0], now=NOW - 3600 - 60)  # the minute before the hour's first
    attempts(redis, "crm", [3.0], now=NOW - 3600)  # the hour's first minute
    attempts(redis, "crm", [3.0, 30.0], now=NOW)
    attempts(redis, "crm", [40.0], ok=False, now=NOW)
    hour = stats.read(redis, 3600, NOW)
    assert hour.since == (NOW - 3600) // 60 * 60
    assert (hour.destinations["crm"].delivered, hour.destinations["crm"].failed) == (3, 1)
    assert stats.read(redis, 86400, NOW).destinations["crm"].attempts == 5
    assert stats.read(redis, 60, NOW + 120).destinations == {}  # two minutes later: nothing in the last one


def test_percentiles_are_the_bounds_of_the_buckets_that_hold_them(redis):
    attempts(redis, "crm", [1.0] * 98 + [70.0, 40_000.0])
    counted = stats.read(redis, 60, NOW).destinations["crm"]
    assert (counted.percentile(0.50), counted.percentile(0.99), counted.percentile(1.0)) == (5.0, 100.0, float("inf"))
    assert stats.Destination().percentile(0.5) is None
    row = stats.report(redis, NOW)["hour"]["destinations"]["crm"]
    assert row == {"attempts": 100, "delivered": 100, "failed": 0, "dead_letters": 0, "p50_ms": 5.0, "p99_ms": 100.0}
    attempts(redis, "slow", [40_000.0])
    assert stats.report(redis, NOW)["day"]["destinations"]["slow"]["p50_ms"] == "+Inf"


def test_the_accept_script_counts_accepted_and_duplicates_and_the_minute_expires_after_a_day(redis):
    inbox = Inbox(redis, 3600)
    body = to_body(sample_event("WMS_LOADED", "s-1", 0))
    event = parse_event("wms", body)
    assert [inbox.accept(event, body).duplicate for _ in range(3)] == [False, True, True]
    report = stats.report(redis)
    assert report["hour"]["requests_by_source"] == {"wms": {"accepted": 1, "duplicate": 2}}
    assert report["hour"]["requests"] == {
        "accepted": 1,
        "duplicate": 2,
        "invalid": 0,
        "unauthorized": 0,
        "too_large": 0,
        "unknown_source": 0,
    }
    (key,) = redis.scan_iter(match=keys.stats_key(0)[:-1] + "*")
    assert stats.KEEP - 5 < redis.ttl(key) <= stats.KEEP


@pytest.mark.parametrize("result", ["invalid", "unauthorized", "too_large", "unknown_source"])
def test_a_refusal_is_counted_at_its_source(redis, result):
    stats.count_ingest(redis, "wms", result, NOW)
    assert stats.read(redis, 60, NOW).ingest == {"wms": {result: 1}}


def test_dead_letters_are_counted_by_when_they_died(redis):
    redis.zadd(keys.DEAD_LETTERS, {"crm:wms:s:1": NOW - 10, "crm:wms:s:2": NOW - 7200, "ops-slack:wms:s:1": NOW})
    report = stats.report(redis, NOW)
    assert {d: row["dead_letters"] for d, row in report["hour"]["destinations"].items()} == {"crm": 1, "ops-slack": 1}
    assert report["day"]["destinations"]["crm"]["dead_letters"] == 2
