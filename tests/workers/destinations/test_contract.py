"""The contract every destination adapter keeps: it never raises, always answers with an Outcome,
and no secret of its configuration appears in that Outcome."""

import pytest
import requests

from config.destinations import EmailDestination, HttpDestination, SlackDestination
from config.smtp import parse_smtp_url
from relay.domain.event import Event
from relay.domain.outcome import Outcome
from tests.peers import Reply
from workers.destinations.email import EmailAdapter
from workers.destinations.http import HttpAdapter
from workers.destinations.slack import SlackAdapter

SECRET = "c0ntract-s3cret"
EVENT = Event("wms", "sess-1", 1, 1689684577, "ERROR", "API_ERROR", {"errorCode": "E1"})


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
    config = EmailDestination.model_validate({"type": "email", "to": ["ops@example.com"], "timeout": "2s"})
    return EmailAdapter(config, parse_smtp_url(f"smtp://relay:{SECRET}@127.0.0.1:{smtp.port}"), "relay@example.com")


ADAPTERS = {"slack": slack, "http": http_callback, "email": email}


def _peers_down(http, smtp):
    http.stop()
    smtp.stop()


def _echo_secrets(http, smtp):
    # A receiver that quotes our URL and credentials back in a long error page.
    for _ in range(3):
        http.script(f"/hook/{SECRET}", Reply(500, (b"x" * 190 + f" {SECRET} ".encode()) * 20))
        http.script(f"/hook/{SECRET}?t={SECRET}", Reply(500, (b"x" * 190 + f" {SECRET} ".encode()) * 20))


def _slow(http, smtp):
    http.script(f"/hook/{SECRET}", Reply(delay=1.0))
    http.script(f"/hook/{SECRET}?t={SECRET}", Reply(delay=1.0))


@pytest.mark.parametrize("situation", [_peers_down, _echo_secrets, _slow], ids=["down", "echoing", "slow"])
@pytest.mark.parametrize("make", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_an_adapter_answers_with_an_outcome_that_names_no_secret(http_peer, smtp_peer, make, situation):
    adapter = make(http_peer, smtp_peer)
    situation(http_peer, smtp_peer)
    outcome = adapter.deliver(EVENT, b"{}")
    assert isinstance(outcome, Outcome)
    assert outcome.kind in ("ok", "transient", "permanent", "gone")
    assert SECRET not in outcome.detail and SECRET not in outcome.status
