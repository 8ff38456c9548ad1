"""Scripted WMS sessions, as real users produce them, each with the outcome and reason the relay
must derive from it (by relay/domain/session.py's table): for `relay simulate` and the session
tests. Pure: no clock, no network.
"""

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.domain.samples import sample_event
from relay.domain.session import IDLE

# Seconds from the previous event, as a real session spaces them: the user answers the camera
# prompt and settles in front of it; WMS reports an intermediate result every few seconds.
_PAUSES = {
    "WMS_LOADED": 0,
    "CAMERA_PERMISSION_GRANTED": 4,
    "CAMERA_PERMISSION_DENIED": 4,
    "MEASUREMENT_STARTED": 3,
    "INTERMEDIATE_RESULTS": 5,
    "SCAN_COMPLETED": 5,
    "RESULTS_RECEIVED": 3,
    "WEBSOCKET_RECONNECTED": 3,
    "WEBSOCKET_RECONNECTION_FAILED": 5,
    "API_ERROR": 2,
    "PAGE_VISIBILITY_CHANGE": 3,
    "PAGE_UNLOADED": 2,
}
# The payload fields that exist only once WMS has created the measurement ("if created").
_AFTER_CREATION = "MEASUREMENT_CREATED"
# A fixed namespace, so that a session's measurementId follows from its session id alone.
_MEASUREMENTS = uuid.UUID("6f3b1c1e-8a0d-4c55-9d0e-2f7a52a3b8c4")


@dataclass(frozen=True)
class Step:
    """One event of a scripted session: its code, its own payload values, seconds after the previous one."""

    code: str
    after: int
    payload: Mapping[str, Any] = field(default_factory=dict)


def _step(code: str, **payload: Any) -> Step:
    return Step(code, _PAUSES.get(code, 1), payload)


def _results(*snrs: float, first: int = 1) -> tuple[Step, ...]:
    """INTERMEDIATE_RESULTS with these SNRs, their result sequence numbers counting from `first`."""
    return tuple(_step("INTERMEDIATE_RESULTS", snr=snr, sequence=first + i) for i, snr in enumerate(snrs))


@dataclass(frozen=True)
class Scenario:
    """A scripted session and what the relay must make of it: outcome, and reason (None when completed)."""

    name: str
    description: str
    steps: tuple[Step, ...]
    outcome: str
    reason: str | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        """The event codes, in sequence order."""
        return tuple(step.code for step in self.steps)

    @property
    def duration(self) -> int:
        """Seconds from the first event's timestamp to the last's."""
        return sum(step.after for step in self.steps[1:])

    @property
    def expected(self) -> str:
        """The outcome as people read it: 'completed', 'failed (API_ERROR)'."""
        return self.outcome if self.reason is None else f"{self.outcome} ({self.reason})"


_OPENING = (
    _step("WMS_LOADED"),
    _step("CONFIGURATION_LOADED"),
    _step("CAMERA_PERMISSION_GRANTED"),
    _step("CAMERA_STARTED"),
    _step("MEASUREMENT_STARTED"),
    _step("MEASUREMENT_CREATED"),
)
_SUCCESS = (
    *_OPENING,
    *_results(1.8, 3.4, 4.9, 6.2),
    _step("SCAN_COMPLETED"),
    _step("RESULTS_RECEIVED"),
    _step("REDIRECTING_TO_CALLBACK"),
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "success",
            "the camera starts, four intermediate results with a rising SNR, results, the redirect",
            _SUCCESS,
            "completed",
        ),
        Scenario(
            "camera-denied",
            "the user denies the camera and closes the tab",
            (
                _step("WMS_LOADED"),
                _step("CONFIGURATION_LOADED"),
                _step("CAMERA_PERMISSION_DENIED"),
                _step("PAGE_UNLOADED"),
            ),
            "failed",
            "CAMERA_PERMISSION_DENIED",
        ),
        Scenario(
            "constraint-violation",
            "mid-scan the face leaves the centre: the measurement is canceled, the tab closed",
            (
                *_OPENING,
                *_results(2.1, 1.4),
                _step("CONSTRAINT_VIOLATION", constraint="FACE_NOT_CENTERED"),
                _step("MEASUREMENT_CANCELED"),
                _step("PAGE_UNLOADED"),
            ),
            "failed",
            "CONSTRAINT_VIOLATION",
        ),
        Scenario(
            "websocket-recovered",
            "the websocket drops mid-scan and reconnects; results arrive",
            (
                *_OPENING,
                *_results(2.3),
                _step("WEBSOCKET_DISCONNECTED"),
                _step("WEBSOCKET_RECONNECTED"),
                *_results(4.6, first=2),
                _step("SCAN_COMPLETED"),
                _step("RESULTS_RECEIVED"),
            ),
            "completed",
        ),
        Scenario(
            "reconnection-failed",
            "the websocket drops mid-scan and fails to reconnect: the measurement is canceled",
            (
                *_OPENING,
                *_results(2.6),
                _step("WEBSOCKET_DISCONNECTED"),
                _step("WEBSOCKET_RECONNECTION_FAILED"),
                _step("MEASUREMENT_CANCELED"),
            ),
            "failed",
            "WEBSOCKET_RECONNECTION_FAILED",
        ),
        Scenario(
            "api-error",
            "the scan completes but the API refuses the results (MEASUREMENT_CLOSED)",
            (
                *_OPENING,
                *_results(1.9, 3.2, 4.4, 5.8),
                _step("SCAN_COMPLETED"),
                _step("API_ERROR", errorCode="MEASUREMENT_CLOSED"),
            ),
            "failed",
            "API_ERROR",
        ),
        Scenario(
            "tab-closed",
            "mid-scan the user switches away and closes the tab",
            (
                *_OPENING,
                *_results(2.4),
                _step("PAGE_VISIBILITY_CHANGE", visibility="hidden"),
                _step("PAGE_UNLOADED"),
            ),
            "abandoned",
            "PAGE_UNLOADED",
        ),
        Scenario(
            "idle",
            "one intermediate result, then nothing more",
            (*_OPENING, *_results(2.2)),
            "abandoned",
            IDLE,
        ),
    )
}


def measurement_id(session_id: str) -> str:
    """The measurementId a played session carries: a uuid that follows from the session id."""
    return str(uuid.uuid5(_MEASUREMENTS, session_id))


def play(name: str, session_id: str, start: int) -> list[dict[str, Any]]:
    """The events of scenario `name` for one session, sequence 0..n-1, the first at `start` (unix s)."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise ValueError(f"no scenario named {name!r} (known: {', '.join(map(repr, SCENARIOS))})")
    measurement = measurement_id(session_id)
    created = False
    timestamp = start
    events = []
    for sequence, step in enumerate(scenario.steps):
        timestamp += step.after if sequence else 0
        created = created or step.code == _AFTER_CREATION
        event = sample_event(step.code, session_id, sequence, timestamp)
        payload = event.pop("payload", {})
        payload.update(step.payload)
        if "measurementId" in payload:
            payload["measurementId"] = measurement
            if not created:  # documented "if created": before MEASUREMENT_CREATED there is none
                del payload["measurementId"]
        if payload:
            event["payload"] = payload
        events.append(event)
    return events


def shuffled(events: list[dict[str, Any]], rng: random.Random, duplicate: float = 0.2) -> list[dict[str, Any]]:
    """The events in a random order, round(len(events) * duplicate) of them twice, as a retrying
    sender on a reordering network delivers them; `rng` makes the order repeatable."""
    if not 0 <= duplicate <= 1:
        raise ValueError(f"duplicate: must be a fraction from 0 to 1, got {duplicate!r}")
    played = [*events, *rng.sample(events, round(len(events) * duplicate))]
    rng.shuffle(played)
    return played
