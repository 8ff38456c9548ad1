"""relay:workers and the inbox's lag: who counts as running, and when the absence of workers is a
problem, with the exact sentence (times are given, not waited for)."""

import json

from relay.store import keys, presence

T0 = 1_800_000_000.0
ABSENT_AFTER = 60
HINT = "scale the worker process (heroku ps:scale worker=1)"


def add_inbox_entry(redis, at: float) -> None:
    redis.xadd(keys.INBOX, {"id": "wms:s:0"}, id=f"{int(at * 1000)}-0")


def test_no_worker_and_an_empty_inbox_is_no_problem(redis):
    found = presence.status(redis, ABSENT_AFTER, now=T0)
    assert (found.running, found.waiting, found.oldest_age, found.absent_for, found.problem) == (
        [],
        0,
        None,
        None,
        None,
    )
    assert found.summary() == {
        "running": 0,
        "absent_for": None,
        "inbox": {"waiting": 0, "oldest_age": None},
        "problem": None,
    }


def test_a_worker_counts_as_running_until_its_ttl_ends(redis):
    presence.beat(redis, "host-a:42", started=T0 - 100, ttl=15, now=T0)
    assert json.loads(redis.hget(keys.WORKERS, "host-a:42")) == {
        "host": "host-a",
        "pid": 42,
        "started": T0 - 100,
        "seen": T0,
        "until": T0 + 15,
    }
    (worker,) = presence.status(redis, ABSENT_AFTER, now=T0 + 14.9).running
    assert (worker.id, worker.host, worker.pid, worker.seen) == ("host-a:42", "host-a", 42, T0)
    later = presence.status(redis, ABSENT_AFTER, now=T0 + 15)
    assert (later.running, later.absent_for) == ([], 15.0)


def test_a_clean_exit_is_gone_at_once_and_remembered(redis):
    presence.beat(redis, "host-a:42", started=T0, ttl=15, now=T0)
    presence.leave(redis, "host-a:42", now=T0 + 1)
    found = presence.status(redis, ABSENT_AFTER, now=T0 + 1)
    assert found.running == []
    assert [(w.id, w.left, w.seen) for w in found.workers] == [("host-a:42", True, T0 + 1)]


def test_events_waiting_without_a_worker_for_absent_after_is_the_problem(redis):
    presence.beat(redis, "host-a:42", started=T0, ttl=15, now=T0)
    add_inbox_entry(redis, T0 + 50)
    add_inbox_entry(redis, T0 + 55)
    assert presence.status(redis, ABSENT_AFTER, now=T0 + 59).problem is None  # not yet
    found = presence.status(redis, ABSENT_AFTER, now=T0 + 60)
    assert found.problem == f"events are being accepted but no worker has been seen for 60 s: {HINT}"
    assert found.summary() == {
        "running": 0,
        "absent_for": 60.0,
        "inbox": {"waiting": 2, "oldest_age": 10.0},
        "problem": found.problem,
    }


def test_a_running_worker_is_no_problem_however_long_events_wait(redis):
    add_inbox_entry(redis, T0)
    presence.beat(redis, "host-a:42", started=T0, ttl=15, now=T0 + 3600)
    assert presence.status(redis, ABSENT_AFTER, now=T0 + 3601).problem is None


def test_never_seen_a_worker_counts_from_the_oldest_waiting_event(redis):
    add_inbox_entry(redis, T0)
    assert presence.status(redis, ABSENT_AFTER, now=T0 + 59).problem is None
    assert presence.status(redis, ABSENT_AFTER, now=T0 + 75).problem == (
        f"events are being accepted but no worker has been seen (the oldest has waited 75 s): {HINT}"
    )


def test_entries_are_forgotten_a_day_after_they_were_last_seen(redis):
    presence.beat(redis, "old:1", started=T0, ttl=15, now=T0)
    presence.beat(redis, "new:2", started=T0, ttl=15, now=T0 + presence.KEEP_GONE)
    assert presence.forget_old(redis, now=T0 + presence.KEEP_GONE + 1) == 1
    assert [w.id for w in presence.workers(redis)] == ["new:2"]
    assert 0 < redis.ttl(keys.WORKERS) <= presence.KEEP_GONE
