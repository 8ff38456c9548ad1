"""SMTP_URL: smtp://[user:pass@]host[:port][?starttls=true] or smtps://... (implicit TLS)."""

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from config.secret import Secret

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send mail."""

    host: str
    port: int
    implicit_tls: bool  # smtps://
    starttls: bool
    username: str | None
    password: Secret | None


def parse_smtp_url(url: str) -> SmtpServer:
    """Parse SMTP_URL; raise ValueError saying what is wrong (never quoting the password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("must be an smtp:// or smtps:// URL with a host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port (must be 1-65535)") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"starttls"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} (allowed: 'starttls')")
    starttls_text = query.get("starttls", ["false"])[-1].lower()
    if starttls_text not in _TRUE + _FALSE:
        raise ValueError(f"starttls must be true or false, got {starttls_text!r}")
    implicit_tls = parts.scheme == "smtps"
    starttls = starttls_text in _TRUE
    if implicit_tls and starttls:
        raise ValueError("smtps:// already uses TLS; starttls=true is for smtp://")
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 587 if starttls else 25),
        implicit_tls=implicit_tls,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=Secret(unquote(parts.password)) if parts.password else None,
    )
