"""Pausing: a destination that keeps failing is paused, its deliveries wait, a probe resumes it,
and operators are told once; by hand too."""

import json
import logging
import re
import threading
import time

import pytest
from click.testing import CliRunner

from relay.cli.main import main
from relay.domain.event import parse_event
from relay.domain.samples import sample_session, to_body
from relay.store import destination_state, due, keys
from relay.store.inbox import Inbox
from tests.conftest import FANOUT_YAML, signed_post
from tests.peers import Reply
from workers import timers
from workers.pausing import probe_once

CRM = "/crm?token=crm-token"
SLACK = "/slack/T000/B000/XXXX"
PAUSING = (
    FANOUT_YAML.replace("    timeout: 2s\n", "    timeout: 2s\n    pause: {after_failures: 2, probe_every: 1s}\n")
    + "operations: {announce_to: ops-slack}\n"
)


def announcements(relay):
    return [json.loads(r.body)["text"] for r in relay.http.to(SLACK) if "rotating_light" in r.body.decode()]


def post(relay, events):
    for event in events:
        assert signed_post(relay.client, to_body(event)).status_code == 202


def probes(relay):
    """The probe timers set in relay:due: {destination: when due (unix s)}."""
    found = {}
    for member, when in relay.timers().items():
        kind, args = due.parse_timer(member)
        if kind == due.PROBE:
            found[args[0]] = when
    return found


def test_a_failing_destination_is_paused_its_deliveries_wait_and_a_probe_resumes_it(relay_factory):
    relay = relay_factory(PAUSING)
    relay.http.script(CRM, Reply(503, b"down"), Reply(503, b"down"))
    events = sample_session(("WMS_LOADED", "CAMERA_STARTED", "MEASUREMENT_STARTED", "MEASUREMENT_CREATED"))
    post(relay, events[:2])
    relay.drain()

    state = destination_state.get(relay.redis, "crm")
    assert state.paused == "2 consecutive failed attempts, the last HTTP 503 'down'" and state.paused_by == "auto"
    assert announcements(relay) == [
        (
            ":rotating_light: Destination crm is paused: 2 consecutive failed attempts, the last HTTP 503 'down'. "
            "Its deliveries wait until it is resumed."
        )
    ]

    # While paused: new events and due retries wait; nothing is sent, nothing is dead-lettered.
    post(relay, events[2:])
    relay.run_due_retries()
    relay.drain()
    assert len(relay.http.to(CRM)) == 2
    assert destination_state.get(relay.redis, "crm").parked == 4
    assert relay.redis.zcard(keys.DEAD_LETTERS) == 0

    # The probe sends the oldest waiting delivery; the receiver is back, so the rest follow.
    assert list(probes(relay)) == ["crm"]
    assert relay.run_due_timers() == 1
    relay.drain()
    delivered = [r.body for r in relay.http.to(CRM)[2:]]
    assert sorted(delivered) == sorted(to_body(e) for e in events)  # each event exactly once
    state = destination_state.get(relay.redis, "crm")
    assert (state.paused, state.failures, state.parked) == (None, 0, 0)
    assert announcements(relay)[1] == (
        ":rotating_light: Destination crm is resumed (a delivery succeeded); 3 waiting deliveries released."
    )
    # The resumption cancels the probe timer; one that still runs finds the destination active,
    # does nothing and is not set again.
    assert probes(relay) == {}
    due.schedule(relay.redis, destination_state.probe_timer("crm"), time.time())
    assert relay.run_due_timers() == 1
    relay.drain()
    assert len(relay.http.to(CRM)) == 2 + len(events)
    assert probes(relay) == {}


def test_a_410_pauses_the_destination_at_once_and_keeps_the_delivery(relay_factory):
    relay = relay_factory(PAUSING)
    relay.http.script(CRM, Reply(410, b"gone"))
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    relay.drain()
    state = destination_state.get(relay.redis, "crm")
    assert (state.paused, state.parked) == ("it answered HTTP 410 (gone)", 1)
    assert relay.redis.zcard(keys.DEAD_LETTERS) == 0 and relay.scheduled() == []
    assert list(probes(relay)) == ["crm"]
    assert relay.run_due_timers() == 1
    relay.drain()
    assert [r.body for r in relay.http.to(CRM)] == [to_body(event)] * 2


def test_operators_pause_and_resume_by_hand(relay_factory, monkeypatch):
    relay = relay_factory(PAUSING)
    settings = relay.rt.settings
    for name, value in {
        "REDIS_URL": settings.redis_url.reveal(),
        "RELAY_CONFIG": settings.config_path,
        "SMTP_URL": settings.smtp_url.reveal(),
        "EMAIL_FROM": settings.email_from,
    }.items():
        monkeypatch.setenv(name, value)

    def run(*args):
        return CliRunner().invoke(main, ["destinations", *args], catch_exceptions=False)

    assert run("pause", "crm", "--reason", "receiver maintenance").stdout == "paused crm\n"
    assert run("pause", "crm").exit_code == 1
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    relay.drain()
    assert relay.http.to(CRM) == [] and probes(relay) == {}  # not probed
    listing = [re.sub(r"since \d\d:\d\dZ", "since <hh:mm>Z", line) for line in run().stdout.splitlines()]
    assert listing[0] == (
        "ops-slack (slack): active; 0 consecutive failure(s); 0 waiting, 0 scheduled, 0 in flight, 0 parked; "
        "since <hh:mm>Z: 0 attempt(s), 0 ok"
    )
    assert listing[2].startswith("crm (http): PAUSED by operator since ") and listing[2].endswith(
        ": receiver maintenance; 0 consecutive failure(s); 0 waiting, 0 scheduled, 0 in flight, 1 parked; "
        "since <hh:mm>Z: 0 attempt(s), 0 ok"
    )
    assert run("resume", "crm").stdout == "resumed crm; released 1 waiting deliveries\n"
    assert run("resume", "crm").exit_code == 1
    assert "no destination named 'nope'" in run("pause", "nope").output
    relay.drain()
    assert [r.body for r in relay.http.to(CRM)] == [to_body(event)]
    assert len(announcements(relay)) == 2


def test_a_probe_that_fails_keeps_the_destination_paused(relay_factory):
    relay = relay_factory(PAUSING)
    relay.http.script(CRM, *[Reply(503, b"down")] * 3)
    events = sample_session(("WMS_LOADED", "CAMERA_STARTED"))
    post(relay, events)
    relay.drain()
    relay.run_due_retries()  # their retries come due while paused: they wait
    relay.drain()
    probed_at = time.time()
    assert relay.run_due_timers() == 1
    relay.drain()
    assert len(relay.http.to(CRM)) == 3  # two failures, then a failed probe
    assert destination_state.get(relay.redis, "crm").paused is not None
    # Probing goes on: the next probe is due probe_every (1 s) after this one.
    (next_probe,) = probes(relay).values()
    assert probed_at + 1 - 0.001 <= next_probe <= time.time() + 1
    # The probed delivery is first in line again, its schedule untouched; nothing is dead-lettered.
    state = destination_state.get(relay.redis, "crm")
    assert state.parked == 2 and relay.scheduled() == []
    head = json.loads(relay.redis.lindex(keys.parked_key("crm"), 0))
    probed = json.loads(relay.http.to(CRM)[2].body)
    assert head[0] == f"wms:{probed['sessionId']}:{probed['sequence']}"
    assert relay.redis.zcard(keys.DEAD_LETTERS) == 0


def test_a_success_in_flight_does_not_lift_an_operators_pause(relay_factory):
    relay = relay_factory(PAUSING)
    relay.http.script(CRM, Reply(delay=0.5))
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    pause = threading.Timer(0.2, destination_state.pause, (relay.redis, "crm", "maintenance", "operator", None))
    pause.start()  # the operator pauses while the send is in flight
    relay.drain()
    pause.join()
    assert relay.rt.wait_idle(5)
    assert len(relay.http.to(CRM)) == 1
    state = destination_state.get(relay.redis, "crm")
    assert (state.paused, state.paused_by) == ("maintenance", "operator")


def test_deliveries_waiting_for_a_removed_destination_are_listed_and_can_be_released(relay_factory, monkeypatch):
    relay = relay_factory(PAUSING)
    destination_state.pause(relay.redis, "old-crm", "maintenance", "operator", None)
    relay.redis.rpush(
        keys.parked_key("old-crm"),
        destination_state.Parked(
            "wms:s:0",
            1,
            0,
            json.dumps(
                {
                    "v": 1,
                    "id": "wms:s:0",
                    "source": "wms",
                    "received_at": 0,
                    "body": to_body(
                        {"timestamp": 1, "sessionId": "s", "sequence": 0, "severity": "INFO", "event": "X"}
                    ).decode(),
                }
            ),
        ).to_json(),
    )
    settings = relay.rt.settings
    for name, value in {
        "REDIS_URL": settings.redis_url.reveal(),
        "RELAY_CONFIG": settings.config_path,
        "SMTP_URL": settings.smtp_url.reveal(),
        "EMAIL_FROM": settings.email_from,
    }.items():
        monkeypatch.setenv(name, value)
    listing = CliRunner().invoke(main, ["destinations"]).stdout.splitlines()
    assert listing[-1].startswith("old-crm (no longer configured): PAUSED by operator since ")
    assert CliRunner().invoke(main, ["destinations", "resume", "old-crm"]).stdout == (
        "resumed old-crm; released 1 waiting deliveries\n"
    )
    relay.drain()
    # Released, it cannot be sent anywhere: it becomes a dead letter, to replay if the destination returns.
    assert relay.redis.zrange(keys.DEAD_LETTERS, 0, -1) == [b"old-crm:wms:s:0"]


def test_the_expiry_timer_enforces_the_configured_dead_letter_retention(relay_factory, caplog):
    relay = relay_factory(PAUSING + "dead_letters: {retention: 1d}\n")
    relay.http.script(CRM, Reply(400, b"rejected"))
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    relay.drain()
    member = f"crm:wms:{event['sessionId']}:0"
    relay.redis.zadd(keys.DEAD_LETTERS, {member: time.time() - 2 * 86400})  # two days pass
    timers.ensure(relay.rt)  # as every worker does when it starts
    assert [m for m in relay.timers() if "session" not in m] == [timers.EXPIRY]
    ran_at = time.time()
    assert relay.run_due_timers() == 1
    relay.drain()
    assert relay.redis.zcard(keys.DEAD_LETTERS) == 0
    assert f"dead letter wms:{event['sessionId']}:0 -> crm removed: older than the 1-day retention" in caplog.text
    # It runs again every operations.sweep_every (15 s by default).
    sweep_every = relay.rt.config.operations.sweep_every
    assert ran_at + sweep_every - 0.001 <= relay.timers()[timers.EXPIRY] <= time.time() + sweep_every


# Four sends at a time: the HTTP peer's listen backlog (socketserver's 5) refuses more at once.
ISOLATED = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  crm: {type: http, url: "%(http)s/crm?token=crm-token", signing_secret: "%(crm_secret)s", concurrency: 4}
  audit: {type: http, url: "%(http)s/audit", signing_secret: "%(crm_secret)s", concurrency: 4}
rules:
  - name: everything
    match: {}
    to: [crm, audit]
"""


@pytest.mark.slow
def test_a_paused_destination_with_a_large_backlog_does_not_hold_up_another(relay_factory):
    relay = relay_factory(ISOLATED)
    assert destination_state.pause(relay.redis, "crm", "receiver maintenance", "operator", None)
    events = sample_session(("WMS_LOADED",) * 800)
    bodies = sorted(to_body(e) for e in events)
    inbox = Inbox(relay.redis, relay.rt.config.ingest.dedup_window)
    for event in events:
        assert not inbox.accept(parse_event("wms", to_body(event)), to_body(event)).duplicate
    relay.drain()
    assert sorted(r.body for r in relay.http.to("/audit")) == bodies  # all 800, each once
    assert relay.http.to(CRM) == []
    assert destination_state.get(relay.redis, "crm").parked == 800

    assert destination_state.resume(relay.redis, "crm", "an operator", relay.rt.config.state_ttl) == 800
    relay.drain()
    assert sorted(r.body for r in relay.http.to(CRM)) == bodies  # all 800, each once
    assert destination_state.get(relay.redis, "crm").parked == 0
    assert len(relay.http.to("/audit")) == 800


def test_deliveries_left_parked_for_an_active_destination_are_released_by_the_expiry_timer(relay_factory, caplog):
    relay = relay_factory(PAUSING)
    assert destination_state.pause(relay.redis, "crm", "maintenance", "operator", None)
    events = sample_session(("WMS_LOADED",) * 3)
    post(relay, events)
    relay.drain()
    assert destination_state.get(relay.redis, "crm").parked == 3
    # A resume interrupted right after lifting the pause: the deliveries are still parked.
    relay.redis.hdel(keys.destination_key("crm"), "paused", "paused_at", "paused_by")
    relay.drain()
    assert relay.http.to(CRM) == []
    timers.ensure(relay.rt)
    assert relay.run_due_timers() == 1
    relay.drain()
    assert sorted(r.body for r in relay.http.to(CRM)) == sorted(to_body(e) for e in events)
    assert destination_state.get(relay.redis, "crm").parked == 0
    assert "destination crm is not paused, but 3 deliveries still waited for it: released" in caplog.text


def test_a_probe_never_resends_a_delivery_that_is_already_done(relay_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="workers")  # probes are routine: at DEBUG
    relay = relay_factory(PAUSING)
    (event,) = sample_session(("WMS_LOADED",))
    post(relay, [event])
    relay.drain()
    event_id = f"wms:{event['sessionId']}:0"
    assert relay.redis.hget(keys.delivery_key(event_id), "crm") == b"ok"
    # A stale parked copy of that delivery (e.g. left by a crash), while crm is paused by us.
    envelope = {"v": 1, "id": event_id, "source": "wms", "received_at": time.time(), "body": to_body(event).decode()}
    relay.redis.rpush(keys.parked_key("crm"), json.dumps([event_id, 1, 0, json.dumps(envelope)]))
    assert destination_state.pause(relay.redis, "crm", "testing", "auto", 60)
    assert relay.run_due_timers() == 1
    relay.drain()
    assert len(relay.http.to(CRM)) == 1  # not sent again
    assert relay.redis.hget(keys.delivery_key(event_id), "crm") == b"ok"
    assert relay.redis.llen(keys.parked_key("crm")) == 0  # the stale copy is gone
    assert f"{event_id} -> crm attempt 1: a stale copy, removed; not probing with it" in caplog.text


def test_probes_of_a_slow_destination_do_not_pile_up(relay_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="workers")  # probes are routine: at DEBUG
    relay = relay_factory(PAUSING)
    post(relay, sample_session(("WMS_LOADED",)))
    assert destination_state.pause(relay.redis, "crm", "testing", "auto", 60)
    relay.drain()  # the delivery is parked
    relay.http.script(CRM, Reply(200, b"ok", delay=1.0))  # the receiver is back, but slow
    assert probe_once(relay.rt, "crm")  # a probe starts...
    assert not probe_once(relay.rt, "crm")  # ...and the next tick starts none while it is in hand
    assert "probing crm: the previous probe is still in hand; not starting another" in caplog.text
    assert relay.rt.wait_idle(10)
    assert len(relay.http.to(CRM)) == 1
    assert destination_state.get(relay.redis, "crm").paused is None  # its success resumed crm
