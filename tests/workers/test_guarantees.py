"""Exactly once under load: 1,000 events across 50 sessions, 20% of them repeated, one flaky
destination; every unique event reaches each destination its rules name once, and only once."""

import json
import random
import time
from collections import Counter

from relay.domain.samples import sample_event, to_body
from tests.conftest import FANOUT_YAML, signed_post
from tests.peers import Reply

CRM = "/crm?token=crm-token"
SLACK = "/slack/T000/B000/XXXX"
# A short but long-enough schedule: 12 retries, so that running out of them at a one-in-five
# failure rate is practically impossible (800 * 0.2^13 < 1e-6). Pausing is off, so every
# flaky answer is retried.
FLAKY = FANOUT_YAML.replace(
    "    timeout: 2s\n",
    "    timeout: 2s\n    retry: {delays: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s], jitter: 0}\n"
    "    pause: {after_failures: 0}\n",
)
CODES = ("WMS_LOADED", "CAMERA_STARTED", "INTERMEDIATE_RESULTS", "WEBSOCKET_DISCONNECTED", "MEASUREMENT_CANCELED")


def test_a_thousand_events_with_duplicates_and_a_flaky_destination(relay_factory):
    relay = relay_factory(FLAKY)
    rng = random.Random(20261128)
    now = int(time.time())
    unique = [sample_event(CODES[i % len(CODES)], f"load-session-{i % 50}", i // 50, timestamp=now) for i in range(800)]
    posts = unique + rng.sample(unique, 200)  # 20% of the 1,000 POSTs repeat an event
    rng.shuffle(posts)
    # One in five callback attempts fails with a 503, at random.
    relay.http.script(CRM, *[Reply(503, b"flaky") if rng.random() < 0.2 else Reply(200, b"") for _ in range(2000)])

    statuses = Counter(signed_post(relay.client, to_body(event)).status_code for event in posts)
    assert statuses == {202: 800, 200: 200}
    relay.drain()
    rounds = 0
    while relay.run_due_retries():
        relay.drain()
        rounds += 1
    assert 0 < rounds <= 12

    crm = relay.http.to(CRM)
    delivered = Counter(r.body for r in crm if r.status == 200)
    assert delivered == Counter(to_body(e) for e in unique)  # each unique event once to the callback
    assert any(r.status == 503 for r in crm)  # ...through the flaky answers, retried
    # WARN and ERROR events alerted once each, by chat and by mail.
    alerts = [e for e in unique if e["severity"] in ("WARN", "ERROR")]
    slack = Counter(
        json.loads(r.body)["attachments"][0]["blocks"][-1]["elements"][0]["text"] for r in relay.http.to(SLACK)
    )
    assert len(slack) == len(alerts) and set(slack.values()) == {1}
    assert len(relay.smtp.messages) == len(alerts)
    assert relay.redis.zcard("relay:dead-letters") == 0
