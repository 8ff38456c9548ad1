"""The Redis layout: every key the relay writes is named here (RQ keeps its own `rq:` keys).

- relay:dedup:<event id>        string  the event's job id; expires after the dedup window
- relay:event:<event id>        string  the queued envelope (raw body included), for retries; expires
                                        once no retry can need it any more
- relay:delivery:<event id>     hash    destination -> its delivery's state: the attempt number in
                                        flight or scheduled ("1", "2", ...), "ok" or "dead"
- relay:leases                  zset    deliveries being sent right now, scored by when they are
                                        presumed lost (their worker died); the sweeper retries those
- relay:attempts:<event id>     list    JSON record of each delivery attempt, oldest first
- relay:attempt-log             stream  every attempt of every event, newest last (capped)
- relay:dead-letter:<destination>:<event id>  string  JSON: the envelope, why it failed, how often
- relay:dead-letters            zset    "<destination>:<event id>" scored by the time it died
- relay:sweeper                 string  present while a lease sweep is scheduled
- relay:destination:<name>      hash    failures (consecutive), and while paused: paused (reason),
                                        paused_at, paused_by ("auto" or "operator")
- relay:parked:<name>           list    JSON [event id, attempt, deferrals] of deliveries waiting
                                        for a paused destination, oldest first
"""

ATTEMPT_LOG = "relay:attempt-log"
DEAD_LETTERS = "relay:dead-letters"
LEASES = "relay:leases"
SWEEPER = "relay:sweeper"


def dedup_key(event_id: str) -> str:
    """Marks an event id as seen."""
    return f"relay:dedup:{event_id}"


def event_key(event_id: str) -> str:
    """The envelope of an event that is being delivered."""
    return f"relay:event:{event_id}"


def delivery_key(event_id: str) -> str:
    """Each destination's delivery state for one event: what makes a delivery run at most once."""
    return f"relay:delivery:{event_id}"


def attempts_key(event_id: str) -> str:
    """The delivery attempts of one event."""
    return f"relay:attempts:{event_id}"


def dead_letter_key(destination: str, event_id: str) -> str:
    """One delivery that will not be retried any more."""
    return f"relay:dead-letter:{destination}:{event_id}"


def destination_key(name: str) -> str:
    """A destination's health: consecutive failures, and whether (and why) it is paused."""
    return f"relay:destination:{name}"


def parked_key(name: str) -> str:
    """Deliveries waiting for a paused destination."""
    return f"relay:parked:{name}"
