"""Event data at its most hostile, as each adapter renders it: any valid JSON string (lone
surrogates, NULs, bidi overrides), keys as well as values, deep nesting; and that nothing of it can
act as markup (Slack mrkdwn, HTML) or as a mail header."""

import json
import sys
from email import message_from_bytes, policy

import pytest
import requests

from config.destinations import EmailDestination, SlackDestination
from config.smtp import parse_smtp_url
from relay.domain.event import Event, parse_event
from tests.workers.destinations.derived import html_cells, html_rows
from workers.destinations.email import EmailAdapter, email_message
from workers.destinations.slack import SlackAdapter, compile_template, slack_message

SENDER = "relay@wms.example.com"
HOSTILE_KEY = "<!channel> <http://evil.example|click>"


def parsed(payload_json: str, code: str = "CONSTRAINT_VIOLATION") -> Event:
    """The event WMS would send with this payload, exactly as the body spells it."""
    body = (
        '{"timestamp":1689684577,"sessionId":"sess-1","sequence":6,"severity":"ERROR",'
        f'"event":"{code}","payload":{payload_json}}}'
    ).encode()
    return parse_event("wms", body)


def texts(message: dict) -> list[str]:
    """Every text Slack shows of a message: the fallback and each text object of the blocks."""
    found = [message["text"]]
    for block in message["attachments"][0]["blocks"]:
        found += [block["text"]["text"]] if "text" in block else []
        found += [f["text"] for f in block.get("fields", []) + block.get("elements", [])]
    return found


def test_a_lone_surrogate_is_shown_as_a_replacement_character_in_every_message(smtp_peer, http_peer):
    event = parsed(r'{"note":"x\ud800y","k\udfffey":"v"}')
    assert event.payload["note"] == "x\ud800y"  # valid JSON: WMS may send it
    mail = email_message(event, SENDER, ["ops@example.com"], [])
    text = mail.get_body(("plain",)).get_content()
    assert "note         x\ufffdy" in text and "k\ufffdey" in text
    assert "x\ufffdy" in html_cells(mail.get_body(("html",)).get_content())
    message = slack_message(event)
    assert "*note*\nx\ufffdy" in texts(message) and "*k\ufffdey*\nv" in texts(message)
    json.dumps(message, ensure_ascii=False).encode("utf-8")  # what Slack requires: UTF-8
    # And the adapter really sends it.
    config = EmailDestination.model_validate({"type": "email", "to": ["ops@example.com"]})
    assert EmailAdapter(config, parse_smtp_url(smtp_peer.url), SENDER).deliver(event, b"{}").ok
    ((_, _, received),) = smtp_peer.messages
    assert "x\ufffdy" in received.get_body(("plain",)).get_content()
    slack = SlackAdapter(
        SlackDestination.model_validate({"type": "slack", "webhook_url": http_peer.url + "/s"}), requests.Session()
    )
    assert slack.deliver(event, b"{}").ok
    assert "*note*\nx\ufffdy" in texts(json.loads(http_peer.requests[0].body))


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (r"a\u0000b", "a\ufffdb"),  # NUL
        (r"a\u0007\u001bb\u007f", "a\ufffd\ufffdb\ufffd"),  # BEL, ESC, DEL
        (r"a\u0085b", "a\ufffdb"),  # a C1 control
        (r"a\rb", "a\ufffdb"),  # a lone CR would end a line of the mail's text part
        (r"paid \u202e1337\u202c", "paid \ufffd1337\ufffd"),  # a right-to-left override reverses what follows
        (r"a\u2066b\u2069", "a\ufffdb\ufffd"),  # bidi isolates
        (r"tab\tand\nnewline", "tab\tand\nnewline"),  # kept: they read as they are meant to
        (r"caf\u00e9 \ud83c\udf0a \u05e9\u05dc\u05d5\u05dd", "café 🌊 שלום"),  # real text is untouched
    ],
)
def test_characters_that_cannot_be_shown_as_themselves_are_replaced(raw, shown):
    event = parsed('{"note":"%s"}' % raw)
    assert f"*note*\n{shown}" in texts(slack_message(event))
    mail = email_message(event, SENDER, ["ops@example.com"], [])
    assert shown in html_cells(mail.get_body(("html",)).get_content())
    mail.as_bytes()


def test_deeply_nested_values_render_even_deep_in_a_worker_thread():
    depth = 900  # near what the parser takes (the web refuses deeper bodies)
    event = parsed('{"n":%s1%s}' % ("[" * depth, "]" * depth))

    def deep(frames: int):
        # A worker's send runs many frames down; Python's recursion limit counts them all.
        return deep(frames - 1) if frames else (slack_message(event), email_message(event, SENDER, ["o@e.com"], []))

    message, mail = deep(min(200, sys.getrecursionlimit() // 4))
    (value,) = [t for t in texts(message) if t.startswith("*n*")]
    assert value.startswith("*n*\n[[[[") and value.endswith("…")
    assert "[" * depth + "1" + "]" * depth in mail.get_body(("plain",)).get_content()


def test_a_very_long_key_overflows_its_own_row_only():
    rows = {f"f{i}": i for i in range(300)}
    event = parsed(json.dumps({"k" * 20_000: "long", **rows}))
    text = email_message(event, SENDER, ["ops@example.com"], []).get_body(("plain",)).get_content()
    assert len(text) < 40_000  # not 300 rows padded to 20,000 characters each
    assert "\nf299                      299\n" in text and "k" * 20_000 + "  long" in text


def test_nested_values_read_as_json():
    event = parsed('{"detail":{"ok":true,"none":null,"list":[1,2.5,"s"]}}')
    assert '*detail*\n{"ok": true, "none": null, "list": [1, 2.5, "s"]}' in texts(slack_message(event))


def test_payload_keys_cannot_ping_a_channel_or_forge_a_link_with_or_without_a_template():
    event = parsed(json.dumps({HOSTILE_KEY: "v", "a&b": "<x>"}))
    for template in (None, compile_template("{{ code }} {{ payload }}")):
        shown = texts(slack_message(event, template))
        assert all("<" not in t and ">" not in t for t in shown), shown
        assert "*&lt;!channel&gt; &lt;http://evil.example|click&gt;*\nv" in shown
        assert "*a&amp;b*\n&lt;x&gt;" in shown


def test_a_templates_every_value_is_escaped_even_whole_objects():
    event = parsed(json.dumps({HOSTILE_KEY: "<!here>"}))
    rendered = slack_message(event, compile_template("{{ payload }} {{ payload.keys() | list }}"))["text"]
    assert rendered == (
        '{"&lt;!channel&gt; &lt;http://evil.example|click&gt;": "&lt;!here&gt;"} '
        '["&lt;!channel&gt; &lt;http://evil.example|click&gt;"]'
    )


def test_the_event_code_is_escaped_in_the_header_too():
    # An unknown code is accepted (WMS may add codes) and is printable ASCII: '<' and '&' included.
    event = parsed('{"x":1}', code="<!channel>&co")
    header = slack_message(event)["attachments"][0]["blocks"][0]["text"]
    assert header == {"type": "plain_text", "text": "&lt;!channel&gt;&amp;co", "emoji": True}


def test_a_cut_never_splits_an_escape():
    event = parsed(json.dumps({"&" * 600: "v", "k": "x" * 298 + "&&&&"}))
    fields = [t for t in texts(slack_message(event)) if t.startswith(("*&amp;", "*k*"))]
    assert len(fields) == 2
    for text in fields:
        assert text.endswith("…") and len(text) <= 2000
        body = text[:-1]
        # Whatever is left of the cut text is whole entities.
        assert body.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").count("&") == 0, text[-12:]


def test_a_template_that_renders_nothing_keeps_the_default_text():
    # Slack refuses an empty text object (invalid_blocks): a missing field must not cost the alert.
    event = parsed('{"x":1}')
    message = slack_message(event, compile_template("{{ payload.missing }}"))
    assert message["text"] == slack_message(event)["text"]
    assert all(t.strip() for t in texts(message))


def test_the_subject_is_one_line_whatever_the_event_holds():
    # sessionId and event are printable ASCII once parsed; built directly, they still cannot add a header.
    event = Event("wms", "s\r\nBcc: victim@example.com", 1, 1689684577, "ERROR", "X\nX-Evil: 1", {})
    raw = email_message(event, SENDER, ["ops@example.com"], []).as_bytes(policy=policy.SMTP)
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["Bcc"] is None and mail["X-Evil"] is None
    assert mail["Subject"] == "[WMS ERROR] X X-Evil: 1 - session s\ufffd Bcc: victim@example.com"


def test_html_escapes_keys_and_values():
    event = parsed(json.dumps({"<b>key</b>": "<script>alert(1)</script>", "q": "\"'&"}))
    html = email_message(event, SENDER, ["ops@example.com"], []).get_body(("html",)).get_content()
    assert ("&lt;b&gt;key&lt;/b&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;") in html_rows(html)
    assert ("q", "&quot;&#x27;&amp;") in html_rows(html)
