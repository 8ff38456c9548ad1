"""The sweep of earlier versions: one RQ job chain re-ran attempts whose lease had run out and
expired old dead letters. Both moved: every take re-queues a destination's lost attempts
(lua/take.lua), and dead letters expire on a timer (workers/timers.py). The entry point stays,
since a deployment's Redis may still hold a sweep job under its name (relay/store/jobs.py)."""

import logging

from workers import migrate, runtime

log = logging.getLogger(__name__)


def sweep() -> int:
    """RQ entry point (jobs.SWEEP) of earlier versions: carries their leases and scheduled jobs over."""
    return migrate.carry_over(runtime.current())
