"""Screenshots for the documentation: `python -m devtools.screenshots`.

Writes docs/images/failed-session-email.png: the HTML part of the mail a SESSION_FAILED event
gets, exactly as delivered, rendered by headless Chromium (`--slack` prints the same event's
Slack payload instead). The event is made the way the relay
makes it: WMS events as a session's record holds them, arriving out of order with one missing,
read back (relay.domain.session), decided, turned into the derived event's body, parsed as the
worker parses it, and laid out by workers.destinations.email.

`--dashboard` writes docs/images/dashboard-*.png instead: the operator dashboard's pages at
1366x768, and the overview and a timeline on a 390x844 phone. It starts a relay as the browser
tests do (tests/browser/harness.py: the Procfile's web and worker on a private Redis, a healthy
and a failing HTTP destination), plays every scenario with `relay simulate`, logs in with
Selenium, pauses a destination, and visits each page as an operator would.

Unlike the rest of devtools, which imports only config, this one script imports relay/ and
workers/ (and, for --dashboard, the tests' harness): it shows their output and has no other way
to get it. Needs Debian's `chromium` (apt-get install -y chromium; with chromium-driver for
--dashboard) or CHROMIUM naming another binary.
"""

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from relay.domain.event import Event, parse_event
from relay.domain.scenarios import SCENARIOS
from relay.domain.session import decide, derived_body, parse_record, record_line
from workers.destinations.email import email_message
from workers.destinations.slack import slack_message

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "images" / "failed-session-email.png"
WINDOW = "900,1100"
SOURCE = "wms"
SESSION = "a3f9c2e1-4b7d-4e8a-9c51-7d2e0b6f1a48"
MEASUREMENT = "f0c8ca8d-111d-4dcf-a69d-46ed39a2db06"
STARTED = 1764499960  # 2025-11-30 10:52:40 UTC
# (sequence, seconds after the start, code, severity, payload): a constraint violation mid-scan.
# Sequence 4 (MEASUREMENT_STARTED) never arrives; 8 arrives before 7.
EVENTS: list[tuple[int, int, str, str, dict[str, Any]]] = [
    (0, 0, "WMS_LOADED", "INFO", {}),
    (1, 1, "CONFIGURATION_LOADED", "INFO", {}),
    (2, 4, "CAMERA_PERMISSION_GRANTED", "INFO", {}),
    (3, 5, "CAMERA_STARTED", "INFO", {}),
    (5, 8, "MEASUREMENT_CREATED", "INFO", {"measurementId": MEASUREMENT}),
    (6, 14, "INTERMEDIATE_RESULTS", "INFO", {"measurementId": MEASUREMENT, "snr": 5.1, "sequence": 1}),
    (8, 23, "CONSTRAINT_VIOLATION", "ERROR", {"measurementId": MEASUREMENT, "constraint": "FACE_NOT_CENTERED"}),
    (7, 19, "INTERMEDIATE_RESULTS", "INFO", {"measurementId": MEASUREMENT, "snr": 4.2, "sequence": 2}),
    (9, 24, "MEASUREMENT_CANCELED", "WARN", {"measurementId": MEASUREMENT}),
]


def failed_session() -> Event:
    """A SESSION_FAILED event as the relay derives it from EVENTS."""
    lines: list[str] = []
    received = float(STARTED)
    for seq, at, code, severity, payload in EVENTS:
        # Received in the list's order, a moment after WMS sent it (or after the one before it).
        received = max(received, STARTED + at) + 0.3
        lines.append(record_line(Event(SOURCE, SESSION, seq, STARTED + at, severity, code, payload), received))
    session = parse_record(SOURCE, SESSION, "".join(lines))
    body = json.dumps(derived_body(session, decide(session.events)), separators=(",", ":")).encode("utf-8")
    return parse_event(SOURCE, body, derived=True)


def failed_session_html() -> str:
    """The HTML part of the mail a failed session gets, as the email adapter sends it."""
    mail = email_message(failed_session(), "relay@wms.example.com", ["ops@example.com"], [], "ops-email")
    part = mail.get_body(("html",))
    if part is None:
        raise RuntimeError("the mail has no HTML part")
    return str(part.get_content())


def chromium() -> str:
    """The Chromium binary: CHROMIUM, or the first of Debian's names on PATH."""
    named = os.environ.get("CHROMIUM")
    found = named or next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if not found:
        raise SystemExit("screenshots: no chromium on PATH; install it (apt-get install -y chromium) or set CHROMIUM")
    return found


def screenshot(html: str, output: Path, window: str = WINDOW) -> None:
    """Render `html` in headless Chromium and save the screenshot as `output` (PNG)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "mail.html"
        page.write_text(html, encoding="utf-8")
        command = [
            chromium(),
            "--headless",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp}/profile",  # nothing read from or left in a real profile
            f"--screenshot={output}",
            f"--window-size={window}",
            page.as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not output.is_file():
        raise SystemExit(f"screenshots: chromium failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")


DASHBOARD_SESSIONS = 2  # sessions of each scenario the dashboard shows


def dashboard_screenshots(output_dir: Path) -> list[Path]:
    """Run a relay, play sessions, and screenshot the dashboard's pages into `output_dir`."""
    # Imported by name: mypy checks devtools/, not tests/, and must not follow into them.
    harness = importlib.import_module("tests.browser.harness")
    from selenium.webdriver.common.by import By

    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp, harness.running_relay(Path(tmp)) as relay:
        played = relay.simulate("all", "--sessions", str(DASHBOARD_SESSIONS))
        for session_id, name in played.items():  # every outcome decided, every dead letter there
            relay.wait_for_outcome(session_id, SCENARIOS[name].outcome, timeout=30)
            relay.wait_for_dead_letter(f"wms:{session_id}:session", timeout=30)
        failed = next(sid for sid, name in played.items() if name == "constraint-violation")
        event = quote(f"wms:{failed}:session")
        driver = harness.chrome()
        try:

            def shot(name: str, path: str | None = None) -> None:
                if path is not None:
                    driver.get(f"{relay.url}{path}")
                harness.wait(driver).until(lambda d: d.find_element(By.TAG_NAME, "body"))
                output = output_dir / f"dashboard-{name}.png"
                if not driver.save_screenshot(str(output)):
                    raise SystemExit(f"screenshots: could not save {output}")
                written.append(output)

            harness.emulate(driver, harness.DESKTOP, mobile=False)
            harness.log_in(driver, relay.url)
            # One destination paused by the operator, as the overview and destinations pages show it.
            driver.get(f"{relay.url}/admin/ui/destinations")
            pause = driver.find_element(By.CSS_SELECTOR, f"#destination-{harness.HEALTHY} .pause-button")
            harness.click_and_load(driver, pause)
            shot("destinations")
            shot("overview", "/admin/ui/")
            shot("sessions", "/admin/ui/sessions")
            shot("timeline", f"/admin/ui/sessions/wms/{failed}")
            shot("events", "/admin/ui/events")
            shot("event", f"/admin/ui/events/{event}")
            shot("dead-letters", "/admin/ui/dead-letters")
            shot("dead-letter", f"/admin/ui/dead-letters/{harness.FAILING}/{event}")
            shot("purge", f"/admin/ui/dead-letters/purge?destination={harness.FAILING}")
            harness.emulate(driver, harness.PHONE)
            shot("overview-phone", "/admin/ui/")
            shot("timeline-phone", f"/admin/ui/sessions/wms/{failed}")
            harness.emulate(driver, harness.DESKTOP, mobile=False)
            harness.click_and_load(driver, driver.find_element(By.ID, "logout-button"))
            shot("login")
        finally:
            driver.quit()
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the documentation's screenshots."""
    parser = argparse.ArgumentParser(prog="python -m devtools.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"the PNG to write (default: {OUTPUT})")
    parser.add_argument("--html", type=Path, help="also write the mail's HTML part here")
    parser.add_argument(
        "--slack", action="store_true", help="print the same event's Slack payload (JSON) instead, for the README"
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help=f"write the dashboard's screenshots (dashboard-*.png) into {OUTPUT.parent} instead",
    )
    args = parser.parse_args(argv)
    if args.dashboard:
        for output in dashboard_screenshots(OUTPUT.parent):
            print(f"wrote {output}", file=sys.stderr)
        return 0
    if args.slack:
        print(json.dumps(slack_message(failed_session()), indent=2, ensure_ascii=False))
        return 0
    html = failed_session_html()
    if args.html:
        args.html.write_text(html, encoding="utf-8")
    screenshot(html, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
