"""The worker's shared HTTP session: one pool, as wide as the sends that can be in flight."""

import logging
import threading

from tests.conftest import FANOUT_YAML
from tests.peers import Reply

# Two callback destinations on one host, 16 sends each at a time: 32 connections to one host.
WIDE = FANOUT_YAML.replace("    timeout: 2s\n", "    timeout: 2s\n    concurrency: 16\n").replace(
    "destinations:\n",
    'destinations:\n  audit: {type: http, url: "%(http)s/audit", signing_secret: "%(crm_secret)s", concurrency: 16}\n',
)


def test_as_many_sends_as_the_destinations_allow_keep_their_connections(relay_factory, caplog):
    # Issue 11, #9: requests keeps 10 connections per host; with 32 sends in flight urllib3 logged
    # "Connection pool is full, discarding connection" and opened a new connection per send.
    relay = relay_factory(WIDE)
    relay.http.script("/audit", *[Reply(delay=0.3)] * 64)
    session = relay.rt.http
    assert session is not None
    caplog.set_level(logging.WARNING, logger="urllib3")

    def send_twice():
        for _ in range(2):
            assert session.post(f"{relay.http.url}/audit", data=b"{}", timeout=5).status_code == 200

    threads = [threading.Thread(target=send_twice) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(relay.http.to("/audit")) == 64  # what the pool is for happened
    assert "Connection pool is full" not in caplog.text
    pool = session.get_adapter("http://").poolmanager.connection_from_url(relay.http.url)
    assert pool.num_connections <= 32  # each connection was kept and reused, none discarded
