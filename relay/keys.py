"""The Redis layout: every key the relay writes is named here (RQ keeps its own `rq:` keys).

- relay:dedup:<event id>                  string   the event's job id; expires after the dedup window
- relay:delivered:<event id>              hash     destination -> unix time it was delivered
- relay:attempts:<event id>               list     JSON record of each delivery attempt, oldest first
- relay:attempt-log                       stream   every attempt of every event, newest last (capped)
- relay:dead-letter:<destination>:<event id>  string   JSON: the envelope, why it failed, how often
- relay:dead-letters                      zset     "<destination>:<event id>" scored by the time it died
"""

ATTEMPT_LOG = "relay:attempt-log"
DEAD_LETTERS = "relay:dead-letters"


def dedup_key(event_id: str) -> str:
    """Marks an event id as seen."""
    return f"relay:dedup:{event_id}"


def delivered_key(event_id: str) -> str:
    """Which destinations already have this event: what makes a delivery run at most once."""
    return f"relay:delivered:{event_id}"


def attempts_key(event_id: str) -> str:
    """The delivery attempts of one event."""
    return f"relay:attempts:{event_id}"


def dead_letter_key(destination: str, event_id: str) -> str:
    """One delivery that will not be retried any more."""
    return f"relay:dead-letter:{destination}:{event_id}"
