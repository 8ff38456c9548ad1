"""The benchmark harness stays runnable: a smoke run of its delivery part, its open-loop
generator against a real server, and the chaos soak's receivers (the soak itself runs in
tests/test_soak.py). The figures themselves are not checked: only `./dev bench` on
a quiet machine says anything about them (README "Performance")."""

import json
import smtplib
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from bench.loadgen import open_loop
from bench.processes import ROOT, Process, wait_http, web_command
from devtools.local_redis import free_port
from relay.domain.event import parse_event
from relay.domain.samples import sample_event, to_body
from workers.destinations.email import email_message
from workers.destinations.slack import slack_message


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


@pytest.mark.slow  # starts the sink as a process
def test_the_soak_receivers_journal_each_delivery_by_its_event_id(tmp_path):
    # What the chaos soak counts (bench/chaos.py): a callback by its webhook-id, a Slack message and
    # a mail by the event id their text names, as the relay's own adapters format them.
    journal, port, smtp_port = tmp_path / "received.jsonl", free_port(), free_port()
    sink = Process(f"python -m bench.sink {port} --journal {journal} --smtp-port {smtp_port}", {}, tmp_path / "s.log")
    event = parse_event("wms", to_body(sample_event("API_ERROR", "harness-1", 4, timestamp=1_790_000_000)))
    try:
        wait_http(f"http://127.0.0.1:{port}/count", sink)
        requests.post(f"http://127.0.0.1:{port}/callback", data=b"{}", headers={"webhook-id": event.id}, timeout=5)
        requests.post(f"http://127.0.0.1:{port}/slack/T/B/X", json=slack_message(event), timeout=5)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as smtp:
            smtp.send_message(email_message(event, "relay@example.com", ["ops@example.com"], [], "email"))
    finally:
        sink.stop()
    rows = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(path, event_id, status) for path, event_id, _, status in rows] == [
        ("/callback", "wms:harness-1:4", 200),
        ("/slack/T/B/X", "wms:harness-1:4", 200),
        ("smtp", "wms:harness-1:4", 250),
    ]
