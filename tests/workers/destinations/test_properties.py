"""Every adapter renders any valid event: hypothesis builds arbitrary events (any JSON string,
lone surrogates included, any keys, nesting, big numbers), each goes through the web's own parser,
and each adapter's pure rendering must succeed, be sendable, and let no event data act as markup."""

import json
import re
from email import message_from_bytes, policy

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.destinations import HttpDestination
from config.wms_events import CATALOGUE, SEVERITIES
from relay.domain.event import MAX_SEQUENCE, MAX_TIMESTAMP, Event, parse_event
from workers.destinations.email import digest_email, email_message
from workers.destinations.http import callback_headers
from workers.destinations.slack import (
    FIELD_TEXT_MAX,
    HEADER_MAX,
    SECTION_TEXT_MAX,
    compile_template,
    slack_message,
)
from workers.destinations.slack_sessions import digest_message

# Strings as JSON can spell them: any code point, lone surrogates included, and pieces chosen to hurt.
HOSTILE = ["\ud800", "\udfff", "\x00", "\r\n", "\u202e", "\u2066", "<!channel>", "<http://e.x|y>", "&amp;", "&", "*"]
strings = st.lists(
    st.one_of(st.text(st.characters(exclude_categories=()), max_size=20), st.sampled_from(HOSTILE)), max_size=6
).map("".join)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    strings,
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4), max_leaves=8
)
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=256)
events = st.fixed_dictionaries(
    {
        "timestamp": st.integers(0, MAX_TIMESTAMP - 1),
        "sessionId": printable,
        "sequence": st.integers(0, MAX_SEQUENCE),
        "severity": st.sampled_from(SEVERITIES),
        "event": st.one_of(st.sampled_from(sorted(CATALOGUE)), printable.map(lambda s: s[:100])),
        # measurementId, when present, must be a string (the parser refuses anything else).
        "payload": st.tuples(
            st.dictionaries(strings.filter(lambda k: k != "measurementId"), values, max_size=25), st.none() | strings
        ).map(lambda p: p[0] if p[1] is None else {**p[0], "measurementId": p[1]}),
    }
)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEMPLATE = compile_template("{{ emoji }} {{ code }} {{ session_id }} {{ payload }} {{ measurement_id }}")
# The tags of our own mail HTML, with their attributes (whose values never hold event data):
# anything else that looks like markup came from the event.
OUR_TAGS = re.compile(
    r"<!DOCTYPE html>|</?(?:html|head|meta|body|table|tr|th|td|div|p|span|b|br)"
    r'(?: [a-z-]+="[^"<>]*")*>'
)


def parsed(fields: dict) -> tuple[Event, bytes]:
    body = json.dumps(fields).encode()  # ensure_ascii: a lone surrogate becomes a valid \ud800 escape
    return parse_event("wms", body), body


def slack_texts(message: dict) -> list[tuple[str, str]]:
    """(kind, text) for the fallback and every text object of the message."""
    found = [("text", message["text"])]
    for block in message["attachments"][0]["blocks"]:
        if "text" in block:
            found.append((block["type"], block["text"]["text"]))
        found += [("field", f["text"]) for f in block.get("fields", []) + block.get("elements", [])]
    return found


def assert_escaped(text: str) -> None:
    # Our own rendering writes no '<' or '>', so any would be event data; '&' only starts an entity.
    assert "<" not in text and ">" not in text, text
    assert not re.search(r"&(?!amp;|lt;|gt;)", text), text


@FAST
@given(events, st.booleans())
def test_slack_renders_any_event_escaped_and_within_block_kit_limits(fields, templated):
    event, _ = parsed(fields)
    message = slack_message(event, TEMPLATE if templated else None)
    json.dumps(message, ensure_ascii=False).encode("utf-8")  # Slack takes UTF-8 only
    limits = {"header": HEADER_MAX, "section": SECTION_TEXT_MAX, "field": FIELD_TEXT_MAX, "text": SECTION_TEXT_MAX}
    for kind, text in slack_texts(message):
        assert_escaped(text)
        assert 1 <= len(text) <= limits[kind] and text.strip(), (kind, text)


@FAST
@given(events)
def test_email_renders_any_event_as_a_sendable_mail_with_only_its_own_headers(fields):
    event, _ = parsed(fields)
    mail = email_message(event, "relay@wms.example.com", ["ops@example.com"], ["qa@example.com"], "ops-email")
    raw = mail.as_bytes(policy=policy.SMTP)  # what smtplib sends: CRLF lines
    back = message_from_bytes(raw, policy=policy.default)
    assert [name for name, _ in back.items()] == [
        "Subject",
        "From",
        "To",
        "Cc",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "MIME-Version",
        "Content-Type",
    ]
    # lstrip: Python's parser keeps the space of a fold right after 'Subject:' (long session ids).
    assert "\n" not in back["Subject"] and back["Subject"].lstrip().startswith(f"[WMS {event.severity}] ")
    html = back.get_body(("html",)).get_content()
    leftover = OUR_TAGS.sub("", html)
    assert "<" not in leftover and ">" not in leftover, leftover
    assert back.get_body(("plain",)).get_content().rstrip().endswith(f"event id: {event.id}")


@FAST
@given(events)
def test_the_callback_request_carries_any_body_unchanged(fields):
    event, body = parsed(fields)
    config = HttpDestination.model_validate(
        {"type": "http", "url": "https://crm.example.com/in", "signing_secret": "s3cret"}
    )
    request = requests.Request(
        "POST", "https://crm.example.com/in", data=body, headers=callback_headers(config, event, body, 1700000000)
    ).prepare()
    assert request.body == body and request.headers["webhook-id"] == event.id


# Derived events as the relay's parser reads them back: every field of the summary payload either
# of its expected type or any JSON value at all (the layout must not fail on a field it does not expect).
def loose(expected):
    return st.one_of(expected, values)


ints = st.integers(min_value=-(2**53), max_value=2**53) | st.integers(0, 2 * 10**9)
timelines = st.lists(
    st.fixed_dictionaries(
        {
            "sequence": loose(st.integers(0, 10**6)),
            "event": loose(printable.map(lambda s: s[:100])),
            "severity": loose(st.sampled_from(SEVERITIES)),
            "timestamp": loose(ints),
            "payload": loose(st.dictionaries(strings, values, max_size=4)),
        }
    ),
    max_size=25,
)
session_payloads = st.fixed_dictionaries(
    {
        "outcome": loose(st.sampled_from(["completed", "failed", "abandoned"])),
        "reason": loose(st.none() | printable | st.just("idle")),
        "reasonSequence": loose(st.none() | st.integers(0, 30)),
        "reasonPayload": loose(st.dictionaries(strings, values, max_size=4)),
        "measurementIds": loose(st.lists(strings, max_size=3)),
        "eventCount": loose(ints),
        "startedAt": loose(ints),
        "endedAt": loose(ints),
        "durationSeconds": loose(ints),
        "idleSeconds": loose(ints),
        "lastSnr": values,
        "gaps": loose(st.lists(st.lists(ints, min_size=2, max_size=2), max_size=5)),
        "outOfOrder": loose(ints),
        "timeline": loose(timelines),
    }
)
group_payloads = st.fixed_dictionaries(
    {"rule": loose(strings), "part": loose(st.integers(1, 5)), "events": loose(timelines)}
)
derived_events = st.one_of(
    st.tuples(
        st.sampled_from(["SESSION_COMPLETED", "SESSION_FAILED", "SESSION_ABANDONED"]),
        st.just("session"),
        session_payloads,
    ),
    st.tuples(st.just("EVENT_GROUP"), st.just("group:ops-slack:part-1"), group_payloads),
)


def parsed_derived(drawn: tuple, session_id: str, measurement: str | None) -> Event:
    code, derived, payload = drawn
    payload = {**payload, **({"measurementId": measurement} if measurement is not None else {})}
    body = {
        "timestamp": 1764500000,
        "sessionId": session_id,
        "derived": derived,
        "severity": "ERROR",
        "event": code,
        "payload": payload,
    }
    return parse_event("wms", json.dumps(body).encode(), derived=True)


# Fewer examples: each draws up to four derived events of up to 25 timeline lines and renders
# each in Slack and mail (100 took 15 s of the suite; the escaping is one function for all).
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(derived_events, printable, st.none() | strings), min_size=1, max_size=4), events)
def test_derived_events_and_digests_render_escaped_within_limits_in_slack_and_mail(drawn, wms):
    derived = [parsed_derived(*d) for d in drawn]
    every = [*derived, parsed(wms)[0]]
    limits = {"header": HEADER_MAX, "section": SECTION_TEXT_MAX, "field": FIELD_TEXT_MAX, "text": SECTION_TEXT_MAX}
    for message in [*(slack_message(e) for e in derived), digest_message(every)]:
        json.dumps(message, ensure_ascii=False).encode("utf-8")
        assert len(message["attachments"][0]["blocks"]) <= 50
        for kind, text in slack_texts(message):
            assert_escaped(text)
            assert 1 <= len(text) <= limits[kind] and text.strip(), (kind, text)
    sender = "relay@wms.example.com"
    mails = [email_message(e, sender, ["ops@example.com"], [], "ops-email") for e in derived]
    for mail in [*mails, digest_email(every, sender, ["ops@example.com"], [], "ops-email")]:
        back = message_from_bytes(mail.as_bytes(policy=policy.SMTP), policy=policy.default)
        assert "\n" not in back["Subject"] and back["Bcc"] is None
        leftover = OUR_TAGS.sub("", back.get_body(("html",)).get_content())
        assert "<" not in leftover and ">" not in leftover, leftover
