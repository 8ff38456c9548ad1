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
from workers.destinations.email import email_message
from workers.destinations.http import callback_headers
from workers.destinations.slack import (
    FIELD_TEXT_MAX,
    HEADER_MAX,
    SECTION_TEXT_MAX,
    compile_template,
    slack_message,
)

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
# The tags of our own mail HTML: anything else that looks like markup came from the event.
OUR_TAGS = re.compile(r"</?(?:html|body|h2|p|table|tr|th|td|small)(?: [a-z]+=\w+)?>")


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
