"""The catalogue of WMS event codes, as documented by the vendor (shared/spec/wms-webhook.txt).

The vendor documents which payload values each event carries but names only `measurementId`
in its example body; the other payload field names below (`snr`, `sequence`, `constraint`,
`errorCode`, `visibility`) are our reading of that table and are used for display only, never
to reject an event. Codes not listed here are accepted and marked unknown: WMS may add codes.
"""

from dataclasses import dataclass

SEVERITIES = ("INFO", "WARN", "ERROR")


@dataclass(frozen=True)
class EventType:
    """One documented event code with its documented severity and payload fields."""

    code: str
    severity: str
    payload_fields: tuple[str, ...]
    description: str


_M = ("measurementId",)

CATALOGUE: dict[str, EventType] = {
    e.code: e
    for e in (
        EventType("WMS_LOADED", "INFO", (), "WMS has been loaded"),
        EventType("CONFIGURATION_LOADED", "INFO", (), "Config fetched using the provided Config ID"),
        EventType("CAMERA_PERMISSION_GRANTED", "INFO", (), "User has granted the camera permission"),
        EventType("CAMERA_PERMISSION_DENIED", "ERROR", (), "User has denied the camera permission"),
        EventType("CAMERA_STARTED", "INFO", (), "Camera started, by the user or automatically"),
        EventType("MEASUREMENT_STARTED", "INFO", (), "Measurement started, by the user or automatically"),
        EventType("MEASUREMENT_CREATED", "INFO", _M, "Measurement created and got the measurement ID"),
        EventType("INTERMEDIATE_RESULTS", "INFO", ("snr", "sequence", "measurementId"), "Intermediate result received"),
        EventType("SCAN_COMPLETED", "INFO", _M, "Scan has completed and is waiting for the final results"),
        EventType("RESULTS_RECEIVED", "INFO", _M, "Final results have been received"),
        EventType("REDIRECTING_TO_CALLBACK", "INFO", _M, "Starting the redirect to the callback URL"),
        EventType("MEASUREMENT_CANCELED", "WARN", _M, "Measurement has been canceled"),
        EventType(
            "CONSTRAINT_VIOLATION",
            "ERROR",
            ("constraint", "measurementId"),
            "A constraint has been violated (resulting in measurement cancel)",
        ),
        EventType("PAGE_UNLOADED", "INFO", _M, "The user closed the tab or navigated away from WMS"),
        EventType("WEBSOCKET_DISCONNECTED", "WARN", _M, "Websocket has been disconnected"),
        EventType("WEBSOCKET_RECONNECTED", "INFO", _M, "Websocket has been reconnected"),
        EventType("WEBSOCKET_RECONNECTION_FAILED", "ERROR", _M, "Websocket failed to reconnect"),
        EventType("API_ERROR", "ERROR", ("errorCode", "measurementId"), "API threw an error"),
        EventType(
            "PAGE_VISIBILITY_CHANGE",
            "INFO",
            ("visibility", "measurementId"),
            "User minimized or maximized the browser or switched to another tab or application",
        ),
    )
}


# Codes the relay derives itself, never sent by WMS (ingest refuses them): the outcome of a
# session (relay/domain/session.py), and a rule's grouped message of one session's events.
SESSION_COMPLETED = "SESSION_COMPLETED"
SESSION_FAILED = "SESSION_FAILED"
SESSION_ABANDONED = "SESSION_ABANDONED"
EVENT_GROUP = "EVENT_GROUP"
DERIVED: dict[str, EventType] = {
    e.code: e
    for e in (
        EventType(SESSION_COMPLETED, "INFO", (), "The measurement session ended with results"),
        EventType(SESSION_FAILED, "ERROR", (), "The measurement session failed"),
        EventType(SESSION_ABANDONED, "WARN", (), "The measurement session was abandoned before results"),
        EventType(EVENT_GROUP, "INFO", (), "A session's events matched by one rule, in one message"),
    )
}
