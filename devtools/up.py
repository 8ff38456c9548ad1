"""`./dev up` (`python -m devtools.up`): the Procfile's web and worker on this machine, with a
private Redis if need be. Development tooling: not part of the installed package."""

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

import click

from config.errors import ConfigError
from config.loader import load
from config.model import RelayConfig
from config.settings import Settings
from devtools.local_redis import LocalRedis, free_port
from devtools.sinks import DevSinks

# While `./dev up` runs, this file tells `./dev relay ...` and `./dev send-sample` which Redis and
# port to use, so they work in another terminal without exporting anything. RELAY_DEV_STATE moves
# it (the tests do, so as not to disturb a developer's running `./dev up`).
DEFAULT_STATE_FILE = ".relay/dev.env"


def start_sinks() -> DevSinks:
    """Start the local Slack/callback and SMTP sinks and point the environment at them.

    Done before the config is loaded, since config/relay.dev.yaml names them through
    DEV_SINK_URL and SMTP_URL. A SMTP_URL or EMAIL_FROM of your own is kept.
    """
    sinks = DevSinks(free_port(), free_port()).start()
    os.environ["DEV_SINK_URL"] = sinks.http_url
    os.environ.setdefault("SMTP_URL", sinks.smtp_url)
    os.environ.setdefault("EMAIL_FROM", "relay@example.com")
    click.echo(f"local sinks: Slack and callbacks at {sinks.http_url}, mail at {sinks.smtp_url}")
    return sinks


def run_dev(settings: Settings, config: RelayConfig, procfile: str, sinks: DevSinks) -> int:
    """Run web and worker under honcho until stopped; return the exit code."""
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
    local = None
    if settings.redis_url is None:
        local = LocalRedis().start()
        env["REDIS_URL"] = local.url
        click.echo(f"REDIS_URL is unset: started a private Redis at {local.url} (its data goes when this stops)")
    state_file = Path(os.environ.get("RELAY_DEV_STATE", DEFAULT_STATE_FILE))
    # Like REDIS_URL, an SMTP_URL of your own (it may hold a password) is not written down.
    shared = {"DEV_SINK_URL": sinks.http_url, "EMAIL_FROM": os.environ["EMAIL_FROM"]}
    if os.environ["SMTP_URL"] == sinks.smtp_url:
        shared["SMTP_URL"] = sinks.smtp_url
    _write_state(state_file, {**({"REDIS_URL": local.url} if local else {}), **shared}, settings.port)
    click.echo(
        f"\nThe relay listens on http://127.0.0.1:{settings.port}/hooks/<source> "
        f"(sources: {', '.join(config.sources)}).\n"
        "Send a signed sample event from another terminal:  ./dev send-sample\n"
        "Stop with Ctrl-C.\n"
    )
    # honcho stops every process when one exits; SIGINT or SIGTERM to us is passed on to it,
    # so Ctrl-C and a supervisor's stop both end web, worker and the private Redis.
    honcho = subprocess.Popen([sys.executable, "-m", "honcho", "-f", procfile, "start", "web", "worker"], env=env)
    stop_requested = []

    def forward(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)
        honcho.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        # A stop we were asked for is success; a process that died on its own is not.
        return 0 if honcho.wait() == 0 or stop_requested else 1
    finally:
        state_file.unlink(missing_ok=True)
        if local is not None:
            local.stop()
            click.echo("stopped the private Redis")


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
    sinks = start_sinks()
    try:
        try:
            settings, config = load(tool=True)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            return 1
        return run_dev(settings, config, args.procfile, sinks)
    finally:
        sinks.stop()


if __name__ == "__main__":
    sys.exit(main())
