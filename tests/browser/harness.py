"""A relay run as production runs it, and headless Chromium to look at its dashboard: for the
browser tests (tests/browser/test_dashboard.py) and the dashboard's screenshots
(`python -m devtools.screenshots --dashboard`).

The Procfile's web and worker processes on a private redis-server, with RELAY_ADMIN_TOKEN set,
and one HTTP sink on 127.0.0.1 behind two destinations: `crm`, healthy, gets every WMS event;
`partner` gets each session's outcome and always answers 500, so that after one retry half a
second later each outcome is a dead letter. Sessions settle half a second after their last event.
"""

import contextlib
import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from redis import Redis
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from devtools.local_redis import LocalRedis, free_port
from devtools.procfile import procfile_command
from tests.conftest import SECRET
from tests.peers import HttpPeer, Reply
from tests.test_processes import process_env, start, stop, wait_for
from tests.test_session_processes import simulate

ADMIN_TOKEN = "browser-admin-token-0123456789abcdef"
HEALTHY = "crm"
FAILING = "partner"
CONFIG = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  crm: {type: http, url: "%(http)s/crm", signing_secret: crm-secret, timeout: 2s}
  partner:
    type: http
    url: "%(http)s/partner"
    signing_secret: partner-secret
    timeout: 2s
    retry: {delays: [500ms], jitter: 0}
    pause: {after_failures: 0}  # stays active however often it fails: a dead letter per outcome
rules:
  - name: outcomes-to-partner
    match: {event: ["SESSION_*"]}
    to: [partner]
  - name: everything
    match: {}
    to: [crm]
sessions: {settle: 500ms, idle_timeout: 4s}
"""
# Enough 500s for any run of the tests or the screenshots: the sink answers `partner` with them all.
FAILURES = 10_000
DESKTOP = (1366, 768)
PHONE = (390, 844)


@dataclass
class RunningRelay:
    """The relay's URL and environment, its Redis, the sink behind its destinations, its logs."""

    url: str
    env: dict[str, str]
    redis: Redis
    sink: HttpPeer
    logs: Path

    def simulate(self, *args: str) -> dict[str, str]:
        """Run `relay simulate ARGS` against the relay; return sessionId -> scenario."""
        return simulate(self.env, self.url, *args)

    def admin(self, path: str) -> Any:
        """GET /admin/<path> from the JSON admin API, with the token; the decoded answer."""
        response = requests.get(
            f"{self.url}/admin/{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5
        )
        response.raise_for_status()
        return response.json()

    def wait_for_outcome(self, session_id: str, outcome: str, timeout: float = 15) -> None:
        """Wait until the session's outcome has been decided as `outcome`."""

        def decided() -> bool:
            return self.admin(f"sessions/wms/{session_id}")["outcome"] == outcome

        self.wait_for(decided, timeout, f"session {session_id} to be {outcome}")

    def wait_for_dead_letter(self, event_id: str, timeout: float = 15) -> dict:
        """Wait until the failing destination's delivery of `event_id` is a dead letter; return it."""
        return self.wait_for(
            lambda: self.admin(f"dead-letters/{FAILING}/{event_id}"), timeout, f"{event_id}'s dead letter"
        )

    def wait_for(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """tests.test_processes.wait_for, with the processes' last words when it times out."""
        try:
            return wait_for(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the web and worker processes' output, for a failed wait to show."""
        return "\n".join(
            f"--- {p.name}: ...\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(self.logs.glob("*.log"))
        )


@contextlib.contextmanager
def running_relay(tmp: Path) -> Iterator[RunningRelay]:
    """Start the relay's processes around a private Redis and the sink; stop them all afterwards."""
    with LocalRedis() as server:
        sink = HttpPeer().start()
        sink.script(f"/{FAILING}", *[Reply(500, b"service unavailable")] * FAILURES)
        config = tmp / "relay.yaml"
        config.write_text(textwrap.dedent(CONFIG % {"secret": SECRET, "http": sink.url}))
        port = free_port()
        env = process_env(
            PORT=str(port),
            BIND_HOST="127.0.0.1",
            REDIS_URL=server.url,
            RELAY_CONFIG=str(config),
            RELAY_ADMIN_TOKEN=ADMIN_TOKEN,
            LOG_LEVEL="INFO",
        )
        processes = [start(procfile_command(kind), env, tmp / f"{kind}.log") for kind in ("web", "worker")]
        url = f"http://127.0.0.1:{port}"
        redis = Redis.from_url(server.url)
        try:
            relay = RunningRelay(url, env, redis, sink, tmp)
            relay.wait_for(lambda: requests.get(f"{url}/readyz", timeout=1).ok, 20, "gunicorn to answer /readyz")
            yield relay
        finally:
            for process in processes:
                stop(process)
            redis.close()
            sink.stop()


def _executable(variable: str, *names: str) -> str | None:
    named = os.environ.get(variable)
    return shutil.which(named) if named else next(filter(None, map(shutil.which, names)), None)


def browser_paths() -> tuple[str, str] | str:
    """(chromium, chromedriver), Debian's (CHROMIUM and CHROMEDRIVER name others), or what is missing."""
    chromium = _executable("CHROMIUM", "chromium", "chromium-browser")
    driver = _executable("CHROMEDRIVER", "chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = " and ".join(name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path)
    return f"no {missing} to run: apt-get install -y chromium chromium-driver (or set CHROMIUM, CHROMEDRIVER)"


def chrome(javascript: bool = True, window: tuple[int, int] = DESKTOP) -> WebDriver:
    """Headless Chromium driven by Debian's chromedriver: nothing downloaded, nothing read from or
    left in a real profile (chromedriver makes a throwaway one)."""
    paths = browser_paths()
    if isinstance(paths, str):
        raise RuntimeError(paths)
    binary, driver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI has no user namespace for the sandbox
        "--disable-dev-shm-usage",  # a container's /dev/shm is small
        "--disable-gpu",
        f"--window-size={window[0]},{window[1]}",
        # No network beyond the relay: no component updates, no sync, no first-run pages.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    # With the driver's path given, Selenium never runs Selenium Manager (which would download one).
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def emulate(driver: WebDriver, size: tuple[int, int] | None, mobile: bool = True) -> None:
    """Make the page's viewport `size` CSS pixels: a phone's (the viewport meta honoured) or, not
    `mobile`, a desktop's (the window's own is smaller by what a browser's frame takes); back to
    the window's with None."""
    if size is None:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


WAIT = 10.0  # seconds any page or element is waited for: pages here answer in milliseconds


def wait(driver: WebDriver, timeout: float = WAIT) -> WebDriverWait:
    """A bounded wait on `driver`."""
    return WebDriverWait(driver, timeout)


def _replaced(page: WebElement) -> Callable[[WebDriver], bool]:
    """A wait condition: `page` (the old document's root) is gone. Chromium says so with a stale
    element error, or, when asked while the new document replaces it, with an inspector error
    that Selenium does not map to one (seen under load in the suite)."""

    def check(_: WebDriver) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return check


def click_and_load(driver: WebDriver, element: WebElement) -> None:
    """Click `element` (a link or a form's button) and wait until the page it leads to is there."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait(driver).until(_replaced(page))
    wait(driver).until(expected_conditions.presence_of_element_located((By.TAG_NAME, "body")))


def log_in(driver: WebDriver, url: str, token: str = ADMIN_TOKEN) -> None:
    """Log in to the dashboard at `url` as an operator does: the login form, the token, the button."""
    driver.get(f"{url}/admin/ui/login")
    wait(driver).until(expected_conditions.presence_of_element_located((By.ID, "token"))).send_keys(token)
    click_and_load(driver, driver.find_element(By.ID, "login-button"))
