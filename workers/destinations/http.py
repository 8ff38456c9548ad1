"""Customers' HTTP callbacks: the original body, unchanged, signed two ways.

Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature) for receivers that
use a Standard Webhooks library, and X-WMS-Content-MAC computed exactly as WMS computes it, so a
receiver that already verifies WMS webhooks works unchanged when pointed at the relay.
"""

import base64
import hashlib
import hmac
import time

import requests

from config.destinations import HttpDestination, signing_key
from relay.domain import signature
from relay.domain.event import Event
from relay.domain.outcome import Outcome
from workers.destinations.base import post

USER_AGENT = "wms-webhook-relay/0.1"


def standard_webhooks_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, over the raw body bytes."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def callback_headers(config: HttpDestination, event: Event, body: bytes, timestamp: int) -> dict[str, str]:
    """Every header of the callback request; ours win over configured extras of the same name."""
    headers = {name: value.reveal() for name, value in config.headers.items()}
    secret = config.signing_secret
    headers.update(
        {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_webhooks_signature(signing_key(secret), event.id, timestamp, body),
            signature.HEADER: signature.compute(secret.reveal(), body),
            # The same event id on every retry, so a receiver can drop repeats.
            "Idempotency-Key": event.id,
        }
    )
    return headers


class HttpAdapter:
    """POSTs each event's original body to one callback URL."""

    def __init__(self, config: HttpDestination, session: requests.Session):
        self._config = config
        self._session = session

    def deliver(self, event: Event, body: bytes) -> Outcome:
        """POST `body` with signature headers; classify the answer."""
        url = self._config.url.reveal()
        secrets = [url, self._config.signing_secret.reveal(), *(v.reveal() for v in self._config.headers.values())]
        headers = callback_headers(self._config, event, body, int(time.time()))
        return post(self._session, url, secrets, self._config.timeout, data=body, headers=headers)

    def notify(self, text: str) -> Outcome:
        """Callbacks carry events only: operations announcements go to Slack or email."""
        return Outcome("permanent", "not supported", "an HTTP callback cannot take announcements")

    def deliver_digest(self, events: list[Event]) -> Outcome:
        """Never folds: raises NotImplementedError.

        A callback's receiver verifies each request as one event's own body, signed; a digest would
        be a body WMS never sent. A raise, not an Outcome: a lane that folded a callback's
        deliveries is a bug to see at once, not a reason to dead-letter the events.
        """
        raise NotImplementedError("an HTTP callback takes each event's own body: only slack and email fold digests")
