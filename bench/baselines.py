"""The WSGI apps the relay's ingest is compared with, served by the Procfile's own gunicorn line.

- `hello`: a bare Flask POST endpoint, the ceiling for any Flask app on these settings.
- `naive`: the straightforward relay: HMAC, JSON, SET NX for dedup, then `rq.enqueue`.
"""

import hashlib
import hmac
import json
import os

from flask import Flask, request
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench.workload import SECRET
from relay.domain import signature
from relay.domain.signature import HEADER

hello = Flask("hello")


@hello.post("/hooks/<source>")
def say_hello(source: str):
    return "hello"


naive = Flask("naive")
_redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
_queue = Queue("naive", connection=_redis, serializer=JSONSerializer)
_secret = SECRET.encode()


@naive.post("/hooks/<source>")
def naive_receive(source: str):
    body = request.get_data()
    expected = "hmac-sha256=" + hmac.new(_secret, signature.signed_bytes(body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get(HEADER, "")):
        return {"error": "unauthorized"}, 401
    event = json.loads(body)
    event_id = f"{source}:{event['sessionId']}:{event['sequence']}"
    if not _redis.set(f"naive:dedup:{event_id}", 1, nx=True, ex=86400):
        return {"status": "duplicate"}, 200
    _queue.enqueue("os.getpid", {"id": event_id, "body": body.decode()}, result_ttl=0)
    return {"status": "accepted", "id": event_id}, 202
