"""The benchmark harness stays runnable: a smoke run of its delivery part, and its open-loop
generator against a real server. The figures themselves are not checked: only `./dev bench` on
a quiet machine says anything about them (README "Performance")."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import open_loop
from bench.processes import ROOT, web_command


class _Answer(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        status = 202 if self.headers["X-WMS-Content-MAC"] == "good" else 401
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_open_loop_generator_sends_on_schedule_and_counts_every_answer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        bodies = [("good", b"{}")] * 150 + [("bad", b"{}")] * 50
        result = open_loop("127.0.0.1", server.server_address[1], "/hooks/wms", bodies, rate=200, duration=1)
    finally:
        server.shutdown()
    assert (result.sent, result.statuses, result.errors) == (200, {202: 150, 401: 50}, 0)
    assert len(result.latencies) == 200 and 0 < result.percentile(50) < 0.5


def test_the_web_baselines_run_on_the_procfile_line_with_only_the_target_changed():
    assert web_command("bench.baselines:hello").endswith(" --preload bench.baselines:hello")
    assert web_command().replace("wsgi:app", "X") == web_command("X")


@pytest.mark.slow  # runs the benchmark, with its Procfile processes
def test_a_quick_delivery_run_reports_ratios_and_footprint(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench", "delivery", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "## Delivery (500 events, 2 Procfile workers" in done.stdout
    workdir = ROOT / done.stdout.strip().splitlines()[-1].split(": ", 1)[1]
    report = json.loads((workdir / "report.json").read_text())["delivery"]
    for run in ("one_destination", "three_destinations"):
        assert report[run]["per_s"] > 0
        # After delivery only small per-event state is left: no envelope, no inbox entry (the
        # empty stream and its consumer group cost about a kilobyte in all).
        delivered = report[run]["bytes_per_event_delivered"]
        assert "relay:event:*" not in delivered and delivered["relay:inbox"] < 5
    assert report["ratio_one"] > 0 and report["ratio_three"] > 0
