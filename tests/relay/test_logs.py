"""relay/logs.py: every record one line, as JSON or text, its extra= values as JSON fields, a
traceback folded into its record; RQ's routine lines at DEBUG; gunicorn's error and access logs
through the same formatter, in a real gunicorn started from the Procfile's web line."""

import io
import json
import logging
import re
import socket
import sys
import threading

import pytest
import requests

from devtools.local_redis import free_port
from devtools.procfile import procfile_command
from relay import logs
from tests.test_processes import process_env, start, stop, wait_for

TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .*")
LOGGER_FLAG = "--logger-class relay.logs.GunicornLogger"


@pytest.fixture
def capture():
    """Format the records of the named loggers with logs.formatter(fmt); return their lines."""
    attached: list[tuple[logging.Logger, logging.Handler, int]] = []

    def attach(fmt: str, *names: str, level: int = logging.INFO):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logs.formatter(fmt))
        for name in names:
            logger = logging.getLogger(name)
            attached.append((logger, handler, logger.level))
            logger.addHandler(handler)
            logger.setLevel(level)
        return lambda: stream.getvalue().splitlines()

    yield attach
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)


def failing() -> None:
    raise ValueError("boom\nsecond line of the error")


def log_a_traceback(name: str) -> None:
    try:
        failing()
    except ValueError:
        logging.getLogger(name).exception(
            "sending failed\nfor one event",
            extra={"event_id": "wms:s1:0", "source": "wms", "destination": "crm", "outcome": "transient"},
        )


def test_json_is_one_object_a_line_with_its_fields_and_the_traceback_inside(capture):
    lines = capture(logs.JSON, "workers.delivery")
    log_a_traceback("workers.delivery")
    logging.getLogger("workers.delivery").info(
        "wms:s1:0 -> crm attempt 1: ok (HTTP 200) in 0.012 s",
        extra={"event_id": "wms:s1:0", "attempt": 1, "status": "HTTP 200", "duration_ms": 12.3},
    )
    first, second = (json.loads(line) for line in lines())  # two records, two lines
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert {k: first[k] for k in ("level", "logger", "message", "event_id", "source", "destination", "outcome")} == {
        "level": "ERROR",
        "logger": "workers.delivery",
        "message": "sending failed\nfor one event",
        "event_id": "wms:s1:0",
        "source": "wms",
        "destination": "crm",
        "outcome": "transient",
    }
    assert first["exception"] == "ValueError: boom\nsecond line of the error"
    assert first["traceback"].startswith("Traceback (most recent call last):\n")
    assert 'in failing\n    raise ValueError("boom\\nsecond line of the error")' in first["traceback"]
    assert second["attempt"] == 1 and second["duration_ms"] == 12.3 and "traceback" not in second


def test_text_is_one_line_a_record_too_with_the_traceback_folded(capture):
    lines = capture(logs.TEXT, "workers.delivery", "relay.web.hooks")
    log_a_traceback("workers.delivery")
    logging.getLogger("relay.web.hooks").warning("rejected: %s", "a header\r\nX-Forged: 1")
    folded, forged = lines()
    assert TEXT_LINE.fullmatch(folded) and TEXT_LINE.fullmatch(forged)
    assert " ERROR workers.delivery: sending failed | for one event | Traceback (most recent call last): | " in folded
    assert folded.endswith(" | ValueError: boom | second line of the error")
    assert forged.endswith(" WARNING relay.web.hooks: rejected: a header | X-Forged: 1")


def test_a_rejected_request_is_one_line_with_its_reason(capture):
    lines = capture(logs.JSON, "relay.web")
    log = logging.getLogger("relay.web")
    logs.rejected(log, 400, "invalid_event", "sequence: must be an integer >= 0, got -1",
                  method="POST", path="/hooks/wms", remote="10.0.0.7", source="wms")  # fmt: skip
    logs.rejected(
        log, 401, "unauthorized", "no X-WMS-Content-MAC header", method="POST", path="/hooks/wms", remote=None
    )
    invalid, unauthorized = (json.loads(line) for line in lines())
    assert invalid["level"] == "INFO" and unauthorized["level"] == "WARNING"
    assert invalid["message"] == (
        "rejected POST /hooks/wms from 10.0.0.7: 400 invalid_event: sequence: must be an integer >= 0, got -1"
    )
    assert {k: invalid[k] for k in ("outcome", "status", "error", "reason", "source", "remote_addr")} == {
        "outcome": "rejected",
        "status": 400,
        "error": "invalid_event",
        "reason": "sequence: must be an integer >= 0, got -1",
        "source": "wms",
        "remote_addr": "10.0.0.7",
    }


def test_routine_lines_of_a_library_are_demoted_to_debug(capture):
    lines = capture(logs.TEXT, "tests.rq.worker")
    rq = logging.getLogger("tests.rq.worker")
    logs.demote_to_debug(rq.name, ["Worker %s: cleaning registries for queue: %s"])
    try:
        rq.info("Worker %s: cleaning registries for queue: %s", "w1", "events")
        rq.info("Worker %s [PID %d]: warm shut down requested", "w1", 7)
        assert [line.split(" ", 2)[2] for line in lines()] == [
            "INFO tests.rq.worker: Worker w1 [PID 7]: warm shut down requested"
        ]
        rq.setLevel(logging.DEBUG)
        rq.info("Worker %s: cleaning registries for queue: %s", "w1", "events")
        assert [line.split(" ", 2)[2] for line in lines()][1:] == [
            "DEBUG tests.rq.worker: Worker w1: cleaning registries for queue: events"
        ]
    finally:
        rq.filters.clear()


def test_configure_writes_every_record_to_stderr_in_the_format_asked():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for fmt, kind in [("json", logs.JsonFormatter), ("text", logs.TextFormatter)]:
            logs.configure("WARNING", fmt)
            (handler,) = root.handlers
            assert isinstance(handler.formatter, kind) and root.level == logging.WARNING
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_an_exception_no_one_caught_in_a_thread_is_one_record(caplog):
    hooks = sys.excepthook, threading.excepthook
    try:
        logs.route_uncaught()

        def crash() -> None:
            raise RuntimeError("boom")

        thread = threading.Thread(target=crash, name="lane-crm")
        thread.start()
        thread.join()
    finally:
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)
    (record,) = [r for r in caplog.records if r.name == "relay.uncaught"]
    # Worded as Python's own hook starts: bench/chaos.py counts crashed threads by it.
    assert record.getMessage() == "Exception in thread lane-crm: RuntimeError: boom; the thread ended"
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line and json.loads(line)["traceback"].endswith("RuntimeError: boom")


def test_the_environment_is_read_leniently_before_the_settings_are():
    assert logs.from_environment({}) == (None, "text")
    assert logs.from_environment({"LOG_LEVEL": "warning", "LOG_FORMAT": " JSON "}) == ("WARNING", "json")
    # Reported with every other problem once the settings are read (create_app, exit 3).
    assert logs.from_environment({"LOG_LEVEL": "loud", "LOG_FORMAT": "xml"}) == (None, "text")


@pytest.mark.slow  # a real gunicorn
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_gunicorns_error_and_access_logs_go_through_the_formatter(tmp_path, settings, redis, fmt):
    port = free_port()
    web = procfile_command("web")
    assert web.endswith(" wsgi:app")
    command = web.replace(" wsgi:app", f" {LOGGER_FLAG} --access-logfile - wsgi:app")
    env = process_env(
        PORT=str(port), REDIS_URL=settings.redis_url.reveal(), RELAY_CONFIG=settings.config_path, LOG_FORMAT=fmt
    )
    process = start(command, env, tmp_path / "web.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/readyz", timeout=1).ok, 20, "gunicorn to answer /readyz")
        assert requests.post(f"{url}/hooks/wms", data=b"{}", timeout=5).status_code == 401
        assert requests.get(f"{url}/nowhere", timeout=5).status_code == 404
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:  # gunicorn's own error page
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400 ")
        log = (tmp_path / "web.log").read_text
        wait_for(lambda: log().count("/nowhere") >= 1, 5, "the access line of the 404")
    finally:
        code = stop(process)
    lines = [line for line in (tmp_path / "web.log").read_text().splitlines() if line]
    assert code == 0, "\n".join(lines)
    if fmt == "text":
        assert all(TEXT_LINE.fullmatch(line) for line in lines), "\n".join(lines)
        assert any(" INFO gunicorn.error: Starting gunicorn " in line for line in lines), lines
        assert any(re.search(r' INFO gunicorn\.access: .*"GET /readyz HTTP/1\.1" 200 ', line) for line in lines)
        return
    records = [json.loads(line) for line in lines]  # every line, gunicorn's and the app's, is one record
    by_logger: dict[str, list[dict]] = {}
    for record in records:
        by_logger.setdefault(record["logger"], []).append(record)
    assert any(r["message"].startswith("Starting gunicorn ") for r in by_logger["gunicorn.error"])
    assert any(r["message"].startswith("Booting worker with pid: ") for r in by_logger["gunicorn.error"])
    access = {(r["method"], r["path"]): r for r in by_logger["gunicorn.access"]}
    assert access[("GET", "/readyz")]["status"] == 200
    assert access[("POST", "/hooks/wms")]["status"] == 401
    assert access[("GET", "/nowhere")]["status"] == 404
    assert all(isinstance(r["duration_ms"], float) and r["remote_addr"] == "127.0.0.1" for r in access.values())
    assert '"GET /nowhere HTTP/1.1" 404 ' in access[("GET", "/nowhere")]["message"]  # gunicorn's own line
    # The app's own lines come out the same way: the 401's precise cause.
    app_lines = [r for name, found in by_logger.items() if name.startswith("relay.web") for r in found]
    assert any(r["level"] == "WARNING" and "X-WMS-Content-MAC header" in r["message"] for r in app_lines), app_lines
