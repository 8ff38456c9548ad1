"""Email through SMTP: one mail per event, text and HTML, threaded by session in mail clients."""

import base64
import hashlib
import html
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from config.destinations import EmailDestination
from config.smtp import SmtpServer
from relay.domain.event import Event
from relay.domain.outcome import Kind, Outcome
from workers.destinations.base import scrub
from workers.destinations.summary import one_line, readable, summarize

LABEL_WIDTH_MAX = 24


def _message_id(token: str, domain: str) -> str:
    return f"<{hashlib.sha256(token.encode()).hexdigest()[:32]}@{domain}>"


def email_message(event: Event, sender: str, to: list[str], cc: list[str], destination: str = "") -> EmailMessage:
    """The mail for `event`; every mail of one session refers to the same thread root.

    The Message-ID is the same for a resend of one event to one destination, and differs between
    destinations, so two destinations' copies are never mistaken for one mail. Event data is
    HTML-escaped in the HTML part, and on one line in the subject, where a line break would start
    a header of its own.
    """
    s = summarize(event)
    domain = sender.rsplit("@", 1)[1]
    message = EmailMessage()
    message["Subject"] = one_line(f"[WMS {s.severity}] {s.title} - session {dict(s.facts)['Session']}")
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Date"] = formatdate(event.timestamp, usegmt=True)
    message["Message-ID"] = _message_id(f"event:{destination}:{event.id}", domain)
    # A root that is never sent: clients that thread by References group the session's mails under it.
    root = _message_id(f"session:{event.source}:{event.session_id}", domain)
    message["In-Reply-To"] = root
    message["References"] = root
    rows = s.facts + s.payload
    # Labels line up, but a long payload key only overflows its own row: padding every row to
    # its length would multiply the mail's size by the number of rows.
    width = min(max(len(label) for label, _ in rows), LABEL_WIDTH_MAX)
    text = [f"{s.title}: {s.description}", ""] + [f"{label.ljust(width)}  {value}" for label, value in rows]
    message.set_content("\n".join([*text, "", f"event id: {s.event_id}"]) + "\n")
    cells = "".join(
        f"<tr><th align=left>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>" for label, value in rows
    )
    message.add_alternative(
        f"<html><body><h2>{html.escape(s.title)}</h2><p>{html.escape(s.description)}</p>"
        f"<table cellpadding=4>{cells}</table><p><small>event id: {html.escape(s.event_id)}</small></p></body></html>",
        subtype="html",
    )
    return message


class EmailAdapter:
    """Sends each event as one mail to the destination's recipients."""

    def __init__(self, config: EmailDestination, server: SmtpServer, sender: str, name: str = ""):
        self._config = config
        self._name = name
        self._server = server
        self._sender = sender

    def notify(self, text: str) -> Outcome:
        """Mail a notice from the relay itself (a destination paused or resumed)."""
        message = EmailMessage()
        # An operator's pause reason is free text: it too must stay on its line and be encodable.
        message["Subject"] = one_line(f"[WMS relay] {text.split('.', maxsplit=1)[0]}")
        message["From"], message["To"] = self._sender, ", ".join(self._config.to)
        message.set_content(readable(text) + "\n")
        return self._send(message)

    def deliver(self, event: Event, body: bytes) -> Outcome:
        """Send the mail; SMTP 5xx is permanent, 4xx and connection trouble are transient."""
        return self._send(email_message(event, self._sender, self._config.to, self._config.cc, self._name))

    def _send(self, message: EmailMessage) -> Outcome:
        secrets = self._secrets()
        try:
            with self._connect() as smtp:
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            kind: Kind = "transient" if any(400 <= c < 500 for c in codes) else "permanent"
            return Outcome(kind, f"SMTP {codes[0]}", scrub(f"all recipients refused: {exc.recipients}", *secrets))
        except smtplib.SMTPResponseException as exc:
            kind = "permanent" if exc.smtp_code >= 500 else "transient"
            reply = (
                exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            )
            return Outcome(kind, f"SMTP {exc.smtp_code}", scrub(reply, *secrets))
        except smtplib.SMTPNotSupportedError as exc:
            return Outcome("permanent", "SMTP not supported", scrub(str(exc), *secrets))
        except (smtplib.SMTPException, OSError) as exc:
            # Connection refused or dropped, timeouts, TLS failures: worth another try.
            return Outcome("transient", "connection error", scrub(f"{exc.__class__.__name__}: {exc}", *secrets))
        if refused:
            return Outcome("ok", "SMTP 250", scrub(f"some recipients refused: {refused}", *secrets))
        return Outcome("ok", "SMTP 250")

    def _secrets(self) -> list[str]:
        """The password, and the base64 forms in which smtplib's AUTH PLAIN and LOGIN send it: a
        server's refusal may quote what it was sent."""
        if not self._server.password:
            return []
        password = self._server.password.reveal()
        plain = f"\0{self._server.username or ''}\0{password}"
        return [password, *(base64.b64encode(s.encode()).decode("ascii") for s in (plain, password))]

    def _connect(self) -> smtplib.SMTP:
        server, timeout = self._server, self._config.timeout
        smtp: smtplib.SMTP
        if server.implicit_tls:
            smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
        try:
            if server.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if server.username:
                smtp.login(server.username, server.password.reveal() if server.password else "")
        except BaseException:
            smtp.close()
            raise
        return smtp
