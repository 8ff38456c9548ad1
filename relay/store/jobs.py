"""The relay's RQ jobs, named in one place, and the one way they are built, queued and scheduled.

Jobs are named by dotted path, not imported: relay never imports workers. The names are stored
with every queued and scheduled job, so they are a contract with the Redis of a running
deployment: renaming one strands the jobs already scheduled under it (tests/workers/test_jobs.py
checks that each name still resolves). Every job is
JSON-serialised, keeps no result, and stays FAILED_JOB_TTL in RQ's failed registry if it fails.
"""

import math
import time
from datetime import UTC, datetime
from typing import Any

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


def make(redis: Redis, func: str, args: list, description: str, **options: Any) -> Job:
    """A job for `func(*args)`, not yet queued.

    A job that fails (a bug, or Redis dropping mid-job) or is abandoned by a dying worker is run
    again by RQ, five times over about 40 minutes; the claims make a rerun send nothing twice.
    Only then does it stay in RQ's failed registry (rq:failed:events) for an operator.
    """
    options.setdefault("retry", Retry(max=len(JOB_RETRY_DELAYS), interval=list(JOB_RETRY_DELAYS)))
    return queue(redis).create_job(
        func,
        args=args,
        description=description,
        timeout=JOB_TIMEOUT,
        result_ttl=0,
        failure_ttl=FAILED_JOB_TTL,
        **options,
    )


def retry_job(redis: Redis, event_id: str, destination: str, number: int, deferrals: int, why: str) -> Job:
    """The job that makes attempt `number` (after `deferrals` deferrals) of one delivery: every
    retry, release, sweep and replay is this job, so a delivery's state names it exactly."""
    return make(
        redis,
        RETRY,
        [event_id, destination, number, deferrals],
        f"deliver {event_id} to {destination} (attempt {number}, {why})",
    )


def transaction(redis: Redis) -> Pipeline:
    """A MULTI pipeline that RQ's enqueue and schedule can join (they expect MULTI already sent)."""
    pipe = redis.pipeline(transaction=True)
    pipe.multi()
    return pipe


def enqueue(redis: Redis, job: Job, pipe: Pipeline | None = None) -> None:
    """Queue `job` now (inside `pipe`'s MULTI when given: see transaction())."""
    queue(redis).enqueue_job(job, pipeline=pipe)


def schedule(redis: Redis, job: Job, delay: float, pipe: Pipeline | None = None) -> None:
    """Queue `job` in `delay` seconds, by RQ's scheduler in the worker processes."""
    schedule_at(redis, job, time.time() + delay, pipe)


def schedule_at(redis: Redis, job: Job, when: float, pipe: Pipeline | None = None) -> None:
    """Queue `job` at `when` (unix seconds), by RQ's scheduler in the worker processes."""
    # RQ keeps whole seconds and drops the fraction: round up, or a Retry-After could be cut short.
    queue(redis).schedule_job(job, datetime.fromtimestamp(math.ceil(when), UTC), pipeline=pipe)
