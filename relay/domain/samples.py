"""Realistic WMS events, for `relay send-sample` and the tests: what a real session sends."""

import json
import time
import uuid

from config.wms_events import CATALOGUE

# What each documented payload field looks like in a real session.
_SAMPLE_VALUES = {
    "measurementId": "f0c8ca8d-111d-4dcf-a69d-46ed39a2db06",
    "snr": 6.2,
    "sequence": 3,
    "constraint": "FACE_NOT_CENTERED",
    "errorCode": "MEASUREMENT_CLOSED",
    "visibility": "hidden",
}

# A session that ends with results, and one that ends with a constraint violation.
COMPLETED_SESSION = (
    "WMS_LOADED",
    "CONFIGURATION_LOADED",
    "CAMERA_PERMISSION_GRANTED",
    "CAMERA_STARTED",
    "MEASUREMENT_STARTED",
    "MEASUREMENT_CREATED",
    "INTERMEDIATE_RESULTS",
    "INTERMEDIATE_RESULTS",
    "SCAN_COMPLETED",
    "RESULTS_RECEIVED",
    "REDIRECTING_TO_CALLBACK",
)
FAILED_SESSION = (
    "WMS_LOADED",
    "CONFIGURATION_LOADED",
    "CAMERA_PERMISSION_GRANTED",
    "CAMERA_STARTED",
    "MEASUREMENT_STARTED",
    "MEASUREMENT_CREATED",
    "CONSTRAINT_VIOLATION",
    "MEASUREMENT_CANCELED",
)


def new_session_id() -> str:
    """A session id shaped like the ones WMS call-in URLs carry."""
    return uuid.uuid4().hex[:25]


def sample_event(code: str, session_id: str, sequence: int, timestamp: int | None = None) -> dict:
    """One event as WMS would send it, with the catalogue's severity and payload fields."""
    event_type = CATALOGUE.get(code)
    event = {
        "timestamp": int(time.time()) if timestamp is None else timestamp,
        "sessionId": session_id,
        "sequence": sequence,
        "severity": event_type.severity if event_type else "INFO",
        "event": code,
    }
    fields = event_type.payload_fields if event_type else ()
    if fields:
        event["payload"] = {name: _SAMPLE_VALUES[name] for name in fields}
    return event


def sample_session(codes: tuple[str, ...], session_id: str | None = None) -> list[dict]:
    """A whole session's events in order, sequence 0, 1, 2, ..."""
    session_id = session_id or new_session_id()
    start = int(time.time())
    return [sample_event(code, session_id, i, start + i) for i, code in enumerate(codes)]


def to_body(event: dict) -> bytes:
    """The body WMS would POST for this event."""
    return json.dumps(event, separators=(",", ":")).encode("utf-8")
