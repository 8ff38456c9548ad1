"""Email: the message (subject, parts, threading) and how SMTP answers are classified."""

import time

import pytest

from config.destinations import EmailDestination
from config.smtp import parse_smtp_url
from relay.domain.event import Event
from tests.peers import SmtpPeer
from tests.workers.destinations.derived import html_rows
from workers.destinations.email import EmailAdapter, email_message

SENDER = "relay@wms.example.com"


def event(code="CONSTRAINT_VIOLATION", severity="ERROR", session="sess-1", sequence=6, **payload) -> Event:
    payload = payload or {"measurementId": "f0c8ca8d", "constraint": "FACE_<NOT>_CENTERED"}
    return Event("wms", session, sequence, 1689684577, severity, code, payload)


def test_the_mail_says_what_happened_in_text_and_html():
    mail = email_message(event(), SENDER, ["ops@example.com"], ["qa@example.com"])
    assert mail["Subject"] == "[WMS ERROR] CONSTRAINT_VIOLATION - session sess-1"
    assert (mail["From"], mail["To"], mail["Cc"]) == (SENDER, "ops@example.com", "qa@example.com")
    assert mail["Date"] == "Tue, 18 Jul 2023 12:49:37 +0000"  # the event's time
    text = mail.get_body(("plain",)).get_content()
    assert text.splitlines()[:3] == [
        "[ERROR] CONSTRAINT_VIOLATION: A constraint has been violated (resulting in measurement cancel)",
        "",
        "Severity     ERROR",
    ]
    assert "Constraint   FACE_<NOT>_CENTERED" in text and "event id: wms:sess-1:6" in text
    html = mail.get_body(("html",)).get_content()
    assert ("Constraint", "FACE_&lt;NOT&gt;_CENTERED") in html_rows(html)


def test_mails_of_one_session_thread_together_and_others_do_not():
    first, second = (email_message(event(sequence=n), SENDER, ["o@example.com"], []) for n in (6, 7))
    other = email_message(event(session="sess-2"), SENDER, ["o@example.com"], [])
    assert first["Message-ID"] != second["Message-ID"]
    assert first["References"] == first["In-Reply-To"] == second["References"] == second["In-Reply-To"]
    assert other["References"] != first["References"]
    assert first["Message-ID"].endswith("@wms.example.com>")
    # The same event always gets the same Message-ID, so a resend is recognisably the same mail.
    assert email_message(event(sequence=6), SENDER, ["o@example.com"], [])["Message-ID"] == first["Message-ID"]
    # ...but another destination's copy of it is another mail.
    assert (
        email_message(event(sequence=6), SENDER, ["o@example.com"], [], "qa-email")["Message-ID"] != first["Message-ID"]
    )


def adapter(url: str, **extra) -> EmailAdapter:
    config = EmailDestination.model_validate({"type": "email", "to": ["ops@example.com"], **extra})
    return EmailAdapter(config, parse_smtp_url(url), SENDER)


def test_a_mail_reaches_the_smtp_server(smtp_peer):
    outcome = adapter(smtp_peer.url, cc=["qa@example.com"]).deliver(event(), b"{}")
    assert (outcome.kind, outcome.status) == ("ok", "SMTP 250")
    ((sender, recipients, mail),) = smtp_peer.messages
    assert (sender, recipients, mail["Subject"]) == (
        SENDER,
        ["ops@example.com", "qa@example.com"],
        "[WMS ERROR] CONSTRAINT_VIOLATION - session sess-1",
    )


@pytest.mark.parametrize(
    ("rcpt_reply", "data_reply", "kind", "status"),
    [
        ("550 5.1.1 no such user", None, "permanent", "SMTP 550"),
        ("450 4.2.1 mailbox busy", None, "transient", "SMTP 450"),
        (None, "554 5.7.1 rejected as spam", "permanent", "SMTP 554"),
        (None, "451 4.3.0 try again later", "transient", "SMTP 451"),
    ],
)
def test_smtp_refusals_are_classified(smtp_peer, rcpt_reply, data_reply, kind, status):
    smtp_peer.rcpt_reply, smtp_peer.data_reply = rcpt_reply, data_reply
    outcome = adapter(smtp_peer.url).deliver(event(), b"{}")
    assert (outcome.kind, outcome.status) == (kind, status)
    assert smtp_peer.messages == []


def test_an_unreachable_server_is_transient(smtp_peer):
    smtp_peer.stop()
    outcome = adapter(smtp_peer.url, timeout="2s").deliver(event(), b"{}")
    assert (outcome.kind, outcome.status) == ("transient", "connection error")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # fine on loopback
def test_login_works_and_a_wrong_password_is_permanent_and_never_shown():
    peer = SmtpPeer(credentials=("relay", "p4ss-w0rd")).start()
    try:
        assert adapter(f"smtp://relay:p4ss-w0rd@127.0.0.1:{peer.port}").deliver(event(), b"{}").ok
        outcome = adapter(f"smtp://relay:wr0ng-pw@127.0.0.1:{peer.port}").deliver(event(), b"{}")
        assert (outcome.kind, outcome.status) == ("permanent", "SMTP 535")
        assert "wr0ng-pw" not in outcome.detail
        assert len(peer.messages) == 1
    finally:
        peer.stop()


def test_mail_is_sent_quickly_enough():
    # smtplib names itself with socket.getfqdn(); make sure no slow lookup hides in a delivery.
    peer = SmtpPeer().start()
    try:
        started = time.monotonic()
        assert adapter(peer.url).deliver(event(), b"{}").ok
        assert time.monotonic() - started < 2
    finally:
        peer.stop()
