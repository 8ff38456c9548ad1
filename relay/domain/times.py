"""Times as the relay shows them: in UTC, ISO 8601."""

from datetime import UTC, datetime


def iso(when: float) -> str:
    """A unix time as ISO 8601 in UTC, to the millisecond when it has a fraction."""
    moment = datetime.fromtimestamp(when, UTC)
    return moment.isoformat(timespec="milliseconds" if when % 1 else "seconds")
