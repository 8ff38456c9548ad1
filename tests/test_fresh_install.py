"""A deployment's install, made fresh, then the Procfile's processes run from it (docs/deployment.md).

A new virtualenv gets requirements.txt with every file checked against its hash, and nothing
else: that is what Heroku's Python buildpack installs (the app then runs from its own directory),
and the Dockerfile's first layer. The Docker image then adds the relay itself without
dependencies and runs from an empty directory. In both, the Procfile's release check passes, and
the web and worker processes accept a signed POST (202) and deliver it to an HTTP receiver. The
processes see neither the development .venv nor its `relay` command.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from relay.domain.samples import sample_event, to_body
from relay.domain.signature import compute
from tests.conftest import CONFIG_ENV, SECRET
from tests.test_deploy_files import copied_by_the_dockerfile

pytestmark = pytest.mark.slow  # installs the lock into a new virtualenv, runs real processes

ROOT = Path(__file__).resolve().parent.parent
DEV_BIN = Path(sys.executable).parent


@pytest.fixture
def fresh(tmp_path) -> Path:
    """A new virtualenv holding requirements.txt's packages, installed with their hashes checked."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    # The suite's pip installs into it (`--python`): a virtualenv's own pip takes seconds to set up.
    install = pip(venv, "--require-hashes", "-r", str(ROOT / "requirements.txt"))
    assert install.returncode == 0, install.stderr
    return venv


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)


def environment(venv: Path, redis_url: str, config: Path) -> dict:
    """A platform's environment: the fresh virtualenv first on PATH, the development one nowhere."""
    path = [entry for entry in os.environ["PATH"].split(os.pathsep) if Path(entry) != DEV_BIN]
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(CONFIG_ENV, PATH=os.pathsep.join([str(venv / "bin"), *path]), PYTHONUNBUFFERED="1")
    env.update(REDIS_URL=redis_url, RELAY_CONFIG=str(config), BIND_HOST="127.0.0.1")
    return env


def start(kind: str, env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    """One Procfile process, through bash as a Procfile runner starts it, in its own process group."""
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    command = ["bash", "-c", procfile_command(kind)]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(check, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if result := check():
                return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{log.read_text()}")


def run_the_procfile(env: dict, cwd: Path, logs_in: Path, http_peer, session: str) -> None:
    """The release check from `cwd`, then web and worker: a signed POST is accepted and delivered."""
    env = dict(env, PORT=str(free_port()))
    logs_in.mkdir(exist_ok=True)
    release = subprocess.run(
        ["bash", "-c", procfile_command("release")], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert release.returncode == 0, f"release: {procfile_command('release')}\n{release.stdout}{release.stderr}"
    assert ": OK" in release.stdout, release.stdout
    logs = {kind: logs_in / f"{kind}.log" for kind in ("web", "worker")}
    processes = {kind: start(kind, env, cwd, log) for kind, log in logs.items()}
    try:
        url = f"http://127.0.0.1:{env['PORT']}"
        wait_for(lambda: requests.get(f"{url}/readyz", timeout=1).ok, 30, "the web process", logs["web"])
        body = to_body(sample_event("API_ERROR", session, 0, timestamp=int(time.time())))
        headers = {"Content-Type": "application/json", "X-WMS-Content-MAC": compute(SECRET, body)}
        accepted = requests.post(f"{url}/hooks/wms", data=body, headers=headers, timeout=5)
        assert (accepted.status_code, accepted.json()["id"]) == (202, f"wms:{session}:0"), accepted.text
        wait_for(lambda: http_peer.to("/in"), 30, "the worker's delivery", logs["worker"])
        assert [request.body for request in http_peer.to("/in")] == [body]
    finally:
        for process in processes.values():  # both at once, as a platform stops them
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        codes = {kind: process.wait(timeout=30) for kind, process in processes.items()}
    assert codes == {"web": 0, "worker": 0}, {kind: log.read_text() for kind, log in logs.items()}


@pytest.fixture
def config(tmp_path, http_peer) -> Path:
    """One source, and every event to an HTTP receiver on loopback."""
    path = tmp_path / "relay.yaml"
    path.write_text(
        'sources: {wms: {mac_secrets: ["${WMS_MAC_SECRET}"]}}\n'
        f'destinations: {{crm: {{type: http, url: "{http_peer.url}/in", signing_secret: s}}}}\n'
        "rules: [{name: all, match: {}, to: [crm]}]\n"
    )
    return path


def test_the_lock_installed_fresh_runs_the_procfile_as_heroku_does_then_as_the_image_does(
    fresh, config, redis, redis_server, http_peer, tmp_path
):
    env = environment(fresh, redis_server.url, config)
    # Heroku: the buildpack installs requirements.txt alone; the relay is imported from the app's
    # directory, and there is no `relay` command.
    assert not (fresh / "bin" / "relay").exists()
    run_the_procfile(env, ROOT, tmp_path / "heroku", http_peer, session="heroku")
    # The image: the files the Dockerfile copies (but the lock) installed without dependencies;
    # the processes run from a directory that holds none of the relay's files.
    source = tmp_path / "src"
    source.mkdir()
    for name in copied_by_the_dockerfile():
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif name != "requirements.txt":
            shutil.copy(ROOT / name, source / name)
    installed = pip(fresh, "--no-deps", str(source))
    assert installed.returncode == 0, installed.stderr
    assert (fresh / "bin" / "relay").exists()
    http_peer.requests.clear()
    run_the_procfile(env, tmp_path / "image", tmp_path / "image", http_peer, session="image")
