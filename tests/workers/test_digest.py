"""Digests (workers/lanes.py, lua/take.lua): what a rate limit held back for a Slack destination
goes out at its next turn as one message, and each folded delivery is recorded on its own."""

import json
import logging
import time

import pytest

from relay.domain.event import parse_event
from relay.domain.samples import to_body
from relay.domain.scenarios import play
from relay.store import keys
from relay.store.event_log import attempts_of, every_attempt
from relay.store.inbox import envelope_of
from tests.conftest import signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import SLACK_PATH
from workers.fanout import fan_out_batch

DIGEST_YAML = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  ops-slack:
    type: slack
    webhook_url: "%(http)s/slack/T000/B000/XXXX"
    rate_limit: 1/s
    digest_max: %(digest_max)s
    retry: {delays: [5s], jitter: 0}
rules:
  - name: failed-sessions
    match: {event: [SESSION_FAILED]}
    to: [ops-slack]
"""


def make(relay_factory, digest_max: int = 50):
    return relay_factory(DIGEST_YAML.replace("%(digest_max)s", str(digest_max)))


def messages(relay) -> list[dict]:
    return [json.loads(r.body) for r in relay.http.to(SLACK_PATH)]


def next_turn(relay) -> None:
    """The rate limit's next turn has come now (without waiting for it): what is due waited for it."""
    relay.redis.set(keys.rate_key("ops-slack"), repr(time.time()))


def failed_sessions(relay, count: int) -> list[str]:
    """Fan out `count` SESSION_FAILED events at once, as the sessions' timers emit them; their ids."""
    envelopes = []
    for i in range(count):
        body = {
            "event": "SESSION_FAILED",
            "severity": "ERROR",
            "sessionId": f"s-{i}",
            "timestamp": int(time.time()) - 60,
            "derived": "session",
            "payload": {"outcome": "failed", "reason": "CONSTRAINT_VIOLATION", "durationSeconds": 40},
        }
        raw = json.dumps(body).encode()
        envelopes.append(envelope_of(parse_event("wms", raw, derived=True), raw))
    assert fan_out_batch(relay.rt, [(None, e) for e in envelopes]) == count
    return [e["id"] for e in envelopes]


def states(relay, event_ids: list[str]) -> set[bytes]:
    return {relay.redis.hget(keys.delivery_key(event_id), "ops-slack") for event_id in event_ids}


def test_a_burst_of_50_failed_sessions_is_one_message_and_one_digest_of_49(relay_factory, caplog):
    relay = make(relay_factory)
    start = int(time.time()) - 120
    for i in range(50):
        for event in play("camera-denied", f"s-{i:02d}", start):
            assert signed_post(relay.client, to_body(event)).status_code == 202
    relay.drain()
    assert relay.settle_sessions() == 50
    relay.drain()
    (first,) = messages(relay)  # at once: the rate limit held nothing back yet
    assert "Measurement failed: CAMERA_PERMISSION_DENIED" in first["text"]
    assert relay.redis.zcard(keys.queue_key("ops-slack")) == 49  # waiting their turn, no attempt spent

    next_turn(relay)
    with caplog.at_level(logging.INFO, logger="workers.lanes"):
        relay.drain()
    first, digest = messages(relay)
    assert "49 failed sessions" in digest["text"]
    assert "49 deliveries folded into one message" in json.dumps(digest)
    assert "ops-slack: 49 deliveries folded into one digest; ok (HTTP 200)" in caplog.text
    log = every_attempt(relay.redis)
    assert len(log) == 50 and {a["outcome"] for a in log} == {"ok"}
    assert states(relay, [f"wms:s-{i:02d}:session" for i in range(50)]) == {b"ok"}
    assert relay.redis.zcard(keys.queue_key("ops-slack")) == relay.redis.zcard(keys.inflight_key("ops-slack")) == 0


def test_a_single_delivery_due_at_a_turn_is_sent_as_itself(relay_factory):
    relay = make(relay_factory)
    failed_sessions(relay, 2)
    relay.drain()
    next_turn(relay)
    relay.drain()
    assert ["Measurement failed" in m["text"] for m in messages(relay)] == [True, True]


def test_digest_max_bounds_a_digest_and_the_rest_waits_for_the_next_turn(relay_factory):
    relay = make(relay_factory, digest_max=3)
    event_ids = failed_sessions(relay, 6)
    relay.drain()
    next_turn(relay)
    relay.drain()
    assert relay.redis.zcard(keys.queue_key("ops-slack")) == 2
    next_turn(relay)
    relay.drain()
    single, three, two = messages(relay)
    assert "Measurement failed" in single["text"]
    assert "3 failed sessions" in three["text"] and "2 failed sessions" in two["text"]
    assert states(relay, event_ids) == {b"ok"}


def test_digest_max_1_never_folds(relay_factory):
    relay = make(relay_factory, digest_max=1)
    event_ids = failed_sessions(relay, 4)
    relay.drain()
    for sent in range(2, 5):
        next_turn(relay)
        relay.drain()
        assert len(messages(relay)) == sent  # one per turn
    assert all("Measurement failed" in m["text"] for m in messages(relay))
    assert states(relay, event_ids) == {b"ok"}


def test_a_failing_digest_retries_each_folded_delivery_on_its_own(relay_factory):
    relay = make(relay_factory)
    relay.http.script(SLACK_PATH, Reply(200, b"ok"), Reply(500, b"down"))
    event_ids = failed_sessions(relay, 5)
    relay.drain()
    next_turn(relay)
    relay.drain()
    assert len(messages(relay)) == 2
    retried = event_ids[1:]
    # Each folded delivery failed on its own record and is due again on its own schedule.
    assert sorted(s[:4] for s in relay.scheduled()) == sorted((e, "ops-slack", 2, 0) for e in retried)
    for event_id in retried:
        (record,) = attempts_of(relay.redis, event_id)
        assert (record["attempt"], record["outcome"], record["status"]) == (1, "transient", "HTTP 500")

    # One retry comes due before the others: it goes alone, as itself.
    first_retry = relay.scheduled()[0]
    member = json.dumps(list(first_retry[:4]))
    relay.redis.zadd(keys.queue_key("ops-slack"), {member: time.time()})
    relay.redis.delete(keys.rate_key("ops-slack"))
    relay.drain()
    assert "Measurement failed" in messages(relay)[-1]["text"]
    assert states(relay, [first_retry[0]]) == {b"ok"}

    assert relay.run_due_retries() == 3
    next_turn(relay)
    relay.drain()
    assert "3 failed sessions" in messages(relay)[-1]["text"]
    assert len(messages(relay)) == 4
    assert states(relay, event_ids) == {b"ok"}


@pytest.mark.parametrize("kind", ["permanent", "raises"])
def test_a_digest_that_cannot_be_sent_dead_letters_each_delivery(relay_factory, kind, caplog):
    relay = make(relay_factory)
    event_ids = failed_sessions(relay, 3)
    relay.drain()
    if kind == "permanent":
        relay.http.script(SLACK_PATH, Reply(400, b"invalid_payload"))
    else:
        adapter = relay.rt.adapters["ops-slack"]

        def broken(events):
            raise RuntimeError("a bug")

        adapter.deliver_digest = broken  # type: ignore[method-assign]
    next_turn(relay)
    relay.drain()
    assert states(relay, event_ids[1:]) == {b"dead"}
    assert relay.redis.zcard(keys.DEAD_LETTERS) == 2
    if kind == "raises":
        assert "ops-slack: the SlackAdapter failed on a digest of 2 deliveries" in caplog.text
