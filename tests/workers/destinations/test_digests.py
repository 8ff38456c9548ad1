"""Digests: several deliveries waiting for a rate-limited Slack or email destination, folded into
one message that counts every one of them; nothing disappears."""

import json

import pytest
import requests

from config.destinations import EmailDestination, HttpDestination, SlackDestination
from config.smtp import parse_smtp_url
from tests.workers.destinations.derived import (
    MEASUREMENT,
    group_event,
    html_cells,
    line,
    session_event,
    wms_event,
)
from tests.workers.destinations.test_session_messages import assert_within_block_kit, blocks
from workers.destinations.email import EmailAdapter, digest_email
from workers.destinations.http import HttpAdapter
from workers.destinations.slack import SlackAdapter
from workers.destinations.slack_sessions import digest_message

SENDER = "relay@wms.example.com"
M = {"measurementId": MEASUREMENT}


def burst():
    """12 failed sessions and 3 of WMS's own events, over 40 s."""
    return [session_event(session=f"s-{i}") for i in range(12)] + [
        wms_event("WEBSOCKET_DISCONNECTED", "WARN", session="s-20", **M),
        wms_event("CONSTRAINT_VIOLATION", "ERROR", session="s-21", offset=10, constraint="FACE_NOT_CENTERED"),
        wms_event("PAGE_VISIBILITY_CHANGE", "INFO", session="s-22", offset=20, visibility="hidden"),
    ]


def lines(message: dict) -> list[str]:
    return [t for b in blocks(message)[1:-1] for t in b["text"]["text"].split("\n")]


def test_a_digest_counts_what_it_folds_and_gives_each_a_line_most_severe_first():
    message = digest_message(burst())
    assert message["text"] == ":red_circle: [ERROR] 12 failed sessions, 3 other events in the last 40 s"
    assert message["attachments"][0]["color"] == "#d0312d"
    assert blocks(message)[0]["text"]["text"] == "12 failed sessions, 3 other events in the last 40 s"
    shown = lines(message)
    assert shown[:2] == [
        "• session s-21 — CONSTRAINT_VIOLATION (ERROR): FACE_NOT_CENTERED",
        "• session s-0 — SESSION_FAILED: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED), 40 s",
    ]
    assert shown[-2:] == [
        "• session s-20 — WEBSOCKET_DISCONNECTED (WARN)",
        "• session s-22 — PAGE_VISIBILITY_CHANGE (INFO): hidden",
    ]
    assert len(shown) == 15
    assert blocks(message)[-1]["elements"][0]["text"] == (
        "15 deliveries folded into one message while this destination was rate-limited"
        " · each session in full: `relay sessions show &lt;sessionId&gt;`"
    )


def test_every_kind_is_counted_and_said_in_its_own_words():
    events = [
        session_event(),
        session_event("SESSION_ABANDONED", session="s-2", reason="PAGE_UNLOADED", reasonSequence=9, reasonPayload={}),
        session_event("SESSION_ABANDONED", session="s-3", reason="idle", reasonSequence=None, reasonPayload={}),
        session_event("SESSION_COMPLETED", session="s-4", reason=None, reasonSequence=None, reasonPayload={}),
        group_event([line(3, "WEBSOCKET_DISCONNECTED", "WARN", 30), line(4, "API_ERROR", "ERROR", 31)], session="s-5"),
        group_event([line(9, "MEASUREMENT_CANCELED", "WARN", 35)], part=2, session="s-6", severity="WARN"),
        wms_event("WEBSOCKET_DISCONNECTED", "WARN", session="s-7"),
    ]
    message = digest_message(events)
    assert blocks(message)[0]["text"]["text"] == (
        "1 failed session, 2 abandoned sessions, 1 completed session, 2 grouped messages, 1 other event"
        " in the last 40 s"
    )
    assert lines(message) == [
        "• session s-5 — EVENT_GROUP (ERROR), 2 events: WEBSOCKET_DISCONNECTED, API_ERROR",
        "• session s-1 — SESSION_FAILED: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED), 40 s",
        "• session s-7 — WEBSOCKET_DISCONNECTED (WARN)",
        "• session s-6 — EVENT_GROUP follow-up (WARN), 1 more event: MEASUREMENT_CANCELED",
        "• session s-2 — SESSION_ABANDONED: PAGE_UNLOADED, 40 s",
        "• session s-3 — SESSION_ABANDONED: idle, 40 s",
        "• session s-4 — SESSION_COMPLETED, 40 s",
    ]


def test_one_event_says_when_it_happened():
    message = digest_message([wms_event("WEBSOCKET_DISCONNECTED", "WARN")])
    assert blocks(message)[0]["text"]["text"] == "1 event at 2025-11-30 10:52:40 UTC"


def test_an_empty_digest_is_a_callers_bug():
    with pytest.raises(ValueError, match=r"^a digest needs at least one event, got none$"):
        digest_message([])


def test_a_200_event_digest_shows_20_lines_within_block_kit_limits_and_counts_the_rest():
    events = [session_event(session=f"s-{i}" + "<&>" * 80) for i in range(150)]
    events += [wms_event("WEBSOCKET_DISCONNECTED", "WARN", session=f"w-{i}", offset=i) for i in range(50)]
    message = digest_message(events)
    assert_within_block_kit(message)
    assert blocks(message)[0]["text"]["text"] == "150 failed sessions, 50 other events in the last 49 s"
    shown = lines(message)
    assert len(shown) == 21 and shown[-1] == "+180 more (`relay sessions list --outcome failed`)"
    assert blocks(message)[-1]["elements"][0]["text"].startswith("200 deliveries folded into one message")


def test_a_cut_digest_points_at_what_it_left_out():
    events = [wms_event("WEBSOCKET_DISCONNECTED", "WARN", session=f"w-{i}", offset=i) for i in range(25)]
    assert lines(digest_message(events))[-1] == "+5 more (`relay sessions list`)"


def test_the_digest_mail_lists_every_event():
    events = burst() * 14  # 210 events
    mail = digest_email(events, SENDER, ["ops@example.com"], [], "ops-email")
    assert mail["Subject"] == "[WMS ERROR] Digest: 168 failed sessions, 42 other events in the last 40 s"
    text = mail.get_body(("plain",)).get_content().splitlines()
    assert text[:3] == [
        "[ERROR] 168 failed sessions, 42 other events in the last 40 s",
        "",
        (
            "210 deliveries waited for this destination's rate limit and are folded into this one mail, most severe first."
        ),
    ]
    listed = [t for t in text if t.startswith("- ")]
    assert len(listed) == 210
    assert listed[0] == "- 2025-11-30 10:52:50  ERROR  session s-21 — CONSTRAINT_VIOLATION (ERROR): FACE_NOT_CENTERED"
    html = mail.get_body(("html",)).get_content()
    assert html_cells(html).count("SESSION_FAILED: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED), 40 s") == 168
    assert ">Digest</span>" in html and '<td style="background:#d0312d;color:#ffffff;' in html


def test_digest_mails_thread_by_session_or_with_the_destinations_digests():
    one = digest_email([session_event(), wms_event("WMS_LOADED", "INFO", session="s-1")], SENDER, ["o@e.com"], [])
    single = digest_email([wms_event("WMS_LOADED", "INFO", session="s-1")], SENDER, ["o@e.com"], [])
    assert one["References"] == single["References"] == one["In-Reply-To"]
    many = digest_email(burst(), SENDER, ["o@e.com"], [], "ops-email")
    again = digest_email(list(reversed(burst())), SENDER, ["o@e.com"], [], "ops-email")
    other = digest_email(burst()[:3], SENDER, ["o@e.com"], [], "ops-email")
    assert many["References"] == other["References"] != one["References"]
    assert many["Message-ID"] == again["Message-ID"] != other["Message-ID"]  # the same digest resent: the same mail


def test_slack_posts_the_digest(http_peer):
    config = SlackDestination.model_validate({"type": "slack", "webhook_url": http_peer.url + "/s"})
    outcome = SlackAdapter(config, requests.Session()).deliver_digest(burst())
    assert (outcome.kind, outcome.status) == ("ok", "HTTP 200")
    (request,) = http_peer.requests
    assert json.loads(request.body) == digest_message(burst())


def test_email_sends_the_digest(smtp_peer):
    config = EmailDestination.model_validate({"type": "email", "to": ["ops@example.com"]})
    outcome = EmailAdapter(config, parse_smtp_url(smtp_peer.url), SENDER, "ops-email").deliver_digest(burst())
    assert (outcome.kind, outcome.status) == ("ok", "SMTP 250")
    ((_, recipients, mail),) = smtp_peer.messages
    assert recipients == ["ops@example.com"]
    # lstrip: Python's parser keeps the space of a fold right after 'Subject:'.
    assert mail["Subject"].lstrip() == "[WMS ERROR] Digest: 12 failed sessions, 3 other events in the last 40 s"


def test_a_callback_never_folds():
    config = HttpDestination.model_validate(
        {"type": "http", "url": "https://crm.example.com/in", "signing_secret": "s"}
    )
    with pytest.raises(NotImplementedError) as raised:
        HttpAdapter(config, requests.Session()).deliver_digest(burst())
    assert str(raised.value) == "an HTTP callback takes each event's own body: only slack and email fold digests"
