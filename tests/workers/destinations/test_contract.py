"""The contract every destination adapter keeps: it never raises, answers each situation with the
Outcome that situation calls for (peer down, an error quoting our secrets, too slow), and no
secret of its configuration appears in that Outcome."""

import pytest
import requests

from config.destinations import EmailDestination, HttpDestination, SlackDestination
from config.smtp import parse_smtp_url
from relay.domain.event import Event
from tests.peers import Reply, SmtpPeer
from workers.destinations.email import EmailAdapter
from workers.destinations.http import HttpAdapter
from workers.destinations.slack import SlackAdapter

SECRET = "c0ntract-s3cret"
EVENT = Event("wms", "sess-1", 1, 1689684577, "ERROR", "API_ERROR", {"errorCode": "E1"})
DERIVED = Event("wms", "sess-1", -1, 1689684577, "ERROR", "SESSION_FAILED", {"reason": "API_ERROR"}, derived="session")
FOLDING = ("slack", "email")  # the adapters with digests: an HTTP callback never folds (test_digests.py)


def slack(http, smtp):
    return SlackAdapter(
        SlackDestination.model_validate(
            {"type": "slack", "webhook_url": f"{http.url}/hook/{SECRET}", "timeout": "300ms"}
        ),
        requests.Session(),
    )


def http_callback(http, smtp):
    return HttpAdapter(
        HttpDestination.model_validate(
            {
                "type": "http",
                "url": f"{http.url}/hook/{SECRET}?t={SECRET}",
                "signing_secret": SECRET,
                "headers": {"Authorization": f"Bearer {SECRET}"},
                "timeout": "300ms",
            }
        ),
        requests.Session(),
    )


def email(http, smtp):
    config = EmailDestination.model_validate({"type": "email", "to": ["ops@example.com"], "timeout": "300ms"})
    return EmailAdapter(config, parse_smtp_url(f"smtp://relay:{SECRET}@127.0.0.1:{smtp.port}"), "relay@example.com")


ADAPTERS = {"slack": slack, "http": http_callback, "email": email}


def _peers_down(http, smtp):
    http.stop()
    smtp.stop()


def _echo_secrets(http, smtp):
    # A receiver that quotes our URL and credentials back in a long error page, or SMTP reply.
    for _ in range(3):
        http.script(f"/hook/{SECRET}", Reply(500, (b"x" * 190 + f" {SECRET} ".encode()) * 20))
        http.script(f"/hook/{SECRET}?t={SECRET}", Reply(500, (b"x" * 190 + f" {SECRET} ".encode()) * 20))
    smtp.data_reply = f"451 4.3.0 relay:{SECRET} may not send now; try again later"


def _slow(http, smtp):
    # Each receiver answers well after the adapters' 300 ms timeout.
    http.script(f"/hook/{SECRET}", Reply(delay=1.0))
    http.script(f"/hook/{SECRET}?t={SECRET}", Reply(delay=1.0))
    smtp.delay = 1.0


SITUATIONS = {"down": _peers_down, "echoing": _echo_secrets, "slow": _slow}

# (adapter, situation) -> the Outcome's (kind, status), as each adapter really answers its peer.
EXPECTED = {
    ("slack", "down"): ("transient", "connection error"),
    ("slack", "echoing"): ("transient", "HTTP 500"),
    ("slack", "slow"): ("transient", "timeout"),
    ("http", "down"): ("transient", "connection error"),
    ("http", "echoing"): ("transient", "HTTP 500"),
    ("http", "slow"): ("transient", "timeout"),
    ("email", "down"): ("transient", "connection error"),
    ("email", "echoing"): ("transient", "SMTP 451"),
    # smtplib reports a read timeout as the connection dropping, not as a timeout of its own.
    ("email", "slow"): ("transient", "connection error"),
}


@pytest.fixture
def smtp_with_auth():
    """A real SMTP server that requires the adapter's credentials, so the password is in play."""
    peer = SmtpPeer(credentials=("relay", SECRET)).start()
    yield peer
    peer.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # fine on loopback
@pytest.mark.parametrize(
    ("adapter", "situation", "kind", "status"), [(*key, *value) for key, value in EXPECTED.items()]
)
def test_an_adapter_answers_each_situation_with_its_outcome_that_names_no_secret(
    http_peer, smtp_with_auth, adapter, situation, kind, status
):
    deliverer = ADAPTERS[adapter](http_peer, smtp_with_auth)
    SITUATIONS[situation](http_peer, smtp_with_auth)
    outcome = deliverer.deliver(EVENT, b"{}")
    assert (outcome.kind, outcome.status) == (kind, status), outcome.detail
    assert SECRET not in outcome.detail and SECRET not in outcome.status


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # fine on loopback
@pytest.mark.parametrize(
    ("adapter", "situation", "kind", "status"),
    [(*key, *value) for key, value in EXPECTED.items() if key[0] in FOLDING],
)
def test_a_digest_keeps_the_same_contract(http_peer, smtp_with_auth, adapter, situation, kind, status):
    deliverer = ADAPTERS[adapter](http_peer, smtp_with_auth)
    SITUATIONS[situation](http_peer, smtp_with_auth)
    outcome = deliverer.deliver_digest([EVENT, DERIVED])
    assert (outcome.kind, outcome.status) == (kind, status), outcome.detail
    assert SECRET not in outcome.detail and SECRET not in outcome.status
