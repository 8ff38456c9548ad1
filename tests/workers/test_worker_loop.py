"""The worker's RQ loop rides out a Redis outage instead of quitting (found by bench/chaos.py), and
says so once for the whole outage."""

import logging
import re

import pytest
from rq.exceptions import DequeueTimeout
from rq.serializers import JSONSerializer

from config.secret import Secret
from devtools.local_redis import LocalRedis
from relay.store import jobs
from relay.store.connection import connect
from workers import __main__ as worker_main

pytestmark = pytest.mark.slow  # a redis-server of its own, stopped under the worker


def test_rqs_own_steps_log_and_go_on_while_redis_is_down(monkeypatch, caplog):
    monkeypatch.setattr(worker_main, "REDIS_ERROR_PAUSE", 0)
    caplog.set_level(logging.DEBUG, logger="workers")
    server = LocalRedis().start()
    try:
        redis = connect(Secret(server.url))
        worker = worker_main._Worker([jobs.QUEUE_NAME], connection=redis, serializer=JSONSerializer)
        (queue,) = worker.queues
        worker.register_birth()
        job = queue.enqueue("builtins.len", [1, 2])
        server.stop()
        # Each raised redis.exceptions.ConnectionError before, and RQ's loop quit on it.
        worker.check_for_suspension(False)
        worker.run_maintenance_tasks()
        worker.heartbeat()
        worker.execute_job(job, queue)
        # RQ's own wait for a job logged each failed try at ERROR, backing off to a minute.
        with pytest.raises(DequeueTimeout):
            worker.queue_class.dequeue_any([queue], 1, connection=redis, serializer=JSONSerializer)
        for step in ("checking for `rq suspend`", "RQ's maintenance", "RQ's heartbeat", f"running job {job.id}"):
            assert f"{step} failed: " in caplog.text  # at DEBUG
        server = LocalRedis(port=server.port).start()
        worker.heartbeat()  # and when it is back, they work again
        worker.run_maintenance_tasks()
        assert redis.ping()
    finally:
        server.stop()
    said = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name.startswith("workers") and r.levelno >= logging.INFO
    ]
    assert said == [
        (
            "WARNING",
            f"redis unreachable: redis at 127.0.0.1:{server.port} is unreachable (connection refused); retrying",
        ),
        ("WARNING", said[1][1]),
    ]
    assert re.fullmatch(r"redis reachable again after \d+\.\d s \(5 failed tries\)", said[1][1]), said[1][1]
