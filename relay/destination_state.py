"""Each destination's health: consecutive failures, paused or active, deliveries waiting.

A paused destination is sent nothing: its deliveries are parked, not dropped and not
dead-lettered. A probe job tries it with one waiting delivery every `pause.probe_every`; the
first success resumes it and releases everything parked. Operators pause and resume by hand
(`relay destinations`); a destination paused by hand is not probed. Pausing and resuming are
logged and announced once to `operations.announce_to`.
"""

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from relay import keys
from relay.inbox import FAILED_JOB_TTL, JOB_TIMEOUT, QUEUE_NAME

log = logging.getLogger(__name__)
PROBE_JOB = "workers.pausing.probe"  # named, not imported: relay never imports workers
ANNOUNCE_JOB = "workers.pausing.announce"
RETRY_JOB = "workers.delivery.retry"


@dataclass(frozen=True)
class State:
    """One destination's health as stored in Redis."""

    name: str
    failures: int  # consecutive transient failures
    paused: str | None  # the reason, while paused
    paused_at: float | None
    paused_by: str | None  # "auto" or "operator"
    parked: int  # deliveries waiting


def get(redis: Redis, name: str) -> State:
    """The stored state of destination `name` (active with no failures when nothing is stored)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.destination_key(name))
    pipe.llen(keys.parked_key(name))
    fields, parked = pipe.execute()
    text = {k.decode(): v.decode() for k, v in fields.items()}
    paused_at = text.get("paused_at")
    return State(name, int(text.get("failures", 0)), text.get("paused"),
                 float(paused_at) if paused_at else None, text.get("paused_by"), parked)


def pause(redis: Redis, name: str, reason: str, by: str, probe_every: float | None) -> bool:
    """Pause `name` unless it is paused already; True when this call paused it."""
    if not redis.hsetnx(keys.destination_key(name), "paused", reason):
        return False
    redis.hset(keys.destination_key(name), mapping={"paused_at": time.time(), "paused_by": by})
    queue = _queue(redis)
    if by == "auto" and probe_every:
        job = queue.create_job(PROBE_JOB, args=[name], timeout=JOB_TIMEOUT, result_ttl=0, failure_ttl=FAILED_JOB_TTL,
                               description=f"probe paused destination {name}")
        queue.schedule_job(job, datetime.now(timezone.utc) + timedelta(seconds=probe_every))
    text = f"Destination {name} is paused: {reason}. Its deliveries wait until it is resumed."
    log.warning(text)
    _announce(queue, text)
    return True


def resume(redis: Redis, name: str, by: str) -> int | None:
    """Resume `name` and release its parked deliveries; how many were released, None if it was not paused."""
    if not redis.hdel(keys.destination_key(name), "paused"):
        return None
    redis.hset(keys.destination_key(name), "failures", 0)
    redis.hdel(keys.destination_key(name), "paused_at", "paused_by")
    queue = _queue(redis)
    released = 0
    while (entry := redis.lpop(keys.parked_key(name))) is not None:
        event_id, number, deferrals = json.loads(entry)
        job = queue.create_job(RETRY_JOB, args=[event_id, name, number, deferrals], timeout=JOB_TIMEOUT,
                               result_ttl=0, failure_ttl=FAILED_JOB_TTL,
                               description=f"deliver {event_id} to {name} (attempt {number}, released)")
        queue.enqueue_job(job)
        released += 1
    text = f"Destination {name} is resumed ({by}); {released} waiting deliveries released."
    log.warning(text)
    _announce(queue, text)
    return released


def _queue(redis: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)


def _announce(queue: Queue, text: str) -> None:
    queue.enqueue_job(queue.create_job(ANNOUNCE_JOB, args=[text], timeout=JOB_TIMEOUT, result_ttl=0,
                                       failure_ttl=FAILED_JOB_TTL, description="announce to operations"))
