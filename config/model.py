"""The shape of config/relay.yaml as pydantic models; see config/relay.example.yaml for every key."""

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from config.durations import parse_duration
from config.secret import Secret
from config.values import email_problem, is_loopback, redact_url, url_problem
from config.wms_events import SEVERITIES

MAX_BODY_BYTES_LIMIT = 16 * 1024 * 1024

# Source names end up in URLs (/hooks/<source>) and Redis keys: keep them plain.
SOURCE_NAME_RULE = (r"^[a-z0-9][a-z0-9_-]{0,63}$", "lowercase letters, digits, '-' and '_' (at most 64 characters)")
DESTINATION_NAME_RULE = (r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", "letters, digits, '-', '_' and '.' (at most 64 characters)")
SourceName = Annotated[str, StringConstraints(pattern=SOURCE_NAME_RULE[0])]
DestinationName = Annotated[str, StringConstraints(pattern=DESTINATION_NAME_RULE[0])]
Duration = Annotated[float, BeforeValidator(parse_duration)]
HEADER_NAME_RULE = (r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", "an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)")
HeaderName = Annotated[str, StringConstraints(pattern=HEADER_NAME_RULE[0])]
Severity = Literal["INFO", "WARN", "ERROR"]
assert set(Severity.__args__) == set(SEVERITIES)  # type: ignore[attr-defined]


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


def _email(value: str) -> str:
    if problem := email_problem(value):
        raise ValueError(problem)
    return value


Email = Annotated[str, AfterValidator(_email)]


class _Strict(BaseModel):
    # Unknown keys are errors: a typo must not silently disable a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """A WMS Config ID's webhook, served at POST /hooks/<name>."""

    # Any one may match, so a secret can be rotated without dropping events.
    mac_secrets: list[Secret] = Field(min_length=1)


class SlackDestination(_Strict):
    """A Slack incoming webhook."""

    type: Literal["slack"]
    webhook_url: Annotated[Secret, AfterValidator(_slack_url)]


class EmailDestination(_Strict):
    """Mail sent through SMTP_URL from EMAIL_FROM."""

    type: Literal["email"]
    to: list[Email] = Field(min_length=1)
    cc: list[Email] = []


class HttpDestination(_Strict):
    """A customer's HTTP callback URL that receives each event's original body."""

    type: Literal["http"]
    url: Annotated[Secret, AfterValidator(_callback_url)]
    signing_secret: Secret
    headers: dict[HeaderName, Secret] = {}  # values often carry an API key: held as secrets
    timeout: Duration = 10.0


Destination = Annotated[SlackDestination | EmailDestination | HttpDestination, Field(discriminator="type")]
DESTINATION_TYPES = ("slack", "email", "http")


class Match(_Strict):
    """Conditions on an event; all given ones must hold, and {} matches everything."""

    event: list[Annotated[str, StringConstraints(min_length=1)]] = []
    severity: list[Severity] = []
    source: list[str] = []


class Rule(_Strict):
    """Sends the events that match to the named destinations."""

    name: Annotated[str, StringConstraints(min_length=1)]
    match: Match = Match()
    to: list[str] = Field(min_length=1)


class Ingest(_Strict):
    """Limits applied to every POST /hooks/<source>."""

    max_body_bytes: int = Field(default=256 * 1024, ge=1, le=MAX_BODY_BYTES_LIMIT)
    dedup_window: Duration = 7 * 86400.0
    # Off by default: WMS's clock and retry behaviour are not ours to assume.
    freshness_window: Duration | None = None


class RelayConfig(_Strict):
    """The whole config file."""

    sources: dict[SourceName, Source] = Field(min_length=1)
    destinations: dict[DestinationName, Destination] = {}
    rules: list[Rule] = []
    ingest: Ingest = Ingest()
