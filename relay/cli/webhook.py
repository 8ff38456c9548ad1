"""Where `relay send-sample` and `relay simulate` post events: a source's webhook on a running
relay, and the MAC secret that signs each body as WMS signs it."""

from dataclasses import dataclass

import click
import requests

from config.model import RelayConfig
from config.secret import Secret
from config.settings import Settings
from relay.domain import signature

TIMEOUT = 10  # seconds: the relay answers in milliseconds, or reads a request for at most 10 s


def known_source(config: RelayConfig, source: str) -> str:
    """`source` when the config defines it, else a usage error (--source) naming the defined ones."""
    if source not in config.sources:
        raise click.BadParameter(
            f"no source named {source!r} (defined: {', '.join(map(repr, config.sources))})", param_hint="--source"
        )
    return source


@dataclass(frozen=True)
class Webhook:
    """A running relay's webhook for one source, and the secret WMS would sign its events with."""

    url: str
    secret: Secret

    @classmethod
    def of(cls, settings: Settings, config: RelayConfig, source: str, url: str | None = None) -> "Webhook":
        """The source's webhook at `url`, or on the local relay's PORT; its first MAC secret signs."""
        known_source(config, source)
        return cls(url or f"http://127.0.0.1:{settings.port}/hooks/{source}", config.sources[source].mac_secrets[0])

    def post(self, body: bytes, session: requests.Session | None = None) -> requests.Response:
        """POST `body` with the X-WMS-Content-MAC WMS would send; requests' errors are the caller's."""
        headers = {"Content-Type": "application/json", signature.HEADER: signature.compute(self.secret.reveal(), body)}
        send = session.post if session is not None else requests.post
        return send(self.url, data=body, headers=headers, timeout=TIMEOUT)

    def unreachable(self, exc: requests.RequestException) -> str:
        """The one line to print when a post got no answer."""
        return f"error: cannot reach {self.url}: {exc.__class__.__name__} (is the relay running?)"
