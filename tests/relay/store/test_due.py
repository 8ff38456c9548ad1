"""Timers any worker may run (relay/store/due.py, lua/take_due.lua, lua/done_due.lua) on a real
Redis: set once, taken with a lease that is also the taker's token, finished only by that token,
and never taken twice by racing takers."""

import time
from collections import Counter

from relay.store import due, keys
from tests.races import race

NOW = 1_700_000_000.0
PROBE = due.timer(due.PROBE, "crm")


def test_timer_names_round_trip():
    assert PROBE == '["probe", "crm"]'
    assert due.parse_timer(PROBE.encode()) == ("probe", ["crm"])
    assert due.parse_timer(due.timer(due.EXPIRE_DEAD_LETTERS)) == ("expire-dead-letters", [])


def test_schedule_keeps_a_timer_already_set_unless_told_to_replace_it(redis):
    assert due.when(redis, PROBE) is None
    due.schedule(redis, PROBE, NOW + 60)
    due.schedule(redis, PROBE, NOW + 5)  # set already: kept
    assert due.when(redis, PROBE) == NOW + 60
    due.schedule(redis, PROBE, NOW + 5, replace=True)
    assert due.when(redis, PROBE) == NOW + 5
    assert redis.zrange(keys.DUE, 0, -1, withscores=True) == [(PROBE.encode(), (NOW + 5) * 1000)]


def test_schedule_and_cancel_on_a_pipeline(redis):
    pipe = redis.pipeline(transaction=True)
    due.schedule(pipe, PROBE, NOW)
    due.schedule(pipe, PROBE, NOW + 1)
    pipe.execute()
    assert due.when(redis, PROBE) == NOW
    due.cancel(redis, PROBE)
    assert due.when(redis, PROBE) is None


def test_take_moves_a_due_timer_to_the_end_of_the_lease_and_returns_that_as_token(redis):
    later = due.timer(due.PROBE, "later")
    due.schedule(redis, PROBE, NOW - 1)
    due.schedule(redis, later, NOW + 60)

    members, token = due.take(redis, lease=5.0, now=NOW)

    assert members == [PROBE]
    assert token == str(int(NOW * 1000) + 5000)
    assert due.when(redis, PROBE) == NOW + 5
    assert due.when(redis, later) == NOW + 60  # not due: untouched


def test_take_takes_at_most_limit_soonest_first(redis):
    names = [due.timer(due.PROBE, f"d{i}") for i in range(5)]
    for i, name in enumerate(names):
        due.schedule(redis, name, NOW - 10 + i)
    members, _ = due.take(redis, lease=5.0, limit=3, now=NOW)
    assert members == names[:3]
    members, _ = due.take(redis, lease=5.0, limit=3, now=NOW)
    assert members == names[3:]


def test_a_timer_is_not_taken_again_before_its_lease_ends(redis):
    due.schedule(redis, PROBE, NOW)
    assert due.take(redis, lease=5.0, now=NOW)[0] == [PROBE]
    assert due.take(redis, lease=5.0, now=NOW + 4.999)[0] == []
    assert due.when(redis, PROBE) == NOW + 5
    # Its taker presumed dead: due again for anyone.
    members, token = due.take(redis, lease=5.0, now=NOW + 5)
    assert members == [PROBE]
    assert token == str(int((NOW + 10) * 1000))


def test_done_with_the_takers_token_reschedules_the_timer(redis):
    due.schedule(redis, PROBE, NOW)
    _, token = due.take(redis, lease=5.0, now=NOW)
    assert due.done(redis, PROBE, token, NOW + 60) is True
    assert due.when(redis, PROBE) == NOW + 60
    assert due.take(redis, lease=5.0, now=NOW + 59)[0] == []
    assert due.take(redis, lease=5.0, now=NOW + 60)[0] == [PROBE]


def test_done_with_the_takers_token_and_no_next_time_removes_the_timer(redis):
    due.schedule(redis, PROBE, NOW)
    _, token = due.take(redis, lease=5.0, now=NOW)
    assert due.done(redis, PROBE, token, None) is True
    assert due.when(redis, PROBE) is None
    assert redis.zcard(keys.DUE) == 0


def test_done_with_a_stale_token_changes_nothing(redis):
    due.schedule(redis, PROBE, NOW)
    _, slow = due.take(redis, lease=5.0, now=NOW)
    # The slow taker outlives its lease; another takes the timer over.
    members, fresh = due.take(redis, lease=5.0, now=NOW + 6)
    assert members == [PROBE] and fresh != slow

    assert due.done(redis, PROBE, slow, NOW + 1000) is False
    assert due.when(redis, PROBE) == NOW + 11  # still the new taker's lease
    assert due.done(redis, PROBE, slow, None) is False
    assert due.when(redis, PROBE) == NOW + 11

    assert due.done(redis, PROBE, fresh, NOW + 60) is True
    assert due.when(redis, PROBE) == NOW + 60


def test_done_for_a_timer_cancelled_meanwhile_changes_nothing(redis):
    due.schedule(redis, PROBE, NOW)
    _, token = due.take(redis, lease=5.0, now=NOW)
    due.cancel(redis, PROBE)  # e.g. an operator resumed the destination
    assert due.done(redis, PROBE, token, NOW + 60) is False
    assert due.when(redis, PROBE) is None


def test_racing_takers_take_every_timer_exactly_once(redis, redis_server):
    total, takers = 1000, 8
    redis.zadd(keys.DUE, {due.timer(due.PROBE, f"d{i}"): int((time.time() - 1) * 1000) for i in range(total)})

    def step(client, n, call):
        members, token = due.take(client, lease=60.0, limit=10)
        return [(member, token) for member in members]

    taken = race(redis_server.url, takers, step)
    counts = Counter(member for found in taken for member, _ in found)
    assert len(counts) == total
    assert set(counts.values()) == {1}
    # Each taker finishes its own timers with its own token: every one is done.
    assert all(due.done(redis, member, token, None) for found in taken for member, token in found)
    assert redis.zcard(keys.DUE) == 0
