"""The worker's RQ loop rides out a Redis outage instead of quitting (found by bench/chaos.py)."""

import logging

import pytest
from rq.serializers import JSONSerializer

from config.secret import Secret
from devtools.local_redis import LocalRedis
from relay.store import jobs
from relay.store.connection import connect
from workers import __main__ as worker_main

pytestmark = pytest.mark.slow  # a redis-server of its own, stopped under the worker


def test_rqs_own_steps_log_and_go_on_while_redis_is_down(monkeypatch, caplog):
    monkeypatch.setattr(worker_main, "REDIS_ERROR_PAUSE", 0)
    caplog.set_level(logging.WARNING, logger="workers")
    server = LocalRedis().start()
    try:
        redis = connect(Secret(server.url))
        queue = jobs.queue(redis)
        worker = worker_main._Worker([queue], connection=redis, serializer=JSONSerializer)
        worker.register_birth()
        job = queue.enqueue("builtins.len", [1, 2])
        server.stop()
        # Each raised redis.exceptions.ConnectionError before, and RQ's loop quit on it.
        worker.check_for_suspension(False)
        worker.run_maintenance_tasks()
        worker.heartbeat()
        worker.execute_job(job, queue)
        for step in ("checking for `rq suspend`", "RQ's maintenance", "RQ's heartbeat", f"running job {job.id}"):
            assert f"{step} failed, Redis is unreachable (" in caplog.text
        server = LocalRedis(port=server.port).start()
        worker.heartbeat()  # and when it is back, they work again
        worker.run_maintenance_tasks()
        assert redis.ping()
    finally:
        server.stop()
