"""Checks for the kinds of values that config and environment share: URLs and email addresses."""

import ipaddress
import re
from urllib.parse import urlsplit

_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+")


def redact_url(url: str) -> str:
    """Return only scheme://host[:port] of a URL: userinfo, path and query may all hold credentials."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    if not parts.scheme or not parts.hostname:
        return "<redacted>"
    rest = "/..." if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{parts.hostname}{port}{rest}"


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1 literals."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Say what is wrong with a URL that must use one of `schemes` and name a host, or None."""
    allowed = " or ".join(f"{s}://" for s in schemes)
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"must be an {allowed} URL"
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "has an invalid port (must be 1-65535)"
    if parts.scheme not in schemes:
        return f"must be an {allowed} URL"
    # unix:// URLs name a socket path instead of a host.
    if not (parts.path if parts.scheme == "unix" else parts.hostname):
        return f"must be an {allowed} URL with a host"
    return None


def email_problem(value: str) -> str | None:
    """Say what is wrong with an email address (a bare one like ops@example.com), or None."""
    if _EMAIL.fullmatch(value):
        return None
    return f"must be an email address like ops@example.com, got {value!r}"
