"""The destination models: where matching events are delivered (Slack, email, HTTP callbacks)."""

import base64
import binascii
from typing import Annotated, Literal
from urllib.parse import urlsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AfterValidator, BeforeValidator, Field

from config.rates import Rate, parse_rate
from config.secret import Secret
from config.types import Duration, Email, HeaderName, Strict
from config.values import is_loopback, redact_url, url_problem

WHSEC_PREFIX = "whsec_"


def _callback_url(url: Secret) -> Secret:
    # A customer's callback URL often carries a token in its path or query: held as a secret.
    if problem := url_problem(url.reveal(), ("http", "https")):
        raise ValueError(f"{problem}, got {redact_url(url.reveal())!r}")
    return url


def _slack_url(url: Secret) -> Secret:
    # The Slack URL is itself the credential: refuse to send it in clear text off this machine.
    value = url.reveal()
    if url_problem(value, ("https", "http")) or (
        urlsplit(value).scheme == "http" and not is_loopback(urlsplit(value).hostname or "")
    ):
        raise ValueError("must be an https:// URL (http:// is allowed for loopback hosts only)")
    return url


def _header_values(headers: dict[str, Secret]) -> dict[str, Secret]:
    # http.client refuses control characters and encodes values as Latin-1: check here, not per send.
    for name, value in headers.items():
        if not all(" " <= c <= "~" or c == "\t" for c in value.reveal()):
            raise ValueError(f"{name}: a header value must be printable ASCII")
    return headers


def _template(source: str) -> str:
    try:
        SandboxedEnvironment().from_string(source)  # compiles too: unknown filters are caught here
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid template: {exc.message} (line {exc.lineno})") from None
    return source


def signing_key(secret: Secret) -> bytes:
    """The HMAC key a signing secret stands for: whsec_<base64> decoded, any other string as UTF-8."""
    value = secret.reveal()
    if value.startswith(WHSEC_PREFIX):
        return base64.b64decode(value[len(WHSEC_PREFIX) :] + "==", validate=False)
    return value.encode("utf-8")


def _signing_secret(secret: Secret) -> Secret:
    value = secret.reveal()
    if value.startswith(WHSEC_PREFIX):
        try:
            key = base64.b64decode(value[len(WHSEC_PREFIX) :] + "==", validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise ValueError("a whsec_ secret must be whsec_ followed by base64 (as Standard Webhooks issues them)")
    return secret


class RetryPolicy(Strict):
    """When a destination's failed deliveries are tried again (the same keys for every type)."""

    # Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts over about 27 h).
    delays: list[Duration] = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    jitter: float = Field(default=0.2, ge=0, le=1)  # +-20%, so recovering receivers are not hit all at once
    max_age: Duration | None = None  # give up on events received longer ago than this
    retry_after_cap: Duration = 3600.0  # a receiver's Retry-After is honoured up to this
    # How often a 429 or 503 with Retry-After may postpone an attempt without using it up.
    max_deferrals: int = Field(default=3, ge=0)

    @property
    def horizon(self) -> float:
        """The longest a delivery can stay in retry under this policy, deferrals included (seconds)."""
        return sum(self.delays) * (1 + self.jitter) + self.max_deferrals * self.retry_after_cap


class PausePolicy(Strict):
    """When a failing destination is paused: its deliveries wait instead of burning retries."""

    after_failures: int = Field(default=10, ge=0)  # consecutive transient failures; 0: never pause
    probe_every: Duration = 60.0  # how often a paused destination is tried with one waiting delivery


# Sends in flight to one destination from one worker process: a slow receiver holds up only its
# own sends, never another destination's (each has its own queue and its own threads).
DEFAULT_CONCURRENCY = 8
Concurrency = Annotated[int, Field(ge=1, le=256)]
RateLimit = Annotated[Rate, BeforeValidator(parse_rate)]


class Sending(Strict):
    """How fast one destination is sent to: the keys every destination type shares."""

    timeout: Duration = 10.0
    concurrency: Concurrency = DEFAULT_CONCURRENCY
    # At most this many sends, evenly spaced, across all worker processes; deliveries wait their
    # turn in the queue, and no attempt is spent on it (Slack allows about 1/s per webhook).
    rate_limit: RateLimit | None = None
    retry: RetryPolicy = RetryPolicy()
    pause: PausePolicy = PausePolicy()


class Folding(Sending):
    """The keys of destinations read by people (Slack, email), which can fold a backlog."""

    # When a rate limit holds deliveries back, up to this many that are due are sent as one
    # digest message, which counts and lists them all; 1: never fold, each waits its turn.
    digest_max: int = Field(default=50, ge=1, le=100)  # one take looks at 100 at most (queues.TAKE_BATCH)


class SlackDestination(Folding):
    """A Slack incoming webhook."""

    type: Literal["slack"]
    webhook_url: Annotated[Secret, AfterValidator(_slack_url)]
    # A sandboxed Jinja2 template for the message text (Slack mrkdwn); see docs/destinations.md.
    template: Annotated[str, AfterValidator(_template)] | None = None


class EmailDestination(Folding):
    """Mail sent through SMTP_URL from EMAIL_FROM."""

    type: Literal["email"]
    to: list[Email] = Field(min_length=1)
    cc: list[Email] = []
    timeout: Duration = 30.0


class HttpDestination(Sending):
    """A customer's HTTP callback URL that receives each event's original body."""

    type: Literal["http"]
    url: Annotated[Secret, AfterValidator(_callback_url)]
    signing_secret: Annotated[Secret, AfterValidator(_signing_secret)]
    # Values often carry an API key: held as secrets.
    headers: Annotated[dict[HeaderName, Secret], AfterValidator(_header_values)] = {}
    # Each session's events in `sequence` order: one waits until the one before it is delivered
    # or dead-lettered; a sequence number never seen is waited for `gap_timeout`, then skipped.
    ordered: bool = False
    gap_timeout: Duration = Field(default=30.0, gt=0, le=86400)


Destination = Annotated[SlackDestination | EmailDestination | HttpDestination, Field(discriminator="type")]
DESTINATION_TYPES = ("slack", "email", "http")
