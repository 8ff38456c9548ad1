"""What `pip install .` ships: the relay, its workers, config and Lua scripts, and no development
tooling (devtools/, bench/, tests/)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # builds a wheel


def test_the_wheel_holds_the_product_and_none_of_the_development_tooling(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"config", "relay", "workers", "wsgi.py"}
    lua = {p.name for p in (ROOT / "relay" / "store" / "lua").glob("*.lua")}
    assert {name.rsplit("/", 1)[1] for name in names if name.startswith("relay/store/lua/")} == lua
    assert "config/relay.yaml" in names and "relay/web/app.py" in names and "workers/lanes.py" in names
