"""Grouped messages' store (relay/store/groups.py, lua/group_add.lua, lua/group_flush.lua) on a real
Redis: each event once, the timer set by the event that opens a message, a part flushed once,
and what is kept of an event capped."""

import json

from relay.domain.event import Event
from relay.store import groups, keys

NOW = 1_700_000_000.0
TTL = 3600
WAIT, INTERVAL = 30.0, 300.0


def event(sequence: int, code: str = "CONSTRAINT_VIOLATION", severity: str = "ERROR", **payload) -> Event:
    return Event("wms", "s-1", sequence, 1_699_999_990 + sequence, severity, code, payload)


def add(redis, *events: Event, now: float = NOW, destination: str = "ops-slack") -> list[int]:
    pipe = redis.pipeline(transaction=True)
    for e in events:
        groups.add(pipe, e, destination, "errors", WAIT, INTERVAL, now, TTL)
    return pipe.execute()


def timer_at(redis, destination: str = "ops-slack") -> float | None:
    score = redis.zscore(keys.DUE, groups.timer(destination, "wms", "s-1"))
    return None if score is None else score / 1000


def flush(redis, group, envelope=None, now: float = NOW + WAIT) -> groups.Flushed:
    envelope = envelope or {"id": f"wms:s-1:group:ops-slack:part-{group.part}", "body": "{}"}
    pipe = redis.pipeline(transaction=True)
    groups.flush(pipe, group, envelope, now, TTL)
    (reply,) = pipe.execute()
    return groups.flushed(reply)


def test_each_event_is_added_once_and_the_first_sets_the_timer(redis):
    assert add(redis, event(3), event(1, "WEBSOCKET_DISCONNECTED", "WARN")) == [1, 1]
    assert timer_at(redis) == NOW + WAIT
    assert add(redis, event(3), now=NOW + 10) == [0]  # fanned out again
    assert add(redis, event(5, "MEASUREMENT_CANCELED", "WARN"), now=NOW + 20) == [1]
    assert timer_at(redis) == NOW + WAIT  # the first match's window, not moved by later ones
    group = groups.read(redis, "ops-slack", "wms", "s-1")
    assert (group.part, group.rule, group.interval, group.sent, group.omitted) == (1, "errors", INTERVAL, None, [])
    assert [e["sequence"] for e in group.events] == group.sequences == [1, 3, 5]
    assert group.events[1] == {
        "sequence": 3,
        "event": "CONSTRAINT_VIOLATION",
        "severity": "ERROR",
        "timestamp": 1_699_999_993,
        "payload": {},
    }
    assert 0 < redis.ttl(keys.group_key("ops-slack", "wms", "s-1")) <= TTL
    assert groups.read(redis, "ops-email", "wms", "s-1") is None  # each destination its own group


def test_a_part_is_flushed_once_with_its_envelope(redis):
    add(redis, event(1), event(2))
    group = groups.read(redis, "ops-slack", "wms", "s-1")
    envelope = {"id": "wms:s-1:group:ops-slack:part-1", "body": "first"}
    assert flush(redis, group, envelope) == groups.Flushed(True, 0, NOW + WAIT)
    assert json.loads(redis.get(keys.event_key(envelope["id"]))) == envelope
    # The same part built again by a second run of the timer (its taker presumed dead): nothing.
    assert flush(redis, group, {"id": envelope["id"], "body": "second"}) == groups.Flushed(False, 0, NOW + WAIT)
    assert json.loads(redis.get(keys.event_key(envelope["id"])))["body"] == "first"
    after = groups.read(redis, "ops-slack", "wms", "s-1")
    assert (after.part, after.pending, after.sent) == (2, 0, NOW + WAIT)
    assert add(redis, event(1), event(2)) == [0, 0]  # sent: never listed again


def test_a_later_match_sets_a_follow_up_at_the_interval(redis):
    add(redis, event(1))
    flush(redis, groups.read(redis, "ops-slack", "wms", "s-1"), now=NOW + WAIT)
    redis.zrem(keys.DUE, groups.timer("ops-slack", "wms", "s-1"))  # its run ended
    add(redis, event(4), now=NOW + 60)
    assert timer_at(redis) == NOW + WAIT + INTERVAL
    group = groups.read(redis, "ops-slack", "wms", "s-1")
    assert (group.part, group.sequences) == (2, [4])


def test_a_match_after_the_interval_opens_a_new_window(redis):
    add(redis, event(1))
    flush(redis, groups.read(redis, "ops-slack", "wms", "s-1"), now=NOW)
    later = NOW + INTERVAL + 100
    add(redis, event(4), now=later)
    assert timer_at(redis) == later + WAIT


def test_an_event_added_while_a_message_is_built_waits_for_the_follow_up(redis):
    add(redis, event(1))
    group = groups.read(redis, "ops-slack", "wms", "s-1")
    add(redis, event(2), now=NOW + 5)  # after the timer read the group, before its flush
    assert flush(redis, group, now=NOW + WAIT) == groups.Flushed(True, 1, NOW + WAIT)
    after = groups.read(redis, "ops-slack", "wms", "s-1")
    assert (after.part, after.sequences) == (2, [2])


def test_past_the_cap_events_are_counted_with_their_severity(redis, monkeypatch):
    monkeypatch.setattr(groups, "MAX_LISTED", 2)
    add(redis, event(1, "WEBSOCKET_DISCONNECTED", "WARN"), event(2, "MEASUREMENT_CANCELED", "WARN"), event(3), event(4))
    group = groups.read(redis, "ops-slack", "wms", "s-1")
    assert [e["sequence"] for e in group.events] == [1, 2]
    assert (group.omitted, group.sequences) == (["ERROR", "ERROR"], [1, 2, 3, 4])
    flush(redis, group)
    add(redis, event(5))  # the next part lists again
    assert [e["sequence"] for e in groups.read(redis, "ops-slack", "wms", "s-1").events] == [5]


def test_a_large_payload_keeps_its_scalar_values(redis):
    big = {"constraint": "FACE_NOT_CENTERED", "snr": 1.5, "ok": False, "frames": list(range(1000)), "note": "x" * 5000}
    add(redis, event(1, **big), event(2, constraint="FACE_NOT_CENTERED"))
    first, second = groups.read(redis, "ops-slack", "wms", "s-1").events
    assert first["payload"] == {
        "constraint": "FACE_NOT_CENTERED",
        "snr": 1.5,
        "ok": False,
        "note": "x" * groups.MAX_VALUE_CHARS,
    }
    assert second["payload"] == {"constraint": "FACE_NOT_CENTERED"}


def test_a_group_stays_bounded_however_many_events_a_session_is_sent(redis, monkeypatch):
    monkeypatch.setattr(groups, "MAX_FIELDS", 20)
    add(redis, *(event(n, severity="WARN" if n % 2 else "ERROR") for n in range(50)))
    key = keys.group_key("ops-slack", "wms", "s-1")
    assert redis.hlen(key) <= 20 + 2  # the fields, and the two severities counted past them
    group = groups.read(redis, "ops-slack", "wms", "s-1")
    assert group.pending == 50  # every event counted, listed or not
    assert sorted(group.omitted).count("WARN") + sorted(group.omitted).count("ERROR") == 50 - len(group.events)
    assert flush(redis, group).pending == 0
    assert groups.read(redis, "ops-slack", "wms", "s-1").pending == 0
