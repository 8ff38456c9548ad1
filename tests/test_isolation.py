"""Delivery isolation (a queue and a lane per destination, timers any worker takes), with the
real Procfile workers, a real Redis and the HTTP peer on loopback: a slow neighbour holds up only
its own queue, a rate limit is shared by every worker process, and nothing waits on a lock or a
scheduler when workers die, Redis restarts, or several workers race for the same due deliveries.

Each test proves what it claims by the order things happened in, or by the times Redis recorded
for them (due times, lease ends), never by how fast this machine happens to be."""

import signal
import threading
import time
from collections import Counter

import pytest
from redis import Redis

from config.loader import load
from devtools.local_redis import LocalRedis
from devtools.procfile import procfile_command
from relay.domain.samples import new_session_id, sample_event
from relay.store import due, keys, queues
from relay.store.event_log import every_attempt
from relay.web.app import create_app
from tests.peers import Reply
from tests.test_processes import process_env, signed, start, stop, wait_for
from workers import timers

pytestmark = pytest.mark.slow  # every test here runs the Procfile's workers

HEAD = """\
sources: {wms: {mac_secrets: ["${WMS_MAC_SECRET}"]}}
operations: {lease_grace: 1s, sweep_every: %(sweep)s}
"""
# One HTTP destination at /in whose every failure is retried 1 s later, never paused.
ONE_RETRY = (
    HEAD
    + """\
destinations:
  in:
    type: http
    url: "%(url)s/in"
    signing_secret: s
    timeout: 2s
    retry: {delays: [1s, 1s], jitter: 0}
    pause: {after_failures: 0}
rules: [{name: all, match: {}, to: [in]}]
"""
)
EARLY = 0.05  # seconds: a peer's time read against Redis's, through two clocks of one machine


def environment(tmp_path, redis_url: str, template: str, url: str, sweep: str = "1s") -> dict:
    """The workers' environment, with the config `template` filled in."""
    path = tmp_path / "relay.yaml"
    path.write_text(template % {"url": url, "sweep": sweep})
    return process_env(REDIS_URL=redis_url, RELAY_CONFIG=str(path))


def events(count: int, code: str = "WMS_LOADED") -> list[dict]:
    """`count` distinct events of one new session."""
    session = new_session_id()
    return [sample_event(code, session, sequence) for sequence in range(count)]


def event_id(event: dict) -> str:
    return f"wms:{event['sessionId']}:{event['sequence']}"


def poster(env: dict):
    """POST one signed event through the real app (in this process); it must be accepted."""
    client = create_app(*load(env)).test_client()

    def post(event: dict) -> None:
        body, headers = signed(event)
        assert client.post("/hooks/wms", data=body, headers=headers).status_code == 202

    return post


def start_workers(count: int, env: dict, tmp_path, name: str) -> list:
    return [start(procfile_command("worker"), env, tmp_path / f"{name}-{n}.log") for n in range(count)]


def stop_all(workers: list, sig=signal.SIGTERM) -> None:
    for worker in workers:
        stop(worker, sig)


def wall(request) -> float:
    """When the peer received `request`, in unix seconds (the clock Redis's scores are in)."""
    return request.at + (time.time() - time.monotonic())


def settled(redis: Redis, destination: str, ids: list[str]) -> bool:
    """Every delivery to `destination` recorded done, and nothing of its queued or in flight:
    nothing is left that could send to it again."""
    pipe = redis.pipeline(transaction=False)
    for each in ids:
        pipe.hget(keys.delivery_key(each), destination)
    pipe.zcard(keys.queue_key(destination))
    pipe.zcard(keys.inflight_key(destination))
    *states, queued, in_flight = pipe.execute()
    return all(state == b"ok" for state in states) and not queued and not in_flight


def log_of(redis: Redis, destination: str) -> list[tuple[str, str]]:
    """(attempt, outcome) of every attempt the log recorded for `destination`."""
    return [(a["attempt"], a["outcome"]) for a in every_attempt(redis) if a["destination"] == destination]


def scheduler_locks(redis: Redis) -> list[bytes]:
    return list(redis.scan_iter(match="rq:scheduler-lock:*"))


SLOW_NEIGHBOUR = (
    HEAD
    + """\
destinations:
  slow: {type: http, url: "%(url)s/slow", signing_secret: s, concurrency: 2}
  fast: {type: http, url: "%(url)s/fast", signing_secret: s}
rules: [{name: all, match: {}, to: [slow, fast]}]
"""
)


def test_a_slow_destination_holds_up_only_its_own_queue(tmp_path, redis_server, redis, http_peer):
    sent = events(30)
    seen_when_fast_was_done: dict[str, int] = {}
    lock = threading.Lock()

    def on_fast() -> None:
        # The moment /fast has every event: how far /slow had got, and what still waits for it.
        with lock:
            if len(http_peer.to("/fast")) == len(sent) and not seen_when_fast_was_done:
                seen_when_fast_was_done["slow"] = len(http_peer.to("/slow"))
                seen_when_fast_was_done["backlog"] = redis.zcard(keys.queue_key("slow"))

    http_peer.script("/slow", *[Reply(delay=1.0)] * len(sent))
    http_peer.script("/fast", *[Reply(on_receipt=on_fast)] * len(sent))
    env = environment(tmp_path, redis_server.url, SLOW_NEIGHBOUR, http_peer.url)
    post = poster(env)
    workers = start_workers(2, env, tmp_path, "worker")
    failed: list[BaseException] = []

    def feed() -> None:  # a steady ~10 events/s, as a busy WMS sends them
        try:
            for event in sent:
                post(event)
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread below
            failed.append(exc)

    try:
        wait_for(lambda: redis.scard("rq:workers") == 2, 20, "both workers to start")
        feeder = threading.Thread(target=feed)
        feeder.start()
        feeder.join(timeout=15)
        assert not feeder.is_alive() and not failed, failed
        wait_for(lambda: seen_when_fast_was_done, 10, "/fast to receive every event")
        # Two workers, two sends of 2 s each at a time: about 2 events/s, so at least 15 s for all.
        wait_for(lambda: len(http_peer.to("/slow")) == len(sent), 25, "/slow to receive every event")
        ids = [event_id(e) for e in sent]
        wait_for(lambda: settled(redis, "slow", ids) and settled(redis, "fast", ids), 10, "every delivery recorded")
    finally:
        stop_all(workers)
    assert seen_when_fast_was_done["slow"] < len(sent), seen_when_fast_was_done
    assert seen_when_fast_was_done["backlog"] > 0, seen_when_fast_was_done
    bodies = sorted(signed(e)[0] for e in sent)
    assert sorted(r.body for r in http_peer.to("/fast")) == bodies  # each exactly once
    assert sorted(r.body for r in http_peer.to("/slow")) == bodies
    assert max(r.at for r in http_peer.to("/fast")) < max(r.at for r in http_peer.to("/slow"))


RATE_LIMITED = (
    HEAD
    + """\
destinations:
  slack: {type: slack, webhook_url: "%(url)s/slack", rate_limit: 5/s, concurrency: 4, digest_max: 1}
rules: [{name: all, match: {}, to: [slack]}]
"""
)


def test_a_rate_limit_is_kept_across_worker_processes(tmp_path, redis_server, redis, http_peer):
    # A limit like Slack's for an incoming webhook (about 1/s), five times faster so that the test
    # takes 4 s, not 20: the peer refuses anything closer than 0.1 s with a 429, as Slack would.
    # Sends start 0.2 s apart; half of it is left to a loaded machine's scheduling between the
    # start and the arrival, while two processes that did not share the limit would still send
    # within a few ms of each other.
    http_peer.limit("/slack", 0.1)
    sent = events(20)
    env = environment(tmp_path, redis_server.url, RATE_LIMITED, http_peer.url)
    post = poster(env)
    workers = start_workers(2, env, tmp_path, "worker")
    try:
        # Both running before the events come, so neither has the backlog to itself for a while.
        wait_for(lambda: redis.scard("rq:workers") == 2, 20, "both workers to start")
        for event in sent:
            post(event)
        wait_for(lambda: len(log_of(redis, "slack")) >= len(sent), 80, "every event's attempt recorded")
        wait_for(lambda: settled(redis, "slack", [event_id(e) for e in sent]), 10, "every delivery recorded")
    finally:
        stop_all(workers)
    received = http_peer.to("/slack")
    assert [r.status for r in received] == [200] * len(sent)  # none came too soon and was refused
    assert len({r.body for r in received}) == len(sent)
    assert log_of(redis, "slack") == [(1, "ok")] * len(sent)
    # Both processes sent: the spacing held between them, not only within one.
    senders = [(tmp_path / f"worker-{n}.log").read_text().count("-> slack attempt 1: ok") for n in range(2)]
    assert sum(senders) == len(sent) and all(senders), senders


TWO_DESTINATIONS = (
    HEAD
    + """\
destinations:
  in:
    type: http
    url: "%(url)s/in"
    signing_secret: s
    timeout: 2s
    retry: {delays: [1s, 1s, 1s], jitter: 0}
  lost:
    type: http
    url: "%(url)s/lost"
    signing_secret: s
    timeout: 2s
    retry: {delays: [1s, 1s, 1s], jitter: 0}
rules:
  - {name: a, match: {event: [API_ERROR]}, to: [in]}
  - {name: b, match: {event: [WMS_LOADED]}, to: [lost]}
"""
)


def test_killing_every_worker_mid_send_stalls_nothing(tmp_path, redis_server, redis, http_peer):
    (a,) = events(1, "API_ERROR")
    (b,) = events(1, "WMS_LOADED")
    a_id, b_id = event_id(a), event_id(b)
    failed_once, b_arrived = threading.Event(), threading.Event()
    http_peer.script("/in", Reply(503, b"busy", on_receipt=failed_once.set), Reply(503, b"busy"))
    http_peer.script("/lost", Reply(delay=1.5, on_receipt=b_arrived.set))  # still in flight at the kill
    env = environment(tmp_path, redis_server.url, TWO_DESTINATIONS, http_peer.url)
    post = poster(env)
    post(a)
    post(b)
    retry_2 = queues.member(a_id, "in", 2, 0)
    retry_3 = queues.member(a_id, "in", 3, 0)
    b_lease = queues.member(b_id, "lost", 1, 0)
    first = start_workers(2, env, tmp_path, "first")
    try:
        assert failed_once.wait(20) and b_arrived.wait(20), "the first sends"
        due_2 = wait_for(lambda: redis.zscore(keys.queue_key("in"), retry_2), 5, "A's retry queued")
        lease_end = redis.zscore(keys.inflight_key("lost"), b_lease)
        assert lease_end is not None  # B's send has not ended
        assert scheduler_locks(redis) == []
    finally:
        stop_all(first, signal.SIGKILL)
    # Nothing of theirs finished after the kill: A's retry still waits, B's lease still stands.
    assert redis.zscore(keys.queue_key("in"), retry_2) == due_2
    assert redis.zscore(keys.inflight_key("lost"), b_lease) == lease_end
    second = start(procfile_command("worker"), env, tmp_path / "second.log")
    try:
        due_3 = wait_for(lambda: redis.zscore(keys.queue_key("in"), retry_3), 15, "A's second retry queued")
        wait_for(lambda: len(http_peer.to("/in")) == 3, 10, "A's last attempt")
        wait_for(lambda: len(http_peer.to("/lost")) == 2, 15, "B sent again")
        wait_for(lambda: settled(redis, "in", [a_id]) and settled(redis, "lost", [b_id]), 10, "both recorded")
        assert scheduler_locks(redis) == []  # no lock was held by a dead worker: none exists at all
    finally:
        stop(second)
    to_in, to_lost = http_peer.to("/in"), http_peer.to("/lost")
    assert [r.status for r in to_in] == [503, 503, 200] and len({r.body for r in to_in}) == 1
    for request, due_at in ((to_in[1], due_2), (to_in[2], due_3), (to_lost[1], lease_end)):
        assert due_at - EARLY <= wall(request) <= due_at + 5, (wall(request), due_at)
    assert len(to_lost) == 2 and to_lost[0].body == to_lost[1].body  # the one duplicate a kill allows
    assert log_of(redis, "in") == [(1, "transient"), (2, "transient"), (3, "ok")]
    assert log_of(redis, "lost") == [(1, "ok")]  # the killed send recorded nothing
    assert "was lost in flight (its worker stopped?); trying it again" in (tmp_path / "second.log").read_text()


def test_a_timer_whose_taker_died_runs_when_its_lease_ends(tmp_path, redis_server, redis, http_peer):
    env = environment(tmp_path, redis_server.url, ONE_RETRY, http_peer.url, sweep="60s")
    # A dead letter past its retention: the expiry timer's run removes it.
    old = f"in:{event_id(events(1)[0])}"
    redis.set(keys.dead_letter_key(*old.split(":", 1)), "{}")
    redis.zadd(keys.DEAD_LETTERS, {old: time.time() - 30 * 86400})
    # A taker that dies holding the timer: taken with a lease, never finished.
    due.schedule(redis, timers.EXPIRY, time.time())
    taken, token = due.take(redis, timers.LEASE)
    assert taken == [timers.EXPIRY]
    lease_end = int(token) / 1000
    worker = start(procfile_command("worker"), env, tmp_path / "worker.log")
    try:
        # Taken again, its score is the new taker's lease end (at most LEASE ahead); once run, its
        # next run, sweep_every (60 s) after it ran.
        following = wait_for(
            lambda: (at := due.when(redis, timers.EXPIRY) or 0) > time.time() + timers.LEASE and at,
            timers.LEASE + 10,
            "the timer to run",
        )
    finally:
        stop(worker)
    ran_at = following - 60  # it ran, and set its next run sweep_every later
    assert lease_end - EARLY <= ran_at <= lease_end + 5, (ran_at, lease_end)
    assert redis.zcard(keys.DEAD_LETTERS) == 0 and not redis.exists(keys.dead_letter_key(*old.split(":", 1)))


def test_retries_due_survive_a_redis_restart_from_its_aof(tmp_path, http_peer):
    data = tmp_path / "redis-data"
    data.mkdir()
    server = LocalRedis(persist_in=str(data)).start()
    client = Redis.from_url(server.url)
    sent = events(10)
    ids = [event_id(e) for e in sent]
    http_peer.script("/in", *[Reply(503, b"busy")] * len(sent))
    env = environment(tmp_path, server.url, ONE_RETRY, http_peer.url)
    try:
        post = poster(env)
        for event in sent:
            post(event)
        first = start(procfile_command("worker"), env, tmp_path / "first.log")
        try:

            def retries_queued() -> bool:
                states = [client.hget(keys.delivery_key(each), "in") for each in ids]
                return states == [b"2.0"] * len(ids) and client.zcard(keys.queue_key("in")) == len(ids)

            wait_for(retries_queued, 15, "every event's retry queued")
        finally:
            stop(first, signal.SIGKILL)
        scheduled = client.zrange(keys.queue_key("in"), 0, -1, withscores=True)
        in_flight = client.zrange(keys.inflight_key("in"), 0, -1, withscores=True)
        client.close()
        server.stop()
        server = LocalRedis(port=server.port, persist_in=str(data)).start()
        client = Redis.from_url(server.url)
        assert client.zrange(keys.queue_key("in"), 0, -1, withscores=True) == scheduled  # kept, due times too
        assert client.zrange(keys.inflight_key("in"), 0, -1, withscores=True) == in_flight
        second = start(procfile_command("worker"), env, tmp_path / "second.log")
        try:
            wait_for(lambda: settled(client, "in", ids), 20, "every event delivered after the restart")
        finally:
            stop(second)
        outcomes = log_of(client, "in")
    finally:
        client.close()
        server.stop()
    bodies = {signed(e)[0] for e in sent}
    received = http_peer.to("/in")
    assert {r.body for r in received} == bodies
    counts = Counter(r.body for r in received)
    assert all(2 <= n <= 3 for n in counts.values()), counts  # failed, ok, at most one duplicate for the kill
    for body in bodies:
        statuses = [r.status for r in received if r.body == body]
        assert statuses[0] == 503 and statuses[-1] == 200, statuses
    assert outcomes.count((2, "ok")) == len(sent)


# The peer answers its first 300 requests 503, whichever they are: every first attempt must come
# before any retry, even on a loaded machine (a retry among them would take a 503 meant for a
# first attempt), so the retries wait 4 s here.
RACING_RETRY = ONE_RETRY.replace("delays: [1s, 1s]", "delays: [4s, 4s]")


def test_two_workers_racing_for_the_same_due_retries_send_each_once(tmp_path, redis_server, redis, http_peer):
    sent = events(300)
    http_peer.script("/in", *[Reply(503, b"busy")] * len(sent))
    env = environment(tmp_path, redis_server.url, RACING_RETRY, http_peer.url)
    post = poster(env)
    for event in sent:
        post(event)
    workers = start_workers(2, env, tmp_path, "worker")  # the first attempts fail together: the retries are
    try:  # due together, 4 s later
        wait_for(lambda: len(http_peer.to("/in")) >= 2 * len(sent), 30, "every first attempt and retry")
        wait_for(lambda: settled(redis, "in", [event_id(e) for e in sent]), 10, "every delivery recorded")
    finally:
        stop_all(workers)
    received = http_peer.to("/in")
    assert Counter(r.body for r in received) == {signed(e)[0]: 2 for e in sent}  # never three times
    for body, statuses in _statuses(received).items():
        assert statuses == [503, 200], (body, statuses)
    retries = [(tmp_path / f"worker-{n}.log").read_text().count("-> in attempt 2: ok") for n in range(2)]
    assert sum(retries) == len(sent) and all(retries), retries  # both workers took some of them
    assert Counter(log_of(redis, "in")) == {(1, "transient"): len(sent), (2, "ok"): len(sent)}


def _statuses(received) -> dict[bytes, list[int]]:
    found: dict[bytes, list[int]] = {}
    for request in received:
        found.setdefault(request.body, []).append(request.status)
    return found
