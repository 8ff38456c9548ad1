"""Slack: the Block Kit message, its limits and template, and how Slack's answers are classified."""

import json

import pytest
import requests

from config.destinations import SlackDestination
from relay.domain.event import Event
from tests.peers import Reply
from workers.destinations.slack import SlackAdapter, compile_template, slack_message

PATH = "/services/T000/B000/XXXX"


def event(code="CONSTRAINT_VIOLATION", severity="ERROR", session="sess-1", **payload) -> Event:
    payload = payload or {"measurementId": "f0c8ca8d", "constraint": "FACE_NOT_CENTERED"}
    return Event("wms", session, 6, 1689684577, severity, code, payload)


def test_the_message_reads_at_a_glance():
    message = slack_message(event())
    assert message["text"] == ":red_circle: [ERROR] CONSTRAINT_VIOLATION - session sess-1 (measurement f0c8ca8d)"
    (attachment,) = message["attachments"]
    assert attachment["color"] == "#d0312d"
    header, headline, facts, payload, context = attachment["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "CONSTRAINT_VIOLATION", "emoji": True}}
    assert (
        headline["text"]["text"]
        == ":red_circle: *ERROR* A constraint has been violated (resulting in measurement cancel)"
    )
    assert [f["text"] for f in facts["fields"]] == [
        "*Severity*\nERROR",
        "*Session*\nsess-1",
        "*Measurement*\nf0c8ca8d",
        "*Sequence*\n6",
        "*Time (UTC)*\n2023-07-18 12:49:37",
        "*Source*\nwms",
    ]
    assert [f["text"] for f in payload["fields"]] == ["*Constraint*\nFACE_NOT_CENTERED"]
    assert context["elements"][0]["text"] == "event `wms:sess-1:6`"


@pytest.mark.parametrize(
    ("severity", "emoji", "colour"),
    [
        ("INFO", ":large_blue_circle:", "#2e7bcf"),
        ("WARN", ":large_orange_circle:", "#e8a317"),
        ("ERROR", ":red_circle:", "#d0312d"),
    ],
)
def test_severity_sets_emoji_and_colour(severity, emoji, colour):
    message = slack_message(event(severity=severity))
    assert message["text"].startswith(emoji) and message["attachments"][0]["color"] == colour


def test_payload_fields_are_named_and_values_escaped():
    message = slack_message(event("INTERMEDIATE_RESULTS", "INFO", snr=6.2, sequence=3, note="<b>&</b>", ok=True))
    fields = [f["text"] for f in message["attachments"][0]["blocks"][3]["fields"]]
    assert fields == ["*SNR*\n6.2", "*Result sequence*\n3", "*note*\n&lt;b&gt;&amp;&lt;/b&gt;", "*ok*\ntrue"]
    assert "*Measurement*\nnone yet" in [f["text"] for f in message["attachments"][0]["blocks"][2]["fields"]]


def test_block_kit_limits_are_respected():
    many = {f"field{i}": "v" * 5000 for i in range(25)}
    message = slack_message(event("X" * 200, "WARN", session="s" * 256, **many))
    blocks = message["attachments"][0]["blocks"]
    assert len(blocks[0]["text"]["text"]) == 150 and blocks[0]["text"]["text"].endswith("…")
    sections = [b for b in blocks if b["type"] == "section" and "fields" in b]
    assert len(sections) == 3  # facts + at most two payload sections
    assert all(len(b["fields"]) <= 10 and all(len(f["text"]) <= 2000 for f in b["fields"]) for b in sections)
    assert blocks[-1]["elements"][0]["text"].endswith("5 more payload field(s) not shown")
    assert all(len(f["text"].split("\n", 1)[1]) == 300 for b in sections[1:] for f in b["fields"])
    assert len(blocks) <= 50 and len(json.dumps(message)) < 16_000


def test_an_unknown_code_says_so():
    headline = slack_message(event("BRAND_NEW", "INFO", x=1))["attachments"][0]["blocks"][1]["text"]["text"]
    assert headline == ":large_blue_circle: *INFO* Not a documented WMS event code (WMS may have added it)"


def test_a_template_writes_the_text():
    template = "{{ emoji }} {{ code }} in {{ session_id }}: {{ payload.constraint | lower }} at {{ time_utc }}"
    message = slack_message(event(), compile_template(template))
    expected = ":red_circle: CONSTRAINT_VIOLATION in sess-1: face_not_centered at 2023-07-18 12:49:37"
    assert message["text"] == expected
    assert message["attachments"][0]["blocks"][1]["text"]["text"] == expected


def destination(url: str, **extra) -> SlackDestination:
    return SlackDestination.model_validate({"type": "slack", "webhook_url": url, **extra})


def test_a_sandboxed_template_cannot_reach_python_internals(http_peer):
    adapter = SlackAdapter(
        destination(http_peer.url + PATH, template="{{ event.__class__.__mro__ }}"), requests.Session()
    )
    outcome = adapter.deliver(event(), b"{}")
    assert (outcome.kind, outcome.status) == ("permanent", "template error")
    assert "SecurityError" in outcome.detail and http_peer.requests == []


@pytest.mark.parametrize(
    ("reply", "kind", "status", "detail", "retry_after"),
    [
        (Reply(200, b"ok"), "ok", "HTTP 200", "ok", None),
        (Reply(200, b"something else"), "permanent", "HTTP 200", "Slack did not answer 'ok': 'something else'", None),
        (Reply(400, b"invalid_payload"), "permanent", "HTTP 400", "invalid_payload", None),
        (Reply(403, b"invalid_token"), "permanent", "HTTP 403", "invalid_token", None),
        (Reply(404, b"no_service"), "permanent", "HTTP 404", "no_service", None),
        (Reply(410, b"channel_is_archived"), "gone", "HTTP 410", "channel_is_archived", None),
        (Reply(429, b"rate_limited", {"Retry-After": "12"}), "transient", "HTTP 429", "rate_limited", 12.0),
        (Reply(500, b"rollup_error"), "transient", "HTTP 500", "rollup_error", None),
    ],
)
def test_slacks_answers_are_classified(http_peer, reply, kind, status, detail, retry_after):
    http_peer.script(PATH, reply)
    outcome = SlackAdapter(destination(http_peer.url + PATH), requests.Session()).deliver(event(), b"{}")
    assert (outcome.kind, outcome.status, outcome.detail, outcome.retry_after) == (kind, status, detail, retry_after)
    (request,) = http_peer.requests
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == slack_message(event())


def test_a_timeout_is_transient_and_names_no_secret(http_peer):
    http_peer.script(PATH, Reply(delay=1.0))
    outcome = SlackAdapter(destination(http_peer.url + PATH, timeout="200ms"), requests.Session()).deliver(
        event(), b"{}"
    )
    assert (outcome.kind, outcome.status) == ("transient", "timeout")
    assert "XXXX" not in outcome.detail and "T000" not in outcome.detail


def test_a_refused_connection_is_transient_and_names_no_secret(http_peer):
    http_peer.stop()
    outcome = SlackAdapter(destination(http_peer.url + PATH), requests.Session()).deliver(event(), b"{}")
    assert (outcome.kind, outcome.status) == ("transient", "connection error")
    assert "XXXX" not in outcome.detail and "<redacted>" in outcome.detail


def test_event_data_cannot_ping_a_channel():
    hostile = event(session="<!channel>", measurementId="<!here|x>")
    message = slack_message(hostile)
    assert "<!" not in message["text"] and "&lt;!channel&gt;" in message["text"]
    templated = slack_message(hostile, compile_template("{{ session_id }} {{ payload.measurementId }}"))
    assert templated["text"] == "&lt;!channel&gt; &lt;!here|x&gt;"
