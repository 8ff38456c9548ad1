"""The relay's RQ jobs, named in one place, and the one way they are built and queued.

RQ runs the worker process and the jobs that are not deliveries: announcements to operations
now, and the jobs of earlier versions still queued or scheduled in a deployment's Redis.
Deliveries wait in each destination's queue (relay/store/queues.py) and timers in relay:due
(relay/store/due.py): taken by any worker, so nothing waits for RQ's scheduler, whose single
lock outlived a killed holder by minutes. Workers run without it; scheduled jobs of earlier
versions are carried over at start (workers/migrate.py).

Jobs are named by dotted path, not imported: relay never imports workers. The names are stored
with every queued and scheduled job, so they are a contract with the Redis of a running
deployment: renaming one strands the jobs already queued under it (tests/workers/test_jobs.py
checks that each name still resolves). Every job is JSON-serialised, keeps no result, and stays
FAILED_JOB_TTL in RQ's failed registry if it fails.
"""

from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

QUEUE_NAME = "events"
ANNOUNCE = "workers.pausing.announce"
# Earlier versions' jobs: no longer queued, still run if a deployment's Redis holds them.
FANOUT = "workers.fanout.fan_out"  # one job per event
RETRY = "workers.delivery.retry"  # a later attempt: now puts it in its destination's queue
SWEEP = "workers.sweeper.sweep"  # the lease sweep: now part of every take (lua/take.lua)
PROBE = "workers.pausing.probe"  # a probe: now a timer in relay:due
JOB_TIMEOUT = 300  # seconds one job may run before RQ stops it
FAILED_JOB_TTL = 14 * 86400  # keep failed jobs for an operator to inspect
# RQ re-runs a failed job at once (a delay would need RQ's scheduler): a bug fails it fast.
JOB_RETRIES = 3


def queue(redis: Redis) -> Queue:
    """The relay's one queue."""
    return Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)


def make(redis: Redis, func: str, args: list, description: str, **options: Any) -> Job:
    """A job for `func(*args)`, not yet queued; a job that fails is run again JOB_RETRIES times,
    then stays in RQ's failed registry (rq:failed:events) for an operator."""
    options.setdefault("retry", Retry(max=JOB_RETRIES))
    return queue(redis).create_job(
        func,
        args=args,
        description=description,
        timeout=JOB_TIMEOUT,
        result_ttl=0,
        failure_ttl=FAILED_JOB_TTL,
        **options,
    )


def enqueue(redis: Redis, job: Job, pipe: Pipeline | None = None) -> None:
    """Queue `job` now; inside `pipe`'s MULTI when given (call pipe.multi() first: RQ joins it)."""
    queue(redis).enqueue_job(job, pipeline=pipe)
