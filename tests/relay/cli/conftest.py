"""Fixtures of the `relay` command's tests."""

import threading

import pytest
from werkzeug.serving import make_server

from devtools.local_redis import free_port


@pytest.fixture
def live_url(app):
    """The real app behind a real HTTP server on 127.0.0.1."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    # a short poll: shutdown() otherwise waits up to half a second for serve_forever to look
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
