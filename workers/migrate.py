"""Carrying over what earlier versions left in Redis: retries, probes and sweeps scheduled as RQ
jobs for RQ's scheduler, and leases in one relay:leases set. Workers no longer run RQ's
scheduler, so this moves them where they are taken now: a retry into its destination's queue at
its due time, a probe onto its timer, a lease into its destination's in-flight set. Any worker
may run it at any time (at start and with every dead-letter expiry); each item is moved by the
one worker that removed it first."""

import logging

from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from relay.store import destination_state, due, jobs, keys, queues
from relay.store.replies import members
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def carry_over(rt: Runtime) -> int:
    """Move earlier versions' scheduled jobs and leases, and drop their attempt log (up to ~9 MB
    that nothing reads now); return how many items were moved."""
    rt.redis.delete(keys.LEGACY_ATTEMPT_LOG)
    return _scheduled_jobs(rt) + _leases(rt)


def _scheduled_jobs(rt: Runtime) -> int:
    redis = rt.redis
    queue = jobs.queue(redis)
    registry = ScheduledJobRegistry(queue=queue)
    moved = 0
    for job_id in registry.get_job_ids():
        when = redis.zscore(registry.key, job_id)
        if when is None or not redis.zrem(registry.key, job_id):
            continue  # another worker moved it
        try:
            job = Job.fetch(job_id, connection=redis, serializer=queue.serializer)
        except NoSuchJobError:
            continue
        moved += 1
        if job.func_name == jobs.RETRY:
            event_id, destination, number, deferrals = [*job.args, 0][:4]  # deferrals came later
            redis.zadd(keys.queue_key(destination), {queues.member(event_id, destination, number, deferrals): when})
            rt.wake([destination])
        elif job.func_name == jobs.PROBE:
            due.schedule(redis, destination_state.probe_timer(job.args[0]), when)
        elif job.func_name != jobs.SWEEP:
            queue.enqueue_job(job)  # anything else runs now
            continue
        job.delete()
    if moved:
        log.warning("carried over %d scheduled job(s) of an earlier version", moved)
    return moved


def _leases(rt: Runtime) -> int:
    redis = rt.redis
    moved = 0
    for member in members(redis.zrange(keys.LEGACY_LEASES, 0, -1)):
        score = redis.zscore(keys.LEGACY_LEASES, member)
        if score is None or not redis.zrem(keys.LEGACY_LEASES, member):
            continue
        _, destination, _, _ = queues.parse_member(member)
        redis.zadd(keys.inflight_key(destination), {member: score})
        moved += 1
    if moved:
        log.warning("carried over %d lease(s) of an earlier version", moved)
    redis.delete(keys.LEGACY_SWEEPER)
    return moved
