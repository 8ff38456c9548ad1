"""The relay's RQ jobs, named in one place, and the one way they are built, queued and scheduled.

Jobs are named by dotted path, not imported: relay never imports workers. Every job is
JSON-serialised, keeps no result, and stays FAILED_JOB_TTL in RQ's failed registry if it fails.
"""

import math
import time
from datetime import datetime, timezone

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

QUEUE_NAME = "events"
FANOUT = "workers.fanout.fan_out"  # one job per event: no longer queued, still run (earlier versions)
RETRY = "workers.delivery.retry"
SWEEP = "workers.sweeper.sweep"
PROBE = "workers.pausing.probe"
ANNOUNCE = "workers.pausing.announce"
JOB_TIMEOUT = 300  # seconds one job may run before RQ stops it
FAILED_JOB_TTL = 14 * 86400  # keep failed jobs for an operator to inspect
JOB_RETRY_DELAYS = (10, 60, 300, 600, 1800)  # seconds, when RQ itself re-runs a failed job


def queue(redis: Redis) -> Queue:
    """The relay's one queue."""
    return Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)


def make(redis: Redis, func: str, args: list, description: str, **options) -> Job:
    """A job for `func(*args)`, not yet queued.

    A job that fails (a bug, or Redis dropping mid-job) or is abandoned by a dying worker is run
    again by RQ, five times over about 40 minutes; the claims make a rerun send nothing twice.
    Only then does it stay in RQ's failed registry (rq:failed:events) for an operator.
    """
    options.setdefault("retry", Retry(max=len(JOB_RETRY_DELAYS), interval=list(JOB_RETRY_DELAYS)))
    return queue(redis).create_job(func, args=args, description=description, timeout=JOB_TIMEOUT,
                                   result_ttl=0, failure_ttl=FAILED_JOB_TTL, **options)


def enqueue(redis: Redis, job: Job, pipe: Pipeline | None = None) -> None:
    """Queue `job` now (inside `pipe`'s MULTI when given: call pipe.multi() before anything else)."""
    queue(redis).enqueue_job(job, pipeline=pipe)


def schedule(redis: Redis, job: Job, delay: float, pipe: Pipeline | None = None) -> None:
    """Queue `job` in `delay` seconds, by RQ's scheduler in the worker processes."""
    schedule_at(redis, job, time.time() + delay, pipe)


def schedule_at(redis: Redis, job: Job, when: float, pipe: Pipeline | None = None) -> None:
    """Queue `job` at `when` (unix seconds), by RQ's scheduler in the worker processes."""
    # RQ keeps whole seconds and drops the fraction: round up, or a Retry-After could be cut short.
    queue(redis).schedule_job(job, datetime.fromtimestamp(math.ceil(when), timezone.utc), pipeline=pipe)
