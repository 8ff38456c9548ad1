"""Status classes, Retry-After and secret scrubbing shared by every destination."""

import email.utils

import pytest

from config.secret import REDACTED
from relay.domain.outcome import Outcome
from workers.destinations.base import MAX_RETRY_AFTER, classify_http, retry_after_seconds, scrub


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "ok"),
        (201, "ok"),
        (202, "ok"),
        (204, "ok"),
        (301, "permanent"),
        (302, "permanent"),
        (307, "permanent"),
        (400, "permanent"),
        (401, "permanent"),
        (403, "permanent"),
        (404, "permanent"),
        (422, "permanent"),
        (408, "transient"),
        (429, "transient"),
        (410, "gone"),
        (500, "transient"),
        (502, "transient"),
        (503, "transient"),
        (504, "transient"),
    ],
)
def test_http_status_classes(status, kind):
    assert classify_http(status, None, "").kind == kind


def test_redirects_say_they_are_not_followed():
    assert classify_http(302, None, "") == Outcome("permanent", "HTTP 302", "redirects are not followed")


def test_retry_after_is_kept_on_transient_answers():
    assert classify_http(503, "7", "busy") == Outcome("transient", "HTTP 503", "busy", 7.0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("30", 30.0),
        (" 12 ", 12.0),
        ("soon", None),
        ("-5", None),
        ("99999", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_seconds(header, seconds):
    assert retry_after_seconds(header) == seconds


def test_retry_after_as_an_http_date():
    now = 1_700_000_000.0
    assert retry_after_seconds(email.utils.formatdate(now + 120, usegmt=True), now=now) == 120.0
    assert retry_after_seconds(email.utils.formatdate(now - 120, usegmt=True), now=now) == 0.0


def test_scrub_removes_secrets_and_the_path_and_query_of_secret_urls():
    url = "https://hooks.slack.com/services/T000/B000/XXXX?token=abc"
    text = f"HTTPSConnectionPool(host='hooks.slack.com', port=443): Max retries exceeded with url: /services/T000/B000/XXXX?token=abc (Caused by {url})"
    cleaned = scrub(text, url, "pw")
    assert "T000" not in cleaned and "abc" not in cleaned and "hooks.slack.com" in cleaned
    assert scrub("password pw used", "pw") == "password <redacted> used"
    assert scrub("x" * 1000) == "x" * 500


@pytest.mark.parametrize(
    ("secret", "echoed", "fragment"),
    [
        # Each part of a Slack webhook's path is part of the credential; receivers quote them alone.
        ("https://hooks.slack.com/services/T0TEAM/B0BOT/s3cr3tT0ken", "no team T0TEAM", "T0TEAM"),
        ("https://hooks.slack.com/services/T0TEAM/B0BOT/s3cr3tT0ken", "invalid_token: s3cr3tT0ken", "s3cr3tT0ken"),
        ("https://hooks.slack.com/services/T0TEAM/B0BOT/s3cr3tT0ken", "B0BOT/s3cr3t", "B0BOT"),
        # A callback's query values, each on its own, and percent-decoded as a receiver shows them.
        ("https://crm.example.com/in?token=qu3ry-t0k&tenant=acme42", "bad token qu3ry-t0k", "qu3ry-t0k"),
        ("https://crm.example.com/in?token=qu3ry-t0k&tenant=acme42", "tenant acme42 unknown", "acme42"),
        ("https://crm.example.com/in?sig=a%2Fb%2Bc%3D", "signature a/b+c= is wrong", "a/b+c="),
        # Userinfo: requests sends it as Basic auth, and receivers echo the user or the password.
        ("https://us3r:p4ssw0rd@crm.example.com/in", "user us3r: wrong password p4ssw0rd", "p4ssw0rd"),
        ("https://us3r:p4ssw0rd@crm.example.com/in", "user us3r: wrong password p4ssw0rd", "us3r"),
        # A header value's token without its scheme word.
        ("Bearer crm-api-k3y", "key crm-api-k3y revoked", "crm-api-k3y"),
    ],
)
def test_scrub_removes_every_fragment_of_a_secret(secret, echoed, fragment):
    cleaned = scrub(echoed, secret)
    assert fragment not in cleaned and REDACTED in cleaned


def test_scrub_keeps_short_path_parts_and_the_host_readable():
    # A part shorter than four characters is no credential; redacting it would garble every text.
    cleaned = scrub("HTTP 404 from crm.example.com: no route for /in (internal)", "https://crm.example.com/in?t=x")
    assert cleaned == "HTTP 404 from crm.example.com: no route for /in (internal)"
