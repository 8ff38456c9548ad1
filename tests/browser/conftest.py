"""Fixtures of the browser tests: one relay (the Procfile's processes) and one headless Chromium
per module, a failed session played once for the tests that only look at it.

Without chromium and chromedriver the tests are skipped, saying how to install them, except in
CI (the CI variable set), where that is a failure: CI must never pass without running them.
"""

import os

import pytest

from relay.domain.scenarios import SCENARIOS
from tests.browser.harness import browser_paths, chrome, running_relay


@pytest.fixture(scope="session")
def chromium_installed() -> None:
    """Skip (locally) or fail (in CI) when there is no chromium and chromedriver to run."""
    found = browser_paths()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI, but there is {found}")
        pytest.skip(found)


@pytest.fixture(scope="module")
def relay_processes(chromium_installed, tmp_path_factory):
    """The relay's web and worker processes, as the Procfile runs them, with the admin token set."""
    with running_relay(tmp_path_factory.mktemp("browser")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(chromium_installed):
    """Headless Chromium, 1366x768, JavaScript on."""
    driver = chrome()
    yield driver
    driver.quit()


@pytest.fixture
def driver(browser, relay_processes):
    """The module's browser, logged out (no cookie of the relay's) and at desktop size."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # of every path, /admin/ui's included
    yield browser
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.fixture(scope="module")
def failed_session(relay_processes) -> str:
    """A session played with `relay simulate camera-denied`, decided failed: its id."""
    (session_id,) = relay_processes.simulate("camera-denied")
    relay_processes.wait_for_outcome(session_id, SCENARIOS["camera-denied"].outcome)
    return session_id
