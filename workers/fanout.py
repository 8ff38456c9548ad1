"""The fan-out job: the entry point of every accepted event's delivery.

Routing by rules and delivery to Slack, email and HTTP callbacks are the fan-out issue's work
(#3). Until then this job only proves the event reached a worker intact: it re-validates the
queued raw body, counts the event and logs it. It delivers nothing.
"""

import logging

from rq import get_current_job

from relay.event import parse_event

log = logging.getLogger(__name__)

REACHED_WORKER_KEY = "relay:stats:reached_worker"


def fan_out(envelope: dict) -> None:
    """Take one queued event (the envelope written by relay.inbox) and record that a worker has it."""
    event = parse_event(envelope["source"], envelope["body"].encode("utf-8"))
    if event.id != envelope["id"]:
        raise ValueError(f"envelope id {envelope['id']!r} does not match its body's event id {event.id!r}")
    get_current_job().connection.incr(REACHED_WORKER_KEY)
    log.info("event %s (%s, %s) reached a worker; routing is not implemented yet", event.id, event.code, event.severity)
