"""What a worker logs at INFO: one line per delivery attempt and per event that matched no rule,
each with its fields (event id, source, destination, attempt, outcome, status, duration), and
nothing at all while it is idle: sweeps, timers, heartbeats and RQ's maintenance are DEBUG."""

import json
import logging
import re

import pytest
from rq.serializers import JSONSerializer

from relay import logs
from relay.domain.samples import sample_session, to_body
from relay.store import jobs, keys
from tests.conftest import FANOUT_YAML, signed_post
from tests.peers import Reply
from tests.workers.test_end_to_end import CRM_PATH
from workers import __main__ as worker_main
from workers import timers
from workers.drain import Drain
from workers.timers import TICK, Heartbeat

OURS = ("workers", "relay", "rq", "config")


def as_json(record: logging.LogRecord) -> dict:
    return json.loads(logs.JsonFormatter().format(record))


def test_each_attempt_is_one_line_with_its_fields(relay, caplog):
    caplog.set_level(logging.INFO, logger="workers")
    relay.http.script(CRM_PATH, Reply(503, b"busy"))
    (event,) = sample_session(("WMS_LOADED",))  # INFO: to the callback only
    event_id = f"wms:{event['sessionId']}:0"
    assert signed_post(relay.client, to_body(event)).status_code == 202
    relay.drain()
    assert relay.run_due_retries() == 1
    relay.drain()
    failed, delivered = (as_json(r) for r in caplog.records if r.name == "workers.delivery")
    fields = ("level", "event_id", "source", "destination", "attempt", "outcome", "status", "next")
    assert {k: failed[k] for k in fields} == {
        "level": "WARNING",
        "event_id": event_id,
        "source": "wms",
        "destination": "crm",
        "attempt": 1,
        "outcome": "transient",
        "status": "HTTP 503",
        "next": "retry",
    }
    assert failed["message"].startswith(f"{event_id} -> crm attempt 1: transient (HTTP 503) in ")
    assert failed["message"].endswith(f"; retrying in {failed['retry_in']:.0f}s")
    assert {k: delivered[k] for k in fields} == {
        **{k: failed[k] for k in fields},
        "level": "INFO",
        "attempt": 2,
        "outcome": "ok",
        "status": "HTTP 200",
        "next": "delivered",
    }
    assert re.fullmatch(rf"{event_id} -> crm attempt 2: ok \(HTTP 200\) in \d+\.\d{{3}} s", delivered["message"])
    assert all(isinstance(r["duration_ms"], float) for r in (failed, delivered))


def test_an_event_that_matches_no_rule_is_one_info_line(relay_factory, caplog):
    caplog.set_level(logging.INFO)
    relay = relay_factory(FANOUT_YAML.replace("match: {}", "match: {severity: [ERROR]}"))
    (event,) = sample_session(("WMS_LOADED",))
    assert signed_post(relay.client, to_body(event)).status_code == 202
    caplog.clear()
    relay.drain()
    (line,) = [as_json(r) for r in caplog.records if r.name.startswith(OURS) and r.levelno >= logging.INFO]
    event_id = f"wms:{event['sessionId']}:0"
    assert line == {
        "time": line["time"],
        "level": "INFO",
        "logger": "workers.fanout",
        "message": f"{event_id} (WMS_LOADED, INFO) matches no rule; not delivered anywhere",
        "event_id": event_id,
        "source": "wms",
        "outcome": "no_rule",
    }


@pytest.fixture
def rq_routine_demoted():
    """RQ's routine lines at DEBUG, as `python -m workers` sets them."""
    logs.demote_to_debug("rq.worker", worker_main.RQ_ROUTINE)
    yield
    logging.getLogger("rq.worker").filters.clear()


def test_an_idle_worker_says_nothing_at_info_for_a_simulated_minute(relay, caplog, rq_routine_demoted):
    """Every part of `python -m workers` run as its threads would over 60 s with nothing to do:
    the ticker every TICK, the dead-letter expiry and the inbox's maintenance every sweep_every
    (15 s), the heartbeat every 5 s, RQ's loop with its maintenance; made due by hand, not waited."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="rq.worker")  # as LOG_LEVEL=DEBUG sets it: its routine lines seen
    rt = relay.rt
    timers.ensure(rt)
    reader = Drain(rt, name="idle")
    reader.ensure_group()
    heartbeat = Heartbeat(rt)
    worker = worker_main._Worker(
        [jobs.QUEUE_NAME], connection=relay.redis, serializer=JSONSerializer, maintenance_interval=60, outage=rt.outage
    )
    worker.register_birth()
    ticks, timers_run, reads = int(60 / TICK), 0, 0
    for n in range(ticks):
        if n % int(rt.config.operations.sweep_every / TICK) == 0:  # a sweep is due
            relay.redis.zadd(keys.DUE, dict.fromkeys(relay.redis.zrange(keys.DUE, 0, -1), 0))
            reader._next_maintenance = 0.0
        timers_run += timers.tick(rt)
        reads += reader.step(block_ms=None) == 0
        for lane in list(rt.lanes.values()):
            lane.take()
        if n % int(5 / TICK) == 0:
            assert heartbeat.beat()
        worker.check_for_suspension(False)
        if n == 0:
            worker.run_maintenance_tasks()
        assert worker.dequeue_job_and_maintain_ttl(None) is None
    # It did run: every sweep's timer, every read, RQ's maintenance (its lines now at DEBUG).
    assert timers_run == 60 // rt.config.operations.sweep_every and reads == ticks
    assert any(r.name == "rq.worker" and "cleaning registries" in r.getMessage() for r in caplog.records)
    loud = [
        f"{r.name}: {r.getMessage()}" for r in caplog.records if r.name.startswith(OURS) and r.levelno > logging.DEBUG
    ]
    assert loud == []
