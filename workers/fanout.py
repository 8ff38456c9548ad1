"""The fan-out job: route one accepted event and deliver it to every destination its rules name.

One job per event delivers to all of them (side by side when there are several); a destination
that fails gets a retry job of its own (workers/delivery.py), so it never repeats or holds up
the others.
"""

import logging

from rq import get_current_job

from relay.routing import route
from workers import runtime
from workers.delivery import attempt, read_envelope

log = logging.getLogger(__name__)


def fan_out(envelope: dict) -> None:
    """Take one queued event (the envelope written by relay.inbox) and deliver it."""
    event = read_envelope(envelope)
    rt = runtime.current()
    redis = get_current_job().connection
    result = route(rt.config.rules, event)
    if not result.destinations:
        log.info("%s (%s, %s) matches no rule; not delivered anywhere", event.id, event.code, event.severity)
        return
    if len(result.destinations) == 1:
        attempt(redis, envelope, event, result.destinations[0], 1)
        return
    futures = [rt.pool.submit(attempt, redis, envelope, event, name, 1) for name in result.destinations]
    for future in futures:
        future.result()  # a bug or Redis failure in any delivery fails the job, to be seen and retried
