"""HTTP callbacks: the body unchanged, Standard Webhooks and WMS signatures, status classes."""

import time

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from config.destinations import HttpDestination, signing_key
from config.secret import Secret
from relay.domain import signature
from relay.domain.event import parse_event
from relay.domain.samples import sample_event, to_body
from tests.peers import Reply
from workers.destinations.http import HttpAdapter, callback_headers, standard_webhooks_signature

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_standard_webhooks_known_answer():
    # The example of the Standard Webhooks specification.
    key = signing_key(Secret(SPEC_SECRET))
    assert standard_webhooks_signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_raw_secret_is_used_as_its_utf8_bytes():
    assert signing_key(Secret("s3cr\u00e9t")) == "s3cr\u00e9t".encode()
    assert signing_key(Secret(SPEC_SECRET)) == Webhook(SPEC_SECRET)._whsecret


def destination(url: str, secret: str = SPEC_SECRET, **extra) -> HttpDestination:
    return HttpDestination.model_validate({"type": "http", "url": url, "signing_secret": secret, **extra})


def event_and_body(**payload):
    body = to_body({**sample_event("MEASUREMENT_CREATED", "sess-1", 2, timestamp=int(time.time())), **payload})
    return parse_event("wms", body), body


@pytest.mark.parametrize("secret", [SPEC_SECRET, "a-raw-secret"])
def test_the_callback_carries_the_body_unchanged_and_verifiable_signatures(http_peer, secret):
    # Spacing and escapes that a re-serialisation would change, and non-ASCII content.
    body = (
        '{ "timestamp":%d,"sessionId":"sess-1","sequence":2,"severity":"INFO","event":"MEASUREMENT_CREATED",'
        '"note":"\\u00e9 Łódź" }' % int(time.time())
    ).encode()
    event = parse_event("wms", body)
    outcome = HttpAdapter(
        destination(http_peer.url + "/in", secret, headers={"X-Tenant": "acme"}), requests.Session()
    ).deliver(event, body)
    assert outcome.ok
    (request,) = http_peer.requests
    assert request.body == body
    headers = {k.lower(): v for k, v in request.headers.items()}
    verifier = Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())
    verifier.verify(request.body, headers)  # raises if anything is off
    assert signature.verify(headers["x-wms-content-mac"], body, [Secret(secret)]) == 0
    assert headers["webhook-id"] == headers["idempotency-key"] == "wms:sess-1:2"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert (headers["content-type"], headers["x-tenant"], headers["user-agent"]) == (
        "application/json",
        "acme",
        "wms-webhook-relay/0.1",
    )


def test_configured_headers_cannot_override_the_signature_headers():
    event, body = event_and_body()
    config = destination("https://crm.example.com/in", headers={"webhook-signature": "forged", "X-Key": "k"})
    headers = callback_headers(config, event, body, 1700000000)
    assert headers["webhook-signature"].startswith("v1,") and headers["X-Key"] == "k"


@pytest.mark.parametrize(
    ("reply", "kind", "status", "retry_after"),
    [
        (Reply(200, b""), "ok", "HTTP 200", None),
        (Reply(204, b""), "ok", "HTTP 204", None),
        (Reply(302, b"", {"Location": "/elsewhere"}), "permanent", "HTTP 302", None),
        (Reply(400, b"bad"), "permanent", "HTTP 400", None),
        (Reply(408, b""), "transient", "HTTP 408", None),
        (Reply(410, b"gone"), "gone", "HTTP 410", None),
        (Reply(429, b"", {"Retry-After": "3"}), "transient", "HTTP 429", 3.0),
        (Reply(503, b"", {"Retry-After": "1"}), "transient", "HTTP 503", 1.0),
    ],
)
def test_answers_are_classified(http_peer, reply, kind, status, retry_after):
    http_peer.script("/in", reply)
    event, body = event_and_body()
    outcome = HttpAdapter(destination(http_peer.url + "/in"), requests.Session()).deliver(event, body)
    assert (outcome.kind, outcome.status, outcome.retry_after) == (kind, status, retry_after)
    assert [r.path for r in http_peer.requests] == ["/in"]  # a redirect is not followed


def test_the_timeout_applies_and_nothing_secret_is_reported(http_peer):
    http_peer.script("/in?token=t0k3n", Reply(delay=1.0))
    event, body = event_and_body()
    config = destination(http_peer.url + "/in?token=t0k3n", timeout="200ms", headers={"Authorization": "Bearer k3y"})
    started = time.monotonic()
    outcome = HttpAdapter(config, requests.Session()).deliver(event, body)
    assert time.monotonic() - started < 0.9
    assert (outcome.kind, outcome.status) == ("transient", "timeout")
    assert "t0k3n" not in outcome.detail and "k3y" not in outcome.detail


def test_a_refused_connection_is_transient(http_peer):
    http_peer.stop()
    event, body = event_and_body()
    outcome = HttpAdapter(destination(http_peer.url + "/in"), requests.Session()).deliver(event, body)
    assert (outcome.kind, outcome.status) == ("transient", "connection error")


def test_a_hostile_body_is_forwarded_byte_for_byte(http_peer):
    # What the other adapters must render readable, the callback passes on exactly as WMS wrote it.
    body = (
        '{"timestamp":%d,"sessionId":"sess-1","sequence":2,"severity":"INFO","event":"<!channel>",'
        '"payload":{"x\\ud800y":"\\u0000\\u202e\\r\\n<http://evil.example|click>","n":%s1%s}}'
        % (int(time.time()), "[" * 500, "]" * 500)
    ).encode()
    event = parse_event("wms", body)
    assert event.payload["x\ud800y"].startswith("\x00\u202e")
    outcome = HttpAdapter(destination(http_peer.url + "/in"), requests.Session()).deliver(event, body)
    assert outcome.ok
    (request,) = http_peer.requests
    assert request.body == body
    assert Webhook(SPEC_SECRET).verify(request.body, {k.lower(): v for k, v in request.headers.items()})
