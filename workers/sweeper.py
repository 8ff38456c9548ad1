"""The sweeper: attempts whose worker died mid-send are found by their expired lease and run
again, and dead letters past their retention are removed (each one logged).

One sweep chain runs at a time: relay:sweeper names the chain's next job, and a sweep job that
finds another name there stops. Every fan-out starts a chain if none is named, and each worker
sweeps once as it starts.
"""

import json
import logging
import time
import uuid

from redis import Redis
from rq import get_current_job

from relay import dead_letters, jobs, keys
from workers import runtime

log = logging.getLogger(__name__)


def _interval() -> float:
    return runtime.current().config.operations.sweep_every


def _chain_ttl() -> int:
    # Long enough to outlive a scheduler takeover (about 2 min), or a second chain would start.
    return int(max(_interval() * 3, 300))


def ensure_scheduled(redis: Redis) -> None:
    """Start a sweep chain unless one is named; cheap enough to call for every event (one SET NX)."""
    # The job is built only when the chain is missing: not on every event's hot path.
    job_id = uuid.uuid4().hex
    if redis.set(keys.SWEEPER, job_id, nx=True, ex=_chain_ttl()):
        jobs.schedule(redis, jobs.make(redis, jobs.SWEEP, [], "sweep lost deliveries", job_id=job_id), _interval())


def sweep() -> int:
    """RQ job: retry every attempt whose lease has expired, expire old dead letters, sweep again later."""
    job = get_current_job()
    redis = job.connection
    if redis.get(keys.SWEEPER) != job.id.encode():
        return 0  # a stale chain: another one is current
    following = jobs.make(redis, jobs.SWEEP, [], "sweep lost deliveries")
    redis.set(keys.SWEEPER, following.id, ex=_chain_ttl())
    jobs.schedule(redis, following, _interval())
    found = sweep_now(redis)
    dead_letters.expire(redis, runtime.current().config.dead_letters.retention)
    return found


def sweep_now(redis: Redis) -> int:
    """Retry every attempt whose lease has expired (a worker also does this as it starts)."""
    found = 0
    for member in redis.zrangebyscore(keys.LEASES, "-inf", time.time()):
        if not redis.zrem(keys.LEASES, member):
            continue  # another sweeper took it
        event_id, destination, number, deferrals = json.loads(member)
        job = jobs.make(redis, jobs.RETRY, [event_id, destination, number, deferrals],
                        f"deliver {event_id} to {destination} (attempt {number}, again)")
        jobs.enqueue(redis, job)
        found += 1
        log.warning("%s -> %s attempt %d was lost in flight (its worker stopped?); trying it again",
                    event_id, destination, number)
    return found
