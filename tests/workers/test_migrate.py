"""Carrying over what the previous version left in Redis (workers/migrate.py): its scheduled RQ
retries, probes and sweeps, and its leases, moved to where they are taken now, once."""

import json
import math
import time
from datetime import UTC, datetime

from rq.job import Job
from rq.registry import ScheduledJobRegistry

from relay.domain.samples import sample_session, to_body
from relay.store import destination_state, jobs, keys, queues
from tests.conftest import signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import CRM_PATH
from workers import migrate


def schedule_old_job(redis, func: str, args: list, when: int) -> Job:
    """A job scheduled for RQ's scheduler, as the previous version left them."""
    job = jobs.make(redis, func, args, "x")
    jobs.queue(redis).schedule_job(job, datetime.fromtimestamp(when, UTC))
    return job


def scheduled_job_ids(redis) -> list[str]:
    return ScheduledJobRegistry(queue=jobs.queue(redis)).get_job_ids()


def snapshot(redis) -> dict:
    """Every relay key and its contents, to show a second carry-over moves nothing."""
    found = {}
    for key in sorted(redis.scan_iter(match="relay:*")):
        kind = redis.type(key)
        if kind == b"zset":
            found[key] = redis.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            found[key] = redis.hgetall(key)
        elif kind == b"list":
            found[key] = redis.lrange(key, 0, -1)
        elif kind == b"string":
            found[key] = redis.get(key)
        else:
            found[key] = kind
    return found


def test_scheduled_jobs_and_leases_of_the_previous_version_move_where_they_are_taken_now(relay):
    redis = relay.redis
    retry_at, probe_at, sweep_at = int(time.time()) + 600, int(time.time()) + 60, int(time.time()) + 30
    retry = schedule_old_job(redis, jobs.RETRY, ["wms:s1:0", "crm", 2, 0], retry_at)
    probe = schedule_old_job(redis, jobs.PROBE, ["ops-slack"], probe_at)
    sweep = schedule_old_job(redis, jobs.SWEEP, [], sweep_at)
    lease = queues.member("wms:s2:0", "ops-email", 3, 1)
    lease_ends = time.time() + 45
    redis.zadd(keys.LEGACY_LEASES, {lease: lease_ends})
    redis.set(keys.LEGACY_SWEEPER, "1")
    assert sorted(scheduled_job_ids(redis)) == sorted([retry.id, probe.id, sweep.id])

    assert migrate.carry_over(relay.rt) == 4  # three jobs, one lease

    assert redis.zrange(keys.queue_key("crm"), 0, -1, withscores=True) == [
        (queues.member("wms:s1:0", "crm", 2, 0).encode(), float(retry_at))
    ]
    assert relay.timers() == {destination_state.probe_timer("ops-slack"): float(probe_at)}
    assert redis.zrange(keys.inflight_key("ops-email"), 0, -1, withscores=True) == [(lease.encode(), lease_ends)]
    assert not redis.exists(keys.LEGACY_LEASES)
    assert not redis.exists(keys.LEGACY_SWEEPER)
    assert scheduled_job_ids(redis) == []
    for job in (retry, probe, sweep):
        assert not Job.exists(job.id, connection=redis)
    assert relay.queue.count == 0  # nothing was run instead

    before = snapshot(redis)
    assert migrate.carry_over(relay.rt) == 0
    assert snapshot(redis) == before


def test_a_retry_job_from_before_deferrals_is_carried_over_with_none(relay):
    when = int(time.time()) + 120
    job = schedule_old_job(relay.redis, jobs.RETRY, ["wms:s1:0", "crm", 3], when)
    assert migrate.carry_over(relay.rt) == 1
    assert relay.redis.zrange(keys.queue_key("crm"), 0, -1, withscores=True) == [
        (queues.member("wms:s1:0", "crm", 3, 0).encode(), float(when))
    ]
    assert not Job.exists(job.id, connection=relay.redis)


def test_any_other_scheduled_job_is_queued_to_run_now(relay):
    job = schedule_old_job(relay.redis, jobs.ANNOUNCE, ["ops-slack is paused"], int(time.time()) + 300)
    assert migrate.carry_over(relay.rt) == 1
    assert scheduled_job_ids(relay.redis) == []
    assert relay.queue.job_ids == [job.id]


def test_a_retry_left_as_a_scheduled_job_is_delivered_once_after_the_carry_over(relay):
    (event,) = sample_session(("WMS_LOADED",))  # INFO: only the callback gets it
    event_id = f"wms:{event['sessionId']}:0"
    relay.http.script(CRM_PATH, Reply(500, b"down"))
    assert signed_post(relay.client, to_body(event)).status_code == 202
    relay.drain()
    assert [r.status for r in relay.http.requests] == [500]
    ((found_id, destination, number, deferrals, due_at),) = relay.scheduled()
    assert (found_id, destination, number, deferrals) == (event_id, "crm", 2, 0)

    # As the previous version left it: the state names attempt 2, the envelope is kept, and the
    # retry waits in RQ's scheduled registry instead of the destination's queue.
    redis = relay.redis
    assert redis.hget(keys.delivery_key(event_id), "crm") == b"2.0"
    assert redis.exists(keys.event_key(event_id))
    redis.zrem(keys.queue_key("crm"), queues.member(event_id, "crm", 2, 0))
    when = math.ceil(due_at)  # RQ keeps whole seconds; the previous version rounded up
    job = schedule_old_job(redis, jobs.RETRY, [event_id, "crm", 2, 0], when)
    relay.drain()
    assert len(relay.http.requests) == 1  # nothing takes it while it is an RQ scheduled job

    assert migrate.carry_over(relay.rt) == 1
    assert relay.scheduled() == [(event_id, "crm", 2, 0, float(when))]
    assert not Job.exists(job.id, connection=redis)
    assert relay.run_due_retries() == 1
    relay.drain()

    crm = relay.http.to(CRM_PATH)
    assert [r.status for r in crm] == [500, 200]
    assert crm[1].body == to_body(event)
    assert json.loads(crm[1].body) == event
    assert redis.hget(keys.delivery_key(event_id), "crm") == b"ok"
    assert relay.scheduled() == []
    assert redis.zcard(keys.queue_key("crm")) == redis.zcard(keys.inflight_key("crm")) == 0

    assert migrate.carry_over(relay.rt) == 0
    assert relay.run_due_retries() == 0
    relay.drain()
    assert len(relay.http.to(CRM_PATH)) == 2  # delivered once
