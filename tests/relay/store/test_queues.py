"""Each destination's queue (relay/store/queues.py, lua/take.lua, lua/enqueue.lua) on a real Redis:
queued once, taken by free slots with a lease, stale and envelope-less members dropped, leases
reclaimed, paused destinations parked, rate limits spaced, and no member taken twice by racers."""

import json
import threading
from collections import Counter

import pytest

from config.settings import Settings
from relay.store import destination_state, keys, queues
from relay.store.connection import connect
from relay.store.queues import Backlog
from tests.races import race

# A fixed clock, whole milliseconds: the rate limit's next turn is stored to the millisecond.
NOW = 1_700_000_000.0
TTL = 3600
LEASE = 30.0


def envelope_of(event_id: str) -> dict:
    return {"v": 1, "id": event_id, "source": "wms", "received_at": NOW - 60, "body": "{}"}


def put(redis, event_id, destination="crm", number=1, deferrals=0, due=NOW - 1, state=None, envelope=True):
    """A delivery as the fan-out or a retry leaves it: its state, its envelope, its queue member."""
    redis.hset(keys.delivery_key(event_id), destination, state or f"{number}.{deferrals}")
    if envelope:
        redis.set(keys.event_key(event_id), json.dumps(envelope_of(event_id)))
    member = queues.member(event_id, destination, number, deferrals)
    redis.zadd(keys.queue_key(destination), {member: due})
    return member


def take(redis, free=8, interval=0.0, now=NOW, owner="w1", destination="crm", fold=1):
    return queues.take(redis, destination, free, LEASE, interval, owner, TTL, now=now, fold=fold)


def queued(redis, destination="crm"):
    return redis.zrange(keys.queue_key(destination), 0, -1, withscores=True)


def in_flight(redis, destination="crm"):
    return redis.zrange(keys.inflight_key(destination), 0, -1, withscores=True)


def test_enqueue_first_queues_a_delivery_once(redis):
    pipe = redis.pipeline(transaction=False)
    queues.enqueue_first(pipe, "e1", "crm", TTL, due=NOW)
    queues.enqueue_first(pipe, "e1", "crm", TTL, due=NOW + 100)  # the event fanned out again
    queues.enqueue_first(pipe, "e1", "ops-slack", TTL, due=NOW)  # another destination: its own
    assert pipe.execute() == [1, 0, 1]
    assert queued(redis) == [(queues.member("e1", "crm", 1, 0).encode(), NOW)]
    assert queued(redis, "ops-slack") == [(queues.member("e1", "ops-slack", 1, 0).encode(), NOW)]
    assert redis.hgetall(keys.delivery_key("e1")) == {b"crm": b"1.0", b"ops-slack": b"1.0"}
    assert 0 < redis.ttl(keys.delivery_key("e1")) <= TTL


def test_enqueue_first_after_the_delivery_moved_on_queues_nothing(redis):
    redis.hset(keys.delivery_key("e1"), "crm", "ok")
    pipe = redis.pipeline(transaction=False)
    queues.enqueue_first(pipe, "e1", "crm", TTL)
    assert pipe.execute() == [0]
    assert queued(redis) == []
    assert redis.hget(keys.delivery_key("e1"), "crm") == b"ok"


def test_member_round_trip():
    text = queues.member("wms:s:0", "crm", 3, 1)
    assert json.loads(text) == ["wms:s:0", "crm", 3, 1]
    assert queues.parse_member(text.encode()) == ("wms:s:0", "crm", 3, 1)


def test_schedule_names_the_attempt_in_the_state_and_queues_it_due_later(redis):
    pipe = redis.pipeline(transaction=False)
    queues.schedule(pipe, "e1", "crm", 2, 1, NOW + 300, TTL)
    pipe.execute()
    assert redis.hget(keys.delivery_key("e1"), "crm") == b"2.1"
    assert queued(redis) == [(queues.member("e1", "crm", 2, 1).encode(), NOW + 300)]


def test_take_takes_at_most_free_due_deliveries_soonest_first_and_leases_them(redis):
    members = [put(redis, f"e{i}", due=NOW - 10 + i) for i in range(3)]
    put(redis, "later", due=NOW + 60)

    result = take(redis, free=2, owner="w1-0")

    assert [(t.event_id, t.number, t.deferrals) for t in result.taken] == [("e0", 1, 0), ("e1", 1, 0)]
    assert [t.envelope for t in result.taken] == [envelope_of("e0"), envelope_of("e1")]
    assert [t.owner for t in result.taken] == ["w1-0:1", "w1-0:2"]
    assert (result.reclaimed, result.parked, result.missing) == ([], 0, [])
    assert in_flight(redis) == [(members[0].encode(), NOW + LEASE), (members[1].encode(), NOW + LEASE)]
    assert redis.hget(keys.delivery_key("e0"), "crm:owner") == b"w1-0:1"
    assert redis.hget(keys.delivery_key("e1"), "crm:owner") == b"w1-0:2"
    assert 0 < redis.ttl(keys.delivery_key("e0")) <= TTL
    assert queued(redis) == [(members[2].encode(), NOW - 8), (queues.member("later", "crm", 1, 0).encode(), NOW + 60)]
    assert result.wait == 0  # e2 is due now


def test_take_with_no_free_slot_takes_nothing(redis):
    member = put(redis, "e1")
    result = take(redis, free=0)
    assert result.taken == []
    assert queued(redis) == [(member.encode(), NOW - 1)]
    assert in_flight(redis) == []


def test_take_leaves_deliveries_not_yet_due(redis):
    put(redis, "e1", due=NOW + 0.5)
    result = take(redis)
    assert result.taken == []
    assert result.wait == 0.5


@pytest.mark.parametrize("state", ["2.0", "1.1", "ok", "dead"], ids=["next-attempt", "deferred", "ok", "dead"])
def test_a_stale_member_is_dropped_and_sends_nothing(redis, state):
    put(redis, "e1", number=1, deferrals=0, state=state)
    fresh = put(redis, "e2", due=NOW - 0.5)

    result = take(redis, free=8)

    assert [t.event_id for t in result.taken] == ["e2"]
    assert (result.reclaimed, result.parked, result.missing) == ([], 0, [])
    assert queued(redis) == []  # the stale member is gone for good
    assert in_flight(redis) == [(fresh.encode(), NOW + LEASE)]
    assert redis.hget(keys.delivery_key("e1"), "crm") == state.encode()
    assert not redis.hexists(keys.delivery_key("e1"), "crm:owner")


def test_a_member_already_in_flight_is_not_taken_twice(redis):
    member = put(redis, "e1")
    redis.zadd(keys.inflight_key("crm"), {member: NOW + 10})  # its lease runs
    result = take(redis)
    assert result.taken == []
    assert queued(redis) == []
    assert in_flight(redis) == [(member.encode(), NOW + 10)]  # the lease is untouched


def test_a_member_whose_envelope_is_gone_is_reported_missing(redis):
    put(redis, "gone", number=2, envelope=False)
    put(redis, "e2")

    result = take(redis)

    assert result.missing == [("gone", 2)]
    assert redis.hget(keys.delivery_key("gone"), "crm") == b"dead"  # never sendable: not left pending
    assert [t.event_id for t in result.taken] == ["e2"]
    assert queued(redis) == []
    assert [m for m, _ in in_flight(redis)] == [queues.member("e2", "crm", 1, 0).encode()]
    assert not redis.hexists(keys.delivery_key("gone"), "crm:owner")


def test_an_expired_lease_is_reclaimed_due_again_and_reported(redis):
    member = put(redis, "e1", number=2)
    first = take(redis, owner="dead-worker")
    (lost,) = first.taken
    assert redis.hget(keys.delivery_key("e1"), "crm:owner") == lost.owner.encode()

    # Before the lease ends it stays in flight; nothing is reclaimed.
    early = take(redis, free=0, now=NOW + LEASE - 1)
    assert early.reclaimed == [] and in_flight(redis) == [(member.encode(), NOW + LEASE)]
    assert early.wait == 1.0  # the lease's end

    # When it ends, its owner no longer owns it and the attempt is due again, at once.
    late = take(redis, free=0, now=NOW + LEASE)
    assert late.reclaimed == [("e1", 2)]
    assert late.taken == []
    assert in_flight(redis) == []
    assert queued(redis) == [(member.encode(), NOW + LEASE)]
    assert not redis.hexists(keys.delivery_key("e1"), "crm:owner")
    assert redis.hget(keys.delivery_key("e1"), "crm") == b"2.0"
    assert late.wait is None  # a full lane takes again when one of its sends ends, not before

    again = take(redis, owner="w2", now=NOW + LEASE + 1)
    assert [(t.event_id, t.number, t.owner) for t in again.taken] == [("e1", 2, "w2:1")]
    assert again.reclaimed == []
    assert redis.hget(keys.delivery_key("e1"), "crm:owner") == b"w2:1"


def test_an_expired_lease_is_taken_again_in_the_same_call(redis):
    put(redis, "e1")
    take(redis, owner="dead-worker")
    result = take(redis, owner="w2", now=NOW + LEASE + 5)
    assert result.reclaimed == [("e1", 1)]
    assert [(t.event_id, t.owner) for t in result.taken] == [("e1", "w2:1")]
    assert in_flight(redis) == [(queues.member("e1", "crm", 1, 0).encode(), NOW + LEASE + 5 + LEASE)]


def test_a_paused_destination_parks_its_due_deliveries_with_their_envelopes_and_takes_nothing(redis):
    redis.hset(keys.destination_key("crm"), mapping={"paused": "down", "paused_by": "operator"})
    put(redis, "e1", due=NOW - 5)
    put(redis, "e2", number=3, deferrals=1, due=NOW - 2)
    put(redis, "stale", state="ok", due=NOW - 1)
    later = put(redis, "later", due=NOW + 20)

    result = take(redis, free=8)

    assert result.taken == []
    assert result.parked == 2
    assert (result.reclaimed, result.missing) == ([], [])
    parked = [json.loads(entry) for entry in redis.lrange(keys.parked_key("crm"), 0, -1)]
    assert parked == [
        ["e1", 1, 0, json.dumps(envelope_of("e1"))],
        ["e2", 3, 1, json.dumps(envelope_of("e2"))],
    ]
    assert queued(redis) == [(later.encode(), NOW + 20)]  # not due yet: not parked yet
    assert in_flight(redis) == []
    assert result.wait == 20.0
    assert not redis.exists(keys.rate_key("crm"))


def test_a_lease_that_runs_out_while_paused_is_parked(redis):
    put(redis, "e1")
    take(redis, owner="dead-worker")
    redis.hset(keys.destination_key("crm"), "paused", "down")
    result = take(redis, now=NOW + LEASE)
    assert result.reclaimed == [("e1", 1)]
    assert result.parked == 1 and result.taken == []
    assert [json.loads(e)[:3] for e in redis.lrange(keys.parked_key("crm"), 0, -1)] == [["e1", 1, 0]]
    assert queued(redis) == in_flight(redis) == []


def test_a_rate_limit_takes_one_per_interval(redis):
    for i in range(3):
        put(redis, f"e{i}", due=NOW - 10 + i)

    first = take(redis, free=8, interval=1.0)
    assert [t.event_id for t in first.taken] == ["e0"]
    assert float(redis.get(keys.rate_key("crm"))) == NOW + 1.0

    early = take(redis, free=8, interval=1.0, now=NOW + 0.4)
    assert early.taken == []
    assert len(queued(redis)) == 2  # waiting their turn, no attempt spent
    assert redis.hget(keys.delivery_key("e1"), "crm") == b"1.0"

    second = take(redis, free=8, interval=1.0, now=NOW + 1.0)
    assert [t.event_id for t in second.taken] == ["e1"]
    assert float(redis.get(keys.rate_key("crm"))) == NOW + 2.0

    third = take(redis, free=8, interval=1.0, now=NOW + 2.5)  # late: the next turn counts from now
    assert [t.event_id for t in third.taken] == ["e2"]
    assert float(redis.get(keys.rate_key("crm"))) == NOW + 3.5
    assert [m for m, _ in in_flight(redis)] == [queues.member(f"e{i}", "crm", 1, 0).encode() for i in range(3)]


def test_a_rate_limit_turn_is_not_spent_by_a_take_that_takes_nothing(redis):
    put(redis, "stale", state="ok")
    assert take(redis, interval=1.0).taken == []
    assert not redis.exists(keys.rate_key("crm"))
    put(redis, "e1")
    assert [t.event_id for t in take(redis, interval=1.0, now=NOW + 0.1).taken] == ["e1"]


def test_a_take_before_the_rate_limits_next_turn_waits_for_that_turn(redis):
    for i in range(3):
        put(redis, f"e{i}", due=NOW - 10 + i)
    take(redis, interval=1.0)
    early = take(redis, interval=1.0, now=NOW + 0.4)
    assert early.taken == []
    assert early.wait == pytest.approx(0.6)


def test_a_rate_turn_folds_what_the_rate_limit_held_back(redis):
    for i in range(6):
        put(redis, f"e{i}", due=NOW - 10 + i)
    # The first of a burst goes at once, alone: nothing was held back yet.
    assert [t.event_id for t in take(redis, interval=1.0, fold=4).taken] == ["e0"]
    assert take(redis, interval=1.0, fold=4, now=NOW + 0.5).taken == []
    # At the next turn, the oldest waiting came due before that turn opened: up to `fold` at once.
    folded = take(redis, free=1, interval=1.0, fold=4, now=NOW + 1.0)
    assert [t.event_id for t in folded.taken] == ["e1", "e2", "e3", "e4"]
    assert len({t.owner for t in folded.taken}) == 4  # each its own lease
    assert [m for m, _ in in_flight(redis)][-4:] == [queues.member(f"e{i}", "crm", 1, 0).encode() for i in range(1, 5)]
    assert float(redis.get(keys.rate_key("crm"))) == NOW + 2.0  # one turn spent
    assert [t.event_id for t in take(redis, interval=1.0, fold=4, now=NOW + 2.0).taken] == ["e5"]


def test_a_rate_turn_folds_nothing_that_was_not_held_back(redis):
    redis.set(keys.rate_key("crm"), repr(NOW - 5))  # the last turn opened long before these came due
    put(redis, "e1", due=NOW - 1)
    put(redis, "e2", due=NOW - 0.5)
    assert [t.event_id for t in take(redis, interval=1.0, fold=50).taken] == ["e1"]
    assert [t.event_id for t in take(redis, interval=1.0, fold=50, now=NOW + 1.0).taken] == ["e2"]


def test_fold_1_or_no_rate_limit_or_no_free_thread_folds_nothing(redis):
    for i in range(4):
        put(redis, f"e{i}", due=NOW - 10 + i)
    redis.set(keys.rate_key("crm"), repr(NOW - 1))
    assert [t.event_id for t in take(redis, interval=1.0, fold=1).taken] == ["e0"]
    assert take(redis, free=0, interval=1.0, fold=50, now=NOW + 1.0).taken == []
    assert [t.event_id for t in take(redis, free=2, fold=50, now=NOW + 1.0).taken] == ["e1", "e2"]


def test_wait_is_the_next_due_time_or_the_next_lease_end(redis):
    assert take(redis).wait is None  # nothing queued, nothing in flight

    put(redis, "later", due=NOW + 5)
    assert take(redis).wait == 5.0

    put(redis, "e1")
    result = take(redis, now=NOW + 1)  # leases e1 until NOW + 1 + LEASE; `later` is due in 4 s
    assert [t.event_id for t in result.taken] == ["e1"]
    assert result.wait == 4.0

    redis.zrem(keys.queue_key("crm"), queues.member("later", "crm", 1, 0))
    assert take(redis, now=NOW + 2).wait == LEASE - 1  # only the lease's end is left


def test_backlog_counts_waiting_scheduled_in_flight_and_parked(redis):
    assert queues.backlog(redis, "crm", now=NOW) == Backlog(0, 0, 0, 0, None)

    put(redis, "e1", due=NOW - 12)
    put(redis, "e2", due=NOW - 3)
    put(redis, "e3", due=NOW)  # due exactly now: waiting
    put(redis, "retry", due=NOW + 300)
    redis.zadd(keys.inflight_key("crm"), {queues.member("sending", "crm", 1, 0): NOW + 10})
    redis.rpush(keys.parked_key("crm"), json.dumps(["p1", 1, 0, "{}"]), json.dumps(["p2", 2, 0, "{}"]))

    assert queues.backlog(redis, "crm", now=NOW) == Backlog(3, 1, 1, 2, 12.0)
    assert queues.backlog(redis, "crm", now=NOW - 20) == Backlog(0, 4, 1, 2, None)  # nothing due yet
    assert queues.backlog(redis, "other", now=NOW) == Backlog(0, 0, 0, 0, None)


def test_names_in_use_finds_queued_in_flight_and_parked_destinations(redis):
    assert queues.names_in_use(redis) == set()
    put(redis, "e1", destination="crm")
    redis.zadd(keys.inflight_key("ops-slack"), {queues.member("e2", "ops-slack", 1, 0): NOW})
    redis.rpush(keys.parked_key("old-email"), json.dumps(["e3", 1, 0, "{}"]))
    redis.hset(keys.destination_key("paused-only"), "paused", "down")  # no deliveries: not in use
    redis.set(keys.rate_key("rated"), "1")
    assert queues.names_in_use(redis) == {"crm", "ops-slack", "old-email"}


def test_racing_takers_take_every_delivery_exactly_once(redis, redis_server):
    total, takers = 2000, 8
    pipe = redis.pipeline(transaction=False)
    for i in range(total):
        event_id = f"e{i}"
        pipe.set(keys.event_key(event_id), json.dumps(envelope_of(event_id)))
        queues.schedule(pipe, event_id, "crm", 1, 0, NOW - total + i, TTL)
    pipe.execute()

    def step(client, n, call):
        return queues.take(client, "crm", 16, 60.0, 0.0, f"t{n}-{call}", TTL, now=NOW).taken

    found = race(redis_server.url, takers, step)
    taken = [[t.event_id for t in items] for items in found]
    owners = [[t.owner for t in items] for items in found]
    counts = Counter(event_id for found in taken for event_id in found)
    assert len(counts) == total
    assert set(counts.values()) == {1}
    all_owners = [owner for found in owners for owner in found]
    assert len(set(all_owners)) == total
    assert redis.zcard(keys.queue_key("crm")) == 0
    assert redis.zcard(keys.inflight_key("crm")) == total


def test_a_reclaimed_stale_lease_leaves_a_live_attempts_owner_alone(redis):
    put(redis, "e1", number=2)
    redis.hset(keys.delivery_key("e1"), "crm:owner", "live-attempt-3")
    redis.hset(keys.delivery_key("e1"), "crm", "3.0")  # the delivery moved on to attempt 3
    redis.zadd(keys.inflight_key("crm"), {queues.member("e1", "crm", 2, 0): NOW - 1})  # attempt 2's old lease
    redis.zrem(keys.queue_key("crm"), queues.member("e1", "crm", 2, 0))
    result = take(redis)
    assert result.reclaimed == [("e1", 2)] and result.taken == []  # reclaimed, then dropped as stale
    assert redis.hget(keys.delivery_key("e1"), "crm:owner") == b"live-attempt-3"


def test_a_paused_destination_parks_neither_a_delivery_in_flight_nor_one_without_its_event(redis):
    redis.hset(keys.destination_key("crm"), "paused", "maintenance")
    flying = put(redis, "flying")
    redis.zadd(keys.inflight_key("crm"), {flying: NOW + 60})  # a probe is sending it
    put(redis, "gone", envelope=False)
    result = take(redis)
    assert result.parked == 0 and result.missing == [("gone", 1)]
    assert redis.llen(keys.parked_key("crm")) == 0
    assert redis.hget(keys.delivery_key("gone"), "crm") == b"dead"


def parked_entry(event_id, number=1, deferrals=0, envelope=True):
    body = json.dumps(envelope_of(event_id)) if envelope else False
    return json.dumps([event_id, number, deferrals, body])


def test_releasing_parked_deliveries_restores_each_once_and_drops_stale_copies(redis, caplog):
    redis.hset(keys.delivery_key("done"), "crm", "ok")
    redis.hset(keys.delivery_key("flying"), "crm", "1.0")
    redis.zadd(keys.inflight_key("crm"), {queues.member("flying", "crm", 1, 0): NOW + 60})
    redis.hset(keys.delivery_key("a/b"), "crm", "2.1")  # a '/' in the id: the member is built as Python builds it
    redis.rpush(
        keys.parked_key("crm"),
        parked_entry("a/b", 2, 1),
        parked_entry("done"),
        parked_entry("flying"),
        parked_entry("gone", envelope=False),
        parked_entry("expired"),  # its state and event expired while it waited: restored
    )
    assert destination_state._release_all(redis, "crm", TTL) == 2
    assert sorted(m for m, _ in queued(redis)) == sorted(
        [queues.member("a/b", "crm", 2, 1).encode(), queues.member("expired", "crm", 1, 0).encode()]
    )
    assert redis.hget(keys.delivery_key("expired"), "crm") == b"1.0" and redis.exists(keys.event_key("expired"))
    assert redis.hget(keys.delivery_key("done"), "crm") == b"ok"  # not resurrected
    assert redis.hget(keys.delivery_key("gone"), "crm") == b"dead"
    assert redis.llen(keys.parked_key("crm")) == 0
    assert "parked delivery to crm not released: done 1.0: already ok" in caplog.text


def test_two_releasers_at_once_release_every_parked_delivery_exactly_once(redis, redis_server):
    total = 1000
    for i in range(total):
        redis.hset(keys.delivery_key(f"e{i}"), "crm", "1.0")
        redis.rpush(keys.parked_key("crm"), parked_entry(f"e{i}"))
    clients = [connect(Settings.from_env({"REDIS_URL": redis_server.url}).redis_url) for _ in range(2)]
    counts: list[int] = []
    start = threading.Barrier(2)

    def run(client) -> None:
        start.wait()
        counts.append(destination_state._release_all(client, "crm", TTL))

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(counts) == total and redis.zcard(keys.queue_key("crm")) == total
    assert redis.llen(keys.parked_key("crm")) == 0
