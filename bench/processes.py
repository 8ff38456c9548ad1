"""The processes a benchmark runs: the Procfile's own command lines, a private Redis, a sink.

Every command comes from the Procfile, so the relay is measured as it is deployed; a baseline
app differs from the relay only by the WSGI target handed to the same gunicorn line.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from devtools.procfile import procfile_command

ROOT = Path(__file__).resolve().parent.parent


def web_command(wsgi_target: str = "wsgi:app") -> str:
    """The Procfile's web line, serving `wsgi_target` instead of the relay when asked."""
    command = procfile_command("web")
    if not command.endswith(" wsgi:app"):
        raise ValueError(f"cannot find the WSGI target at the end of the Procfile's web line: {command!r}")
    return command[: -len("wsgi:app")] + wsgi_target


class Process:
    """One shell command run like a Procfile process, in its own process group."""

    def __init__(self, command: str, env: dict, log_path: Path):
        self.command = command
        self.log_path = log_path
        bin_dir = str(Path(sys.executable).parent)
        full_env = {**os.environ, **env, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop(), with the process
        self.popen = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.command!r} exited with {self.popen.returncode}:\n{tail}")


def wait_http(url: str, process: Process, timeout: float = 30) -> None:
    """Wait until `url` answers at all."""
    deadline = time.monotonic() + timeout
    while True:
        process.check_alive()
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout}s") from None
            time.sleep(0.1)


def rss_kib(pid: int) -> int:
    """Resident set size of one process, from /proc."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1))


def children(pid: int) -> list[int]:
    """The child processes of `pid` (gunicorn's workers, the shell's command)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []
