"""The fan-out job, run by a real RQ SimpleWorker on jobs queued through the real app."""

import json
import subprocess
import sys
import time
import zlib

from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from relay.inbox import QUEUE_NAME
from relay.samples import COMPLETED_SESSION, sample_session, to_body
from tests.conftest import signed_post
from workers.fanout import REACHED_WORKER_KEY


def drain(redis):
    """Run every queued job in this process, as the Procfile's worker would."""
    queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    return queue


def test_every_accepted_event_reaches_a_worker_once(client, redis):
    events = sample_session(COMPLETED_SESSION)
    for event in events:
        assert signed_post(client, to_body(event)).status_code == 202
    assert signed_post(client, to_body(events[0])).status_code == 200  # a duplicate is not queued
    queue = drain(redis)
    assert int(redis.get(REACHED_WORKER_KEY)) == len(events)
    assert queue.count == 0
    assert FailedJobRegistry(queue=queue).count == 0


def test_a_job_whose_body_does_not_match_its_id_fails_loudly(redis):
    queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
    body = to_body({"timestamp": int(time.time()), "sessionId": "s", "sequence": 1, "severity": "INFO", "event": "X"})
    job = queue.enqueue("workers.fanout.fan_out", {"id": "wms:s:2", "source": "wms", "received_at": 0, "body": body.decode()})
    drain(redis)
    assert FailedJobRegistry(queue=queue).get_job_ids() == [job.id]
    assert "envelope id 'wms:s:2' does not match its body's event id 'wms:s:1'" in job.fetch(job.id, connection=redis, serializer=JSONSerializer).latest_result().exc_string
    assert redis.get(REACHED_WORKER_KEY) is None


def test_the_queued_envelope_is_versioned_plain_json(client, redis):
    (event,) = sample_session(("WMS_LOADED",))
    signed_post(client, to_body(event))
    # The raw hash, as another process would read it: JSON, not pickle.
    (job_key,) = redis.keys("rq:job:*")
    func, _instance, args, kwargs = json.loads(zlib.decompress(redis.hget(job_key, "data")))
    assert (func, kwargs) == ("workers.fanout.fan_out", {})
    (envelope,) = args
    assert sorted(envelope) == ["body", "id", "received_at", "source", "v"]
    assert (envelope["v"], envelope["id"], envelope["body"]) == (1, f"wms:{event['sessionId']}:0", to_body(event).decode())


def test_the_worker_side_does_not_load_flask():
    # Only the web modules import Flask (STYLE: one-way imports, web-only Flask).
    code = "import sys, workers.__main__, workers.fanout; print('flask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
