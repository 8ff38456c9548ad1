"""The parts the chaos soak (bench/chaos.py) breaks while the relay works: a Redis it can stop and
start again on the same port and data, receivers that journal what they get across their own
restarts, and the Procfile's workers under a supervisor that replaces one that dies."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from bench.processes import Process, children, wait_http
from devtools.local_redis import free_port, redis_server_binary
from devtools.procfile import procfile_command

RECEIVER_DELAY = 0.02  # seconds each receiver takes to answer: a send is in flight when a worker dies
# A worker's lanes, inbox reader and timers start right after it registers with RQ.
STARTUP_AFTER_REGISTERING = 2.0


class RestartableRedis:
    """A redis-server persisting as a deployment's does, stopped and started on one port and dir."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = workdir / "redis-data"
        self._dir.mkdir()
        self._log = workdir / "redis.log"
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self, timeout: float = 20) -> None:
        """Start it (loading its AOF) and wait until it answers PING."""
        self._process = subprocess.Popen(
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self._dir)),
                *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
                *("--maxmemory-policy", "noeviction", "--logfile", str(self._log)),
            ]
        )
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except RedisError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start; see {self._log}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (a clean shutdown: the AOF written and fsynced) or SIGKILL (a crash)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self._process.wait(30)


class Receiver:
    """One `python -m bench.sink` on a port of its own, journalling to a file that outlives it."""

    def __init__(self, name: str, workdir: Path, smtp_port: int | None = None):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.journal = workdir / f"received-{name}.jsonl"
        self._workdir = workdir
        self._smtp = f" --smtp-port {smtp_port}" if smtp_port else ""
        self._starts = 0
        self.process: Process | None = None

    def start(self, wait: bool = True) -> None:
        command = f"python -m bench.sink {self.port} --journal {self.journal} --delay {RECEIVER_DELAY}{self._smtp}"
        self.process = Process(command, {}, self._workdir / f"receiver-{self.name}-{self._starts}.log")
        self._starts += 1
        if wait:
            self.wait()

    def wait(self) -> None:
        """Until it answers."""
        assert self.process is not None
        wait_http(self.url + "/count", self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def received(self) -> list[tuple[str, str, float, int]]:
        """Every request journalled: [path, event id, unix time of arrival, status]."""
        if not self.journal.exists():
            return []
        lines = self.journal.read_text().splitlines()
        return [(path, event_id, at, status) for path, event_id, at, status in map(json.loads, filter(None, lines))]


class Workers:
    """The Procfile's worker processes under a supervisor: one that dies is replaced."""

    def __init__(self, env: dict, workdir: Path, count: int, restart_delay: float):
        self._env, self._workdir, self._restart_delay = env, workdir, restart_delay
        self._lock = threading.Lock()
        self._started = 0
        self.unexpected_exits: list[dict] = []
        self.processes = [self._start() for _ in range(count)]

    def _start(self) -> Process:
        self._started += 1
        return Process(procfile_command("worker"), self._env, self._workdir / f"worker-{self._started}.log")

    def kill_one(self) -> dict:
        """SIGKILL the first worker, as the kernel's OOM killer or a lost host would, and replace it."""
        with self._lock:
            victim = self.processes.pop(0)
        os.killpg(victim.pid, signal.SIGKILL)
        code = victim.popen.wait(10)
        killed_at = time.time()
        time.sleep(self._restart_delay)
        with self._lock:
            replacement = self._start()
            self.processes.append(replacement)
        gone = not Path(f"/proc/{victim.pid}").exists()
        victim.stop()  # closes its log
        return {"pid": victim.pid, "returncode": code, "at": killed_at, "gone": gone, "replacement": replacement.pid}

    def wait_started(self, redis: Redis, pid: int, timeout: float) -> bool:
        """Wait until the worker `pid` has registered with RQ, and then for its start-up to end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(w.pid == pid for w in Worker.all(connection=redis)):
                time.sleep(STARTUP_AFTER_REGISTERING)
                return True
            time.sleep(0.1)
        return False

    def supervise(self) -> None:
        """Replace any worker that exited by itself (none should)."""
        with self._lock:
            for i, process in enumerate(self.processes):
                if process.popen.poll() is not None:
                    self.unexpected_exits.append(
                        {"pid": process.pid, "returncode": process.popen.returncode, "at": time.time()}
                    )
                    process.stop()
                    self.processes[i] = self._start()

    def stop(self) -> None:
        stop_all(self.processes)


def stop_all(processes: list[Process]) -> None:
    """Stop them all at once (a warm shutdown each, SIGKILL after 20 s)."""
    threads = [threading.Thread(target=p.stop) for p in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a running process and its running descendants (gunicorn's workers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return round(own + sum(cpu_seconds(child) for child in children(pid)), 1)
