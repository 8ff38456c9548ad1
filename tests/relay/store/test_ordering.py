"""Ordered delivery's state on a real Redis (relay/store/ordering.py, lua/order_settle.lua): each
session's events are queued for their destination one at a time in sequence order, gaps are
given up after the gap timeout and recorded, late events go at once, and racing workers never
release two events at a time, or none."""

import json
import random

from redis import Redis

from relay.domain.event import event_id, parse_event
from relay.domain.samples import sample_event
from relay.domain.session import record_line
from relay.store import due, keys, ordering, queues
from tests.races import race

NOW = 1_700_000_000.0
GAP = 30.0
GRACE = 2.0
TTL = 3600
SESSION = "s1"


def track(redis: Redis, *sequences: int, session_id: str = SESSION) -> None:
    """Record the events in their session, as the fan-out does before it holds them."""
    for sequence in sequences:
        event = parse_event("wms", json.dumps(sample_event("WMS_LOADED", session_id, sequence)).encode())
        redis.append(keys.session_key("wms", session_id), record_line(event, NOW))


def hold(redis: Redis, sequence: int, now: float = NOW, session_id: str = SESSION) -> int:
    """Hold one event (after tracking it) in a transaction of its own, as the fan-out does; its answer."""
    pipe = redis.pipeline(transaction=True)
    ordering.hold(pipe, "crm", "wms", session_id, sequence, now=now, gap_timeout=GAP, grace=GRACE, state_ttl=TTL)
    (answer,) = pipe.execute()
    return answer


def settle(redis: Redis, mode: str, now: float = NOW, ended: int | None = None) -> ordering.Settled:
    return ordering.settle(
        redis, "crm", "wms", SESSION, mode, now=now, gap_timeout=GAP, grace=GRACE, state_ttl=TTL, ended=ended
    )


def queued(redis: Redis) -> list[int]:
    """The sequences queued for crm, in the order they are due."""
    return [int(queues.parse_member(m)[0].rsplit(":", 1)[1]) for m in redis.zrange(keys.queue_key("crm"), 0, -1)]


def finish(redis: Redis, sequence: int, state: str = "ok", now: float = NOW) -> ordering.Settled:
    """The delivery of `sequence` ends (taken from the queue, delivered or dead), and its end is reported."""
    redis.zrem(keys.queue_key("crm"), queues.member(event_id("wms", SESSION, sequence), "crm", 1, 0))
    redis.hset(keys.delivery_key(event_id("wms", SESSION, sequence)), "crm", state)
    return settle(redis, ordering.END, now, ended=sequence)


def state(redis: Redis, sequence: int) -> bytes | None:
    return redis.hget(keys.delivery_key(event_id("wms", SESSION, sequence)), "crm")


TIMER = ordering.timer("crm", "wms", SESSION)


def test_queue_members_are_spelled_as_python_spells_them(redis):
    for session_id in ("s1", 'a"b\\c:d', "x" * 256):
        track(redis, 0, session_id=session_id)
        assert hold(redis, 0, session_id=session_id) == 1
        member = queues.member(event_id("wms", session_id, 0), "crm", 1, 0)
        assert redis.zscore(keys.queue_key("crm"), member) is not None, session_id
    head, tail = ordering.member_parts("wms", "s1", "crm")
    assert head + "123456789" + tail == queues.member("wms:s1:123456789", "crm", 1, 0)


def test_the_next_event_is_queued_at_once_and_a_second_fan_out_holds_nothing(redis):
    track(redis, 0)
    assert hold(redis, 0) == 1
    assert hold(redis, 0) == 0  # the inbox entry read twice
    assert queued(redis) == [0] and state(redis, 0) == b"1.0"
    assert due.when(redis, TIMER) is None  # nothing waits: no timer
    assert redis.ttl(keys.order_key("crm", "wms", SESSION)) == TTL


def test_an_event_waits_for_the_one_before_it_and_goes_when_it_ends(redis):
    track(redis, 0, 1, 2)
    assert [hold(redis, s) for s in (2, 0, 1)] == [1, 1, 1]
    assert queued(redis) == [0]
    assert ordering.held(redis, "crm", "wms", SESSION) == [1, 2]
    assert state(redis, 2) == b"held"
    assert due.when(redis, TIMER) <= NOW + ordering.RECHECK_MIN  # a re-check while one waits
    assert hold(redis, 2) == 0  # held already: read twice, held once

    assert finish(redis, 0, now=NOW + 1).released == [1]
    assert queued(redis) == [1]
    assert finish(redis, 1, "dead", now=NOW + 2).released == [2]  # a dead letter lets the next go too
    assert queued(redis) == [2]
    assert due.when(redis, TIMER) is None
    assert finish(redis, 2).released == []
    assert ordering.skipped(redis, "crm", "wms", SESSION) == []


def test_events_that_keep_coming_never_push_the_re_check_away(redis):
    track(redis, *range(6))
    hold(redis, 0)  # in flight; should its end be lost, the re-check finds it
    hold(redis, 1, now=NOW)
    assert due.when(redis, TIMER) == NOW + ordering.RECHECK_MIN
    for s in range(2, 6):
        hold(redis, s, now=NOW + s)
        assert due.when(redis, TIMER) < NOW + ordering.RECHECK_MIN


def test_an_event_waits_for_a_retry_however_long_and_other_sessions_do_not(redis):
    track(redis, 0, 1)
    track(redis, 0, session_id="s2")
    hold(redis, 0)
    hold(redis, 1)
    redis.hset(keys.delivery_key("wms:s1:0"), "crm", "4.0")  # in its retries, for hours
    later = NOW + 5 * 3600
    result = settle(redis, ordering.TIMER, later)
    assert result.released == [] and result.skipped == []
    assert result.next_at == later + ordering.RECHECK_MAX  # a long wait is re-checked once a minute
    assert hold(redis, 0, session_id="s2") == 1
    assert queued(redis) == [0, 0]  # s1's first, and s2's at once


def test_a_gap_is_waited_for_then_skipped_and_recorded_and_the_late_event_goes_at_once(redis):
    track(redis, 0, 2, 3)
    for s in (0, 2, 3):
        hold(redis, s)
    assert finish(redis, 0, now=NOW + 1).next_at == NOW + GAP  # 2 waits for 1, from when 2 arrived
    assert due.when(redis, TIMER) == NOW + GAP

    early = settle(redis, ordering.TIMER, NOW + GAP - 0.001)
    assert early.released == [] and early.next_at == NOW + GAP
    result = settle(redis, ordering.TIMER, NOW + GAP)
    assert result.skipped == [(1, 1)] and result.released == [2]
    assert ordering.skipped(redis, "crm", "wms", SESSION) == [1]
    assert queued(redis) == [2]

    track(redis, 1)
    assert hold(redis, 1, now=NOW + GAP + 1) == 1
    assert queued(redis) == [2, 1]  # at once, out of order, beside 2
    assert finish(redis, 1).late_after == 2
    assert finish(redis, 2).released == [3]
    assert ordering.skipped(redis, "crm", "wms", SESSION) == [1]  # the record stays


def test_a_hold_never_skips_a_gap_itself_it_leaves_that_to_the_timer_that_says_so(redis):
    track(redis, 1)
    hold(redis, 1, now=NOW)
    track(redis, 2)
    hold(redis, 2, now=NOW + GAP + 5)  # the gap's time is up, but a hold does not report
    assert queued(redis) == [] and due.when(redis, TIMER) <= NOW + GAP + 5  # the timer: due already
    result = settle(redis, ordering.TIMER, NOW + GAP + 5)
    assert result.skipped == [(0, 0)] and result.released == [1]


def test_an_earlier_event_of_another_destination_is_waited_for_only_the_grace(redis):
    track(redis, 0, 1, 2)
    hold(redis, 0)
    hold(redis, 2)  # 1 went elsewhere (or its fan-out is under way): no delivery to crm
    assert finish(redis, 0).next_at == NOW + GRACE
    result = settle(redis, ordering.TIMER, NOW + GRACE)
    assert result.passed == [(1, 1)] and result.skipped == [] and result.released == [2]
    assert ordering.skipped(redis, "crm", "wms", SESSION) == []


def test_an_event_whose_fan_out_was_under_way_goes_first_when_it_comes(redis):
    track(redis, 0, 1)
    hold(redis, 1)  # another worker tracked 0 and is about to hold it
    assert queued(redis) == []
    hold(redis, 0)
    assert queued(redis) == [0]
    assert finish(redis, 0).released == [1]


def test_a_wide_gap_is_recorded_as_a_range(redis):
    top = 2**53 - 1
    track(redis, 0, top)
    hold(redis, 0)
    hold(redis, top)
    finish(redis, 0)
    result = settle(redis, ordering.TIMER, NOW + GAP)
    assert result.skipped == [(1, top - 1)] and result.released == [top]
    assert ordering.skipped_ranges(redis, "crm", "wms", SESSION) == [(1, top - 1)]
    assert ordering.skipped(redis, "crm", "wms", SESSION) == list(range(1, ordering.SKIPPED_LIST_MAX + 1))
    assert queued(redis) == [top]


def test_a_hold_while_the_timer_runs_keeps_its_own_timer(redis):
    track(redis, 0, 1, 2)
    hold(redis, 0)
    hold(redis, 2)  # waits for 1
    (member,), token = due.take(redis, lease=5.0, now=NOW + ordering.RECHECK_MIN)
    assert member == TIMER
    following = settle(redis, ordering.TIMER, NOW + ordering.RECHECK_MIN).next_at  # 0 still in flight
    hold(redis, 1, now=NOW + ordering.RECHECK_MIN)  # meanwhile, in another worker
    assert not due.done(redis, TIMER, token, following)  # the timer's stale answer is not applied
    assert due.when(redis, TIMER) is not None


def test_flush_releases_everything_held_at_once(redis):
    track(redis, 0, 1, 2)
    for s in (0, 1, 2):
        hold(redis, s)
    result = settle(redis, ordering.FLUSH)
    assert result.released == [1, 2] and queued(redis) == [0, 1, 2]
    assert ordering.held(redis, "crm", "wms", SESSION) == []


def test_the_timer_keeps_what_waits_alive(redis):
    track(redis, 0, 1)
    hold(redis, 0)
    hold(redis, 1)
    redis.set(keys.event_key("wms:s1:1"), "{}", ex=10)
    redis.expire(keys.delivery_key("wms:s1:1"), 10)
    settle(redis, ordering.TIMER, NOW + 1)
    assert redis.ttl(keys.event_key("wms:s1:1")) == TTL
    assert redis.ttl(keys.delivery_key("wms:s1:1")) == TTL


def test_racing_workers_release_one_event_at_a_time_in_order(redis, redis_server):
    count, racers = 24, 4
    order = list(range(count))
    random.Random(13).shuffle(order)
    mine = [order[n::racers] for n in range(racers)]
    delivered = "test:delivered"

    def step(client: Redis, racer: int, call: int) -> list:
        if client.llen(delivered) == count:
            return []
        if mine[racer]:
            sequence = mine[racer].pop()
            track(client, sequence)
            assert hold(client, sequence, now=NOW + call) == 1
            return [sequence]
        popped = client.zpopmin(keys.queue_key("crm"))
        if popped:
            (member, _), *_ = popped
            sequence = int(queues.parse_member(member)[0].rsplit(":", 1)[1])
            client.rpush(delivered, sequence)  # before its end: the next cannot be queued before
            client.hset(keys.delivery_key(event_id("wms", SESSION, sequence)), "crm", "ok")
            ordering.settle(
                client, "crm", "wms", SESSION, ordering.END, now=NOW, gap_timeout=GAP, grace=GRACE, state_ttl=TTL,
                ended=sequence,
            )  # fmt: skip
        return [None]

    race(redis_server.url, racers, step)
    assert [int(s) for s in redis.lrange(delivered, 0, -1)] == list(range(count))
    assert due.when(redis, TIMER) is None
