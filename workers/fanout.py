"""The fan-out job: route one accepted event and hand a delivery to every destination its rules name.

One job per event serves all of them; the sends run on delivery threads (workers/runtime.py), so
the job returns at once and a slow destination holds up neither the others nor later events. A
destination that fails gets a retry job of its own (workers/delivery.py), so it never repeats
the others.
"""

import logging

from rq import get_current_job

from relay.routing import route
from workers import runtime, sweeper
from workers.delivery import dispatch, keep_envelope, read_envelope

log = logging.getLogger(__name__)


def fan_out(envelope: dict) -> None:
    """Take one queued event (the envelope written by relay.inbox) and start its deliveries."""
    event = read_envelope(envelope)
    redis = get_current_job().connection
    result = route(runtime.current().config.rules, event)
    if not result.destinations:
        log.info("%s (%s, %s) matches no rule; not delivered anywhere", event.id, event.code, event.severity)
        return
    keep_envelope(redis, envelope)
    sweeper.ensure_scheduled(redis)
    for destination in result.destinations:
        dispatch(redis, envelope, event, destination, 1, fresh=True)
