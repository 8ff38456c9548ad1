"""The sweeper: attempts whose worker died mid-send are found by their expired lease and run
again, and dead letters past their retention are removed (each one logged). One sweep job is
scheduled at a time; every fan-out makes sure one is.
"""

import json
import logging
import time
from datetime import datetime, timedelta, timezone

from redis import Redis
from rq import Queue, get_current_job
from rq.serializers import JSONSerializer

from relay import dead_letters, keys
from relay.inbox import FAILED_JOB_TTL, JOB_TIMEOUT, QUEUE_NAME
from workers import runtime

log = logging.getLogger(__name__)
SWEEP_JOB = "workers.sweeper.sweep"


def _interval() -> float:
    return runtime.current().config.operations.sweep_every


def ensure_scheduled(redis: Redis) -> None:
    """Schedule a sweep unless one is; cheap enough to call for every event (one SET NX)."""
    if redis.set(keys.SWEEPER, 1, nx=True, ex=int(_interval() * 3) + 1):
        _schedule(redis)


def sweep() -> int:
    """RQ job: queue a retry for every attempt whose lease has expired; reschedule itself."""
    redis = get_current_job().connection
    found = sweep_now(redis)
    dead_letters.expire(redis, runtime.current().config.dead_letters.retention)
    redis.set(keys.SWEEPER, 1, ex=int(_interval() * 3) + 1)
    _schedule(redis)
    return found


def sweep_now(redis: Redis) -> int:
    """Queue a retry for every attempt whose lease has expired (a worker also does this as it starts)."""
    queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
    found = 0
    for member in redis.zrangebyscore(keys.LEASES, "-inf", time.time()):
        event_id, destination, number = json.loads(member)
        pipe = redis.pipeline(transaction=True)
        pipe.multi()  # explicitly, before any command: RQ's enqueue_job expects to join a MULTI
        pipe.zrem(keys.LEASES, member)
        job = queue.create_job(
            "workers.delivery.retry", args=[event_id, destination, number], timeout=JOB_TIMEOUT, result_ttl=0,
            failure_ttl=FAILED_JOB_TTL, description=f"deliver {event_id} to {destination} (attempt {number}, again)",
        )
        queue.enqueue_job(job, pipeline=pipe)
        pipe.execute()
        found += 1
        log.warning("%s -> %s attempt %d was lost in flight (its worker stopped?); trying it again",
                    event_id, destination, number)
    return found


def _schedule(redis: Redis) -> None:
    queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
    job = queue.create_job(SWEEP_JOB, timeout=JOB_TIMEOUT, result_ttl=0, failure_ttl=FAILED_JOB_TTL,
                           description="sweep lost deliveries")
    queue.schedule_job(job, datetime.now(timezone.utc) + timedelta(seconds=_interval()))
