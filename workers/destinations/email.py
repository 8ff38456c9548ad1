"""Email through SMTP: one mail per event, text and HTML, threaded by session in mail clients.

What each mail says is email_layout.py's; here are its headers, threading and the sending.
"""

import base64
import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from config.destinations import EmailDestination
from config.smtp import SmtpServer
from relay.domain.event import Event
from relay.domain.outcome import Kind, Outcome
from workers.destinations.base import scrub
from workers.destinations.email_layout import Mail, digest_mail, event_mail, group_mail, session_mail
from workers.destinations.session_view import is_group, is_session
from workers.destinations.summary import one_line, readable


def _message_id(token: str, sender: str) -> str:
    domain = sender.rsplit("@", 1)[1]
    return f"<{hashlib.sha256(token.encode()).hexdigest()[:32]}@{domain}>"


def email_message(event: Event, sender: str, to: list[str], cc: list[str], destination: str = "") -> EmailMessage:
    """The mail for `event`; every mail of one session refers to the same thread root.

    The Message-ID is the same for a resend of one event to one destination, and differs between
    destinations, so two destinations' copies are never mistaken for one mail. Event data is
    HTML-escaped in the HTML part, and on one line in the subject, where a line break would start
    a header of its own. A session's outcome and a grouped message thread with the session's
    other mails.
    """
    if is_session(event):
        mail = session_mail(event)
    elif is_group(event):
        mail = group_mail(event)
    else:
        mail = event_mail(event)
    root = _message_id(f"session:{event.source}:{event.session_id}", sender)
    message_id = _message_id(f"event:{destination}:{event.id}", sender)
    return _message(mail, sender, to, cc, event.timestamp, message_id, root)


def digest_email(events: list[Event], sender: str, to: list[str], cc: list[str], destination: str = "") -> EmailMessage:
    """One mail for `events`, deliveries that waited for a rate-limited destination.

    Its Message-ID is the same for a resend of the same digest. It threads with the session's
    mails when every event is of one session; a digest of several sessions threads with the
    destination's other digests instead, since referring to every session's root would make
    mail clients join those sessions' threads into one.
    """
    sessions = {(e.source, e.session_id) for e in events}
    if len(sessions) == 1:
        ((source, session_id),) = sessions
        root = _message_id(f"session:{source}:{session_id}", sender)
    else:
        root = _message_id(f"digests:{destination}", sender)
    ids = "\n".join(sorted(e.id for e in events))
    message_id = _message_id(f"digest:{destination}:{ids}", sender)
    return _message(digest_mail(events), sender, to, cc, max(e.timestamp for e in events), message_id, root)


def _message(
    mail: Mail, sender: str, to: list[str], cc: list[str], timestamp: int, message_id: str, root: str
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = mail.subject
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Date"] = formatdate(timestamp, usegmt=True)
    message["Message-ID"] = message_id
    # A root that is never sent: clients that thread by References group the session's mails under it.
    message["In-Reply-To"] = root
    message["References"] = root
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
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

    def deliver_digest(self, events: list[Event]) -> Outcome:
        """Send one mail for `events`, deliveries that waited for this rate-limited destination."""
        return self._send(digest_email(events, self._sender, self._config.to, self._config.cc, self._name))

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
