"""Fixtures on real parts: a private redis-server, the real app factory, signed requests."""

import textwrap

import pytest

from config.loader import load_config
from config.settings import Settings
from relay.app import create_app
from relay.local_redis import LocalRedis
from relay.redis_conn import connect
from relay.signature import compute
from tests.peers import HttpPeer, SmtpPeer

SECRET = "test-mac-secret"
PREVIOUS_SECRET = "test-previous-secret"
CONFIG_YAML = """
sources:
  wms:
    mac_secrets: ["${WMS_MAC_SECRET}", "${WMS_MAC_SECRET_PREVIOUS}"]
"""
CONFIG_ENV = {"WMS_MAC_SECRET": SECRET, "WMS_MAC_SECRET_PREVIOUS": PREVIOUS_SECRET}


@pytest.fixture(scope="session")
def redis_server():
    """One private redis-server for the whole run: nothing else on the machine is touched."""
    with LocalRedis() as server:
        yield server


@pytest.fixture
def redis(redis_server):
    """A client of the private server, flushed before and after each test."""
    client = connect(Settings.from_env({"REDIS_URL": redis_server.url}).redis_url)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def config_path(tmp_path):
    """The test config file: one source, 'wms', with a current and a previous MAC secret."""
    path = tmp_path / "relay.yaml"
    path.write_text(textwrap.dedent(CONFIG_YAML))
    return path


@pytest.fixture
def settings(redis_server, config_path):
    """Settings as the processes would read them from the environment."""
    return Settings.from_env({"REDIS_URL": redis_server.url, "RELAY_CONFIG": str(config_path)})


@pytest.fixture
def relay_config(settings):
    """The loaded test config."""
    return load_config(settings.config_path, CONFIG_ENV, settings)


@pytest.fixture
def app(settings, relay_config, redis):
    """The real app on the private Redis."""
    return create_app(settings, relay_config, redis)


@pytest.fixture
def client(app):
    """Flask's test client for `app`."""
    return app.test_client()


def signed_post(client, body: bytes, secret: str = SECRET, source: str = "wms", headers: dict | None = None):
    """POST `body` to /hooks/<source> with the X-WMS-Content-MAC that WMS would send."""
    all_headers = {"Content-Type": "application/json", "X-WMS-Content-MAC": compute(secret, body)}
    all_headers.update(headers or {})
    return client.post(f"/hooks/{source}", data=body, headers=all_headers)


@pytest.fixture
def http_peer():
    """A recording HTTP server on 127.0.0.1 standing in for Slack and for callbacks."""
    peer = HttpPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def smtp_peer():
    """A real SMTP server (aiosmtpd) on 127.0.0.1."""
    peer = SmtpPeer().start()
    yield peer
    peer.stop()
