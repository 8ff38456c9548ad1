"""SMTP_URL parsing: scheme, TLS mode, default ports, credentials, and exact complaints."""

import pytest

from config.smtp import parse_smtp_url


@pytest.mark.parametrize(
    ("url", "host", "port", "implicit_tls", "starttls", "username", "password"),
    [
        ("smtp://mail.example.com", "mail.example.com", 25, False, False, None, None),
        ("smtp://mail.example.com?starttls=true", "mail.example.com", 587, False, True, None, None),
        ("smtp://u:p%40ss@mail.example.com:2525?starttls=1", "mail.example.com", 2525, False, True, "u", "p@ss"),
        ("smtps://apikey:s3cret@smtp.example.com", "smtp.example.com", 465, True, False, "apikey", "s3cret"),
    ],
)
def test_valid_smtp_urls(url, host, port, implicit_tls, starttls, username, password):
    server = parse_smtp_url(url)
    assert (server.host, server.port, server.implicit_tls, server.starttls, server.username) == (
        host,
        port,
        implicit_tls,
        starttls,
        username,
    )
    assert (server.password.reveal() if server.password else None) == password


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.example.com", "must be an smtp:// or smtps:// URL with a host"),
        ("smtp://", "must be an smtp:// or smtps:// URL with a host"),
        ("smtp://mail.example.com:99999", "has an invalid port (must be 1-65535)"),
        ("smtp://mail.example.com?tls=true", "unknown option 'tls' (allowed: 'starttls')"),
        ("smtp://mail.example.com?starttls=maybe", "starttls must be true or false, got 'maybe'"),
        ("smtps://mail.example.com?starttls=true", "smtps:// already uses TLS; starttls=true is for smtp://"),
    ],
)
def test_invalid_smtp_urls(url, message):
    with pytest.raises(ValueError) as exc:
        parse_smtp_url(url)
    assert str(exc.value) == message


def test_the_password_is_never_in_a_complaint():
    with pytest.raises(ValueError) as exc:
        parse_smtp_url("smtp://u:hunter2@mail.example.com?starttls=maybe")
    assert "hunter2" not in str(exc.value)
