"""The sweeper: attempts whose worker died mid-send are found by their expired lease and run
again, and dead letters past their retention are removed (each one logged).

One sweep chain runs at a time: relay:sweeper names the chain's next job, and a sweep job that
finds another name there stops. Every fan-out starts a chain if none is named, and each worker
sweeps once as it starts.
"""

import logging
import time
import uuid

from rq.job import Job

from relay.store import dead_letters, deliveries, jobs, keys, replies
from workers import runtime
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def _chain_ttl(rt: Runtime) -> int:
    # Long enough to outlive a scheduler takeover (about 2 min), or a second chain would start.
    return int(max(rt.config.operations.sweep_every * 3, 300))


def _sweep_job(rt: Runtime, job_id: str | None = None) -> Job:
    return jobs.make(rt.redis, jobs.SWEEP, [], "sweep lost deliveries", job_id=job_id)


def ensure_scheduled(rt: Runtime) -> None:
    """Start a sweep chain unless one is named; cheap enough to call for every event (one SET NX)."""
    # The job is built only when the chain is missing: not on every event's hot path.
    job_id = uuid.uuid4().hex
    if rt.redis.set(keys.SWEEPER, job_id, nx=True, ex=_chain_ttl(rt)):
        jobs.schedule(rt.redis, _sweep_job(rt, job_id), rt.config.operations.sweep_every)


def sweep_chain(rt: Runtime, job_id: str) -> int:
    """One link of the sweep chain: if it is the current one, schedule the next, retry every
    attempt whose lease has expired and expire old dead letters. Return how many were retried."""
    if rt.redis.get(keys.SWEEPER) != job_id.encode():
        return 0  # a stale chain: another one is current
    following = _sweep_job(rt)
    rt.redis.set(keys.SWEEPER, following.id, ex=_chain_ttl(rt))
    jobs.schedule(rt.redis, following, rt.config.operations.sweep_every)
    found = sweep_now(rt)
    dead_letters.expire(rt.redis, rt.config.dead_letters.retention)
    return found


def sweep() -> int:
    """RQ entry point (jobs.SWEEP): sweep_chain with this process's runtime."""
    return sweep_chain(runtime.current(), runtime.current_job_id())


def sweep_now(rt: Runtime) -> int:
    """Retry every attempt whose lease has expired (a worker also does this as it starts)."""
    found = 0
    for member in replies.members(rt.redis.zrangebyscore(keys.LEASES, "-inf", time.time())):
        if not rt.redis.zrem(keys.LEASES, member):
            continue  # another sweeper took it
        event_id, destination, number, deferrals = deliveries.parse_lease_member(member)
        jobs.enqueue(rt.redis, jobs.retry_job(rt.redis, event_id, destination, number, deferrals, "again"))
        found += 1
        log.warning(
            "%s -> %s attempt %d was lost in flight (its worker stopped?); trying it again",
            event_id,
            destination,
            number,
        )
    return found
