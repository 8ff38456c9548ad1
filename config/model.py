"""The shape of config/relay.yaml as pydantic models; see config/relay.example.yaml for every key."""

from pydantic import Field, model_validator

from config.destinations import Destination, RetryPolicy
from config.rules import Rule
from config.secret import Secret
from config.types import DestinationName, Duration, SourceName, Strict

MAX_BODY_BYTES_LIMIT = 16 * 1024 * 1024


class Source(Strict):
    """A WMS Config ID's webhook, served at POST /hooks/<name>."""

    # Any one may match, so a secret can be rotated without dropping events.
    mac_secrets: list[Secret] = Field(min_length=1)


class Ingest(Strict):
    """Limits applied to every POST /hooks/<source>."""

    max_body_bytes: int = Field(default=256 * 1024, ge=1, le=MAX_BODY_BYTES_LIMIT)
    dedup_window: Duration = 7 * 86400.0
    # Off by default: WMS's clock and retry behaviour are not ours to assume.
    freshness_window: Duration | None = None


class DeadLetters(Strict):
    """Deliveries that will not be retried any more."""

    # Kept this long, then removed with a warning in the worker's log (never silently).
    retention: Duration = Field(default=14 * 86400.0, ge=86400)


class Operations(Strict):
    """How the relay tells operators about itself."""

    # A slack or email destination that hears when a destination is paused or resumed.
    announce_to: str | None = None
    # An attempt still unfinished this long after its destination's timeout is presumed lost with
    # its worker, and any worker sends it again (as is an inbox entry read but left pending).
    lease_grace: Duration = 60.0
    # How often old dead letters are expired, and each inbox reader looks for entries left by a
    # stopped worker.
    sweep_every: Duration = 15.0


class Sessions(Strict):
    """Measurement sessions, followed from their events (relay/domain/session.py)."""

    # A final outcome is emitted this long after the session's last event, so that late or
    # reordered events still count.
    settle: Duration = Field(default=30.0, ge=0, le=3600)
    # No event for this long: the session is abandoned.
    idle_timeout: Duration = Field(default=600.0, ge=1, le=7 * 86400)
    # A session's record is kept this long after its last event.
    retention: Duration = Field(default=7 * 86400.0, ge=3600)

    @model_validator(mode="after")
    def _outlives_its_timers(self) -> "Sessions":
        # Else a record expires before its idle timer decides it: the session never gets an outcome.
        if self.idle_timeout + self.settle >= self.retention:
            raise ValueError(
                f"retention ({self.retention:g}s) must be longer than idle_timeout + settle "
                f"({self.idle_timeout + self.settle:g}s)"
            )
        return self


class EventLog(Strict):
    """The event log: every event with its rules fired, body and attempts (relay/store/event_log.py)."""

    # Each event's record and index entry are kept this long after it was fanned out.
    retention: Duration = Field(default=7 * 86400.0, ge=3600)


class RelayConfig(Strict):
    """The whole config file."""

    sources: dict[SourceName, Source] = Field(min_length=1)
    destinations: dict[DestinationName, Destination] = {}
    rules: list[Rule] = []
    ingest: Ingest = Ingest()
    dead_letters: DeadLetters = DeadLetters()
    operations: Operations = Operations()
    sessions: Sessions = Sessions()
    event_log: EventLog = EventLog()

    @property
    def state_ttl(self) -> int:
        """How long an event's envelope and delivery states are kept: past the longest retry horizon."""
        horizons = [d.retry.horizon for d in self.destinations.values()] or [RetryPolicy().horizon]
        return int(max(horizons)) + 86400
