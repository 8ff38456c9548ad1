"""A warm shutdown fits the platform's window: SHUTDOWN_TIMEOUT after SIGTERM, the sends still in
flight are abandoned, their leases given back, and the worker exits; another worker sends them."""

import logging
import signal
import time

import pytest

from config.loader import load
from devtools.procfile import procfile_command
from relay.domain.samples import sample_session, to_body
from relay.store import keys, presence, queues
from relay.store.deliveries import Claim
from relay.web.app import create_app
from tests.conftest import signed_post
from tests.peers import Reply
from tests.test_processes import process_env, signed, start, stop, wait_for
from tests.workers.test_end_to_end import CRM_PATH
from workers.drain import Drain
from workers.shutdown import Deadline, give_back


def take_one(relay) -> Claim:
    """Post an event and take its crm delivery as a lane would, without sending it: in flight."""
    (event,) = sample_session(("WMS_LOADED",))
    assert signed_post(relay.client, to_body(event)).status_code == 202
    Drain(relay.rt, name="tests").drain_all()
    (taken,) = queues.take(relay.redis, "crm", 1, 60.0, 0.0, "tests", relay.rt.config.state_ttl).taken
    return Claim(taken.event_id, "crm", taken.number, taken.deferrals, taken.owner)


def lease_ends(relay, claim: Claim) -> float:
    return relay.redis.zscore(keys.inflight_key("crm"), claim.lease)


def test_a_lease_given_back_is_taken_again_at_once(relay):
    claim = take_one(relay)
    assert lease_ends(relay, claim) > time.time() + 50
    assert not give_back(relay.redis, Claim(claim.event_id, "crm", claim.number, claim.deferrals, "someone-else"))
    assert lease_ends(relay, claim) > time.time() + 50  # another attempt's lease is left alone
    assert give_back(relay.redis, claim)
    assert lease_ends(relay, claim) <= time.time()
    result = relay.rt.lane("crm").take()
    assert result.reclaimed == [(claim.event_id, 1)] and len(result.taken) == 1
    assert relay.rt.wait_idle(10)
    assert len(relay.http.to(CRM_PATH)) == 1
    assert relay.redis.hget(keys.delivery_key(claim.event_id), "crm") == b"ok"


def test_the_deadline_gives_back_what_is_in_flight_says_so_and_ends_the_process(relay, caplog):
    caplog.set_level(logging.INFO, logger="workers")
    claim = take_one(relay)
    relay.rt.hold(claim)
    marked_gone, ended = [], []
    Deadline(relay.rt, 2, last_words=lambda: marked_gone.append(True)).expire(end=ended.append)
    assert ended == [0] and marked_gone == [True]
    assert lease_ends(relay, claim) <= time.time()
    assert (
        "shutdown: 1 send(s) still in flight after SHUTDOWN_TIMEOUT (2 s); their leases are given back for another "
        "worker to send them; exiting" in caplog.text
    )


CONFIG = """\
sources: {wms: {mac_secrets: ["${WMS_MAC_SECRET}"]}}
destinations:
  crm: {type: http, url: "%(url)s/in", signing_secret: s, timeout: 15s}
rules: [{name: all, match: {}, to: [crm]}]
"""


@pytest.mark.slow  # two Procfile workers
def test_sigterm_with_a_slow_send_exits_within_shutdown_timeout_and_another_worker_delivers(
    tmp_path, redis_server, redis, http_peer
):
    path = tmp_path / "relay.yaml"
    path.write_text(CONFIG % {"url": http_peer.url})
    env = process_env(REDIS_URL=redis_server.url, RELAY_CONFIG=str(path))
    http_peer.script("/in", Reply(delay=10))  # the first send: a receiver that answers in 10 s
    (event,) = sample_session(("API_ERROR",))
    event_id = f"wms:{event['sessionId']}:0"
    body, headers = signed(event)
    assert create_app(*load(env)).test_client().post("/hooks/wms", data=body, headers=headers).status_code == 202

    first = start(procfile_command("worker"), {**env, "SHUTDOWN_TIMEOUT": "2"}, tmp_path / "first.log")
    try:
        wait_for(lambda: len(http_peer.to("/in")) == 1, 20, "the first, slow send")
        asked = time.monotonic()
        code = stop(first, signal.SIGTERM)  # as a platform restart does, mid-send
        took = time.monotonic() - asked
    finally:
        stop(first)
    log = (tmp_path / "first.log").read_text()
    assert code == 0, log
    assert 2 <= took < 3.5, (took, log)  # not the 10 s the receiver takes, nor the 75 s lease
    assert "shutdown: 1 send(s) still in flight after SHUTDOWN_TIMEOUT (2 s)" in log
    assert [w.left for w in presence.workers(redis)] == [True]  # it said it left, as a clean exit does
    ((_, lease_end),) = redis.zrange(keys.inflight_key("crm"), 0, -1, withscores=True)
    assert lease_end <= time.time()  # given back: due at once, not when the 75 s lease would end

    second = start(procfile_command("worker"), env, tmp_path / "second.log")
    try:
        wait_for(lambda: len(http_peer.to("/in")) == 2, 10, "the delivery by the second worker")
        wait_for(lambda: redis.hget(keys.delivery_key(event_id), "crm") == b"ok", 10, "the delivery recorded")
    finally:
        stop(second)
    first_send, second_send = http_peer.to("/in")
    assert first_send.body == second_send.body == body
    assert "was lost in flight (its worker stopped?); trying it again" in (tmp_path / "second.log").read_text()
