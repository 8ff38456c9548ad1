"""`./dev up` (`python -m devtools.up`): the Procfile's web and worker on this machine, with a
private Redis if need be. Development tooling: not part of the installed package."""

import argparse
import contextlib
import errno
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from devtools.local_redis import LocalRedis, free_port, redis_server_binary
from devtools.procfile import procfile_command
from devtools.sinks import DevSinks, print_lock

if TYPE_CHECKING:  # the relay's modules load in main(), once a Ctrl-C no longer interrupts
    from config.model import RelayConfig
    from config.settings import Settings

# While `./dev up` runs, this file tells `./dev relay ...` and `./dev send-sample` which Redis and
# port to use, so they work in another terminal without exporting anything. RELAY_DEV_STATE moves
# it (the tests do, so as not to disturb a developer's running `./dev up`).
DEFAULT_STATE_FILE = ".relay/dev.env"

NO_REDIS_SERVER = "dev: no redis-server found: install one (sudo apt-get install redis-server) or set REDIS_URL"


class Stop:
    """Whether `./dev up` was asked to stop: Ctrl-C (SIGINT), SIGTERM, or its terminal closing.

    The handlers only take note, so a signal never interrupts a start half-way (no
    KeyboardInterrupt); what has started is then stopped in order, the private Redis last.
    """

    def __init__(self) -> None:
        self.requested: int | None = None

    def install(self) -> None:
        """Take note of SIGINT, SIGTERM and SIGHUP from now on."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # A second Ctrl-C changes nothing: what has not stopped KILL_AFTER seconds after the
        # first is killed anyway.
        if self.requested is None:
            self.requested = signum


# What has not stopped this long after its SIGTERM is killed (honcho's KILL_WAIT).
KILL_AFTER = 5.0
_COLOURS = ["36", "33", "32", "35"]  # honcho's: cyan, yellow, green, magenta


class Processes:
    """The Procfile's processes, run as a platform runs them (`bash -c` the line), stopped in order.

    Each runs in a session of its own, so a Ctrl-C at the terminal reaches only `./dev up`, which
    then sends each a SIGTERM, once, and waits until its output has ended (the process and its
    children have exited) before anything they use is stopped. Their output is printed line by
    line, prefixed with the time and their name, as honcho printed it. (honcho ran them before:
    told to stop before it had seen every process start, it died on a KeyError and left `./dev up`
    hanging.)
    """

    def __init__(self, commands: dict[str, str], env: dict[str, str]) -> None:
        self._commands = commands
        self._env = env
        self._running: dict[str, tuple[subprocess.Popen[bytes], threading.Thread]] = {}
        self._width = max(len(name) for name in [*commands, "system"])
        self._colours = dict(zip(commands, itertools.cycle(_COLOURS))) if sys.stdout.isatty() else {}

    def run(self, stop: Stop) -> int:
        """Start them; when a stop is asked for or one of them ends, stop them all. 0 for a stop
        asked for, 1 for a process that ended on its own."""
        try:
            for name, command in self._commands.items():
                if stop.requested is None:
                    self._start(name, command)
            while stop.requested is None and all(p.poll() is None for p, _ in self._running.values()):
                time.sleep(0.1)
        finally:
            self._stop_all()
        return 0 if stop.requested is not None else 1

    def _start(self, name: str, command: str) -> None:
        process = subprocess.Popen(
            ["bash", "-c", command],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        reader = threading.Thread(target=self._relay, args=(name, process), daemon=True)
        self._running[name] = (process, reader)
        self._say("system", f"{name} started (pid={process.pid})")
        reader.start()

    def _relay(self, name: str, process: "subprocess.Popen[bytes]") -> None:
        assert process.stdout is not None  # stdout=PIPE
        with process.stdout:
            # Until every process of the group has closed it: the end of the output is the end
            # of the process and of the children it started (gunicorn's workers).
            for line in process.stdout:
                self._say(name, line.decode(errors="replace").rstrip())
        self._say("system", f"{name} stopped (rc={process.wait()})")

    def _stop_all(self) -> None:
        deadline = time.monotonic() + KILL_AFTER
        for signum in (signal.SIGTERM, signal.SIGKILL):
            left = [
                (name, process, reader)
                for name, (process, reader) in self._running.items()
                if reader.is_alive() or process.poll() is None
            ]
            for name, process, _ in left:
                self._say("system", f"sending {signal.Signals(signum).name} to {name} (pid {process.pid})")
                # To its whole group: the process and the children it started.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signum)
            for _, _, reader in left:
                reader.join(max(0.0, deadline - time.monotonic()))
            deadline = time.monotonic() + KILL_AFTER

    def _say(self, name: str, line: str) -> None:
        prefix = f"{datetime.now():%H:%M:%S} {name.ljust(self._width)} | "
        if name in self._colours:
            prefix = f"\033[0m\033[{self._colours[name]}m{prefix}\033[0m"
        # A closed terminal must not end the reading: a process whose output is not read blocks.
        with print_lock, contextlib.suppress(OSError):
            print(prefix + line, flush=True)


def say(message: str, err: bool = False) -> None:
    """Print one message of `./dev up` itself, at once (stdout may be a pipe)."""
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def port_problem(port: int) -> str | None:
    """Why the web process could not listen on 127.0.0.1:`port`, as one line; None if it could."""
    try:
        _bind(port)
    except OSError as exc:
        nearby = next((p for p in range(port + 1, min(port + 100, 65536)) if _can_bind(p)), None)
        how = f"set PORT to another port, e.g. PORT={nearby or free_port()} ./dev up"
        if exc.errno == errno.EADDRINUSE:
            return f"dev: port {port} is in use; {how}"
        return f"dev: cannot listen on 127.0.0.1:{port} ({exc.strerror}); {how}"
    return None


def _bind(port: int) -> None:
    with socket.socket() as s:
        # As gunicorn does: a port whose last connections linger in TIME_WAIT is free to it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def _can_bind(port: int) -> bool:
    try:
        _bind(port)
    except OSError:
        return False
    return True


def start_sinks() -> DevSinks:
    """Start the local Slack/callback and SMTP sinks and point the environment at them.

    Done before the config is loaded, since config/relay.dev.yaml names them through
    DEV_SINK_URL and SMTP_URL. A SMTP_URL or EMAIL_FROM of your own is kept.
    """
    sinks = DevSinks(free_port(), free_port()).start()
    os.environ["DEV_SINK_URL"] = sinks.http_url
    os.environ.setdefault("SMTP_URL", sinks.smtp_url)
    os.environ.setdefault("EMAIL_FROM", "relay@example.com")
    return sinks


def run_dev(settings: "Settings", config: "RelayConfig", procfile: str, sinks: DevSinks, stop: Stop) -> int:
    """Run web and worker until stopped, then the private Redis is stopped; return the exit code."""
    # The Procfile's commands (gunicorn, python) must come from this interpreter's environment;
    # BIND_HOST keeps the dev server, and its public dev secret, off the network.
    bin_dir = os.path.dirname(sys.executable)
    env = dict(
        os.environ,
        PORT=str(settings.port),
        PYTHONUNBUFFERED="1",
        BIND_HOST="127.0.0.1",
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    mail = f"mail at {sinks.smtp_url}" if os.environ["SMTP_URL"] == sinks.smtp_url else "mail to your SMTP_URL"
    say(f"local sinks: Slack and callbacks at {sinks.http_url}, {mail}")
    local = None
    if settings.redis_url is None:
        try:
            local = LocalRedis(own_session=True).start()
        except RuntimeError as exc:
            say(f"dev: the private Redis did not start: {exc}", err=True)
            return 1
        env["REDIS_URL"] = local.url
        say(f"REDIS_URL is unset: started a private Redis at {local.url} (its data goes when this stops)")
    state_file = Path(os.environ.get("RELAY_DEV_STATE", DEFAULT_STATE_FILE))
    try:
        if stop.requested is not None:
            return 0
        # Like REDIS_URL, an SMTP_URL of your own (it may hold a password) is not written down.
        shared = {"DEV_SINK_URL": sinks.http_url, "EMAIL_FROM": os.environ["EMAIL_FROM"]}
        if os.environ["SMTP_URL"] == sinks.smtp_url:
            shared["SMTP_URL"] = sinks.smtp_url
        _write_state(state_file, {**({"REDIS_URL": local.url} if local else {}), **shared}, settings.port)
        say(
            f"\nThe relay listens on http://127.0.0.1:{settings.port}/hooks/<source> "
            f"(sources: {', '.join(config.sources)}).\n"
            "Send a signed sample event from another terminal:  ./dev send-sample\n"
            + (
                f"The dashboard: http://127.0.0.1:{settings.port}/admin/ui/ (log in with RELAY_ADMIN_TOKEN).\n"
                if settings.admin_token
                else ""
            )
            + "Stop with Ctrl-C.\n"
        )
        commands = {kind: procfile_command(kind, Path(procfile)) for kind in ("web", "worker")}
        return Processes(commands, env).run(stop)
    finally:
        state_file.unlink(missing_ok=True)
        if local is not None:
            local.stop()
            say("stopped the private Redis")


def _write_state(path: Path, values: dict[str, str], port: int) -> None:
    # Only the private Redis's URL is written (a REDIS_URL of your own may hold a password), and
    # the file is readable by its owner only.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{key}={value}\n" for key, value in {**values, "PORT": port}.items())


def main(argv: list[str] | None = None) -> int:
    """Run the Procfile's web and worker locally; start a private Redis when REDIS_URL is unset."""
    parser = argparse.ArgumentParser(prog="./dev up", description=main.__doc__)
    parser.add_argument("--procfile", default="Procfile")
    args = parser.parse_args(argv)
    stop = Stop()
    stop.install()
    # Most of a second of imports: only now, so that a Ctrl-C meanwhile is taken note of rather
    # than a KeyboardInterrupt's traceback.
    from config.errors import ConfigError
    from config.loader import load

    sinks = start_sinks()
    try:
        try:
            settings, config = load(tool=True)
        except ConfigError as exc:
            say(str(exc), err=True)
            return 1
        # Said before anything starts, in one line each, rather than as the web process's retries
        # or a traceback.
        problem = port_problem(settings.port)
        if problem is None and settings.redis_url is None:
            try:
                redis_server_binary()
            except RuntimeError:
                problem = NO_REDIS_SERVER
        if problem is not None:
            say(problem, err=True)
            return 1
        if stop.requested is not None:
            return 0
        return run_dev(settings, config, args.procfile, sinks, stop)
    finally:
        sinks.stop()


if __name__ == "__main__":
    sys.exit(main())
