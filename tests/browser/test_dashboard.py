"""The operator dashboard in a real headless Chromium, against the relay as production runs it
(the Procfile's gunicorn and worker, a private Redis, a failing and a healthy HTTP destination):
the operator's round from login to logout, a wrong token, forged and tampered forms, and the
pages on a phone and with JavaScript off. Exact strings are the page contract's."""

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select

from devtools.local_redis import free_port
from relay.domain.samples import sample_session, to_body
from relay.domain.scenarios import SCENARIOS
from relay.domain.signature import compute
from relay.store import keys
from tests.browser.harness import (
    FAILING,
    HEALTHY,
    PHONE,
    RunningRelay,
    chrome,
    click_and_load,
    emulate,
    log_in,
    wait,
)
from tests.conftest import SECRET

pytestmark = pytest.mark.slow

CSRF_FAILED = "the form was stale or not from this dashboard (CSRF check failed); reload the page and try again"
NAV = ("nav-overview", "nav-sessions", "nav-events", "nav-destinations", "nav-dead-letters")


def path_of(driver: WebDriver) -> str:
    """The current page's path."""
    return urlsplit(driver.current_url).path


def assert_at_login(driver: WebDriver, then: str | None) -> None:
    """The login page, sent there from `then` (its ?next=), or with no ?next= when None."""
    address = urlsplit(driver.current_url)
    assert address.path == "/admin/ui/login", driver.current_url
    assert parse_qs(address.query).get("next") == ([then] if then else None), driver.current_url
    assert driver.find_element(By.ID, "login").get_attribute("action").endswith("/admin/ui/login")


def status(driver: WebDriver) -> int:
    """The HTTP status of the page shown (after redirects: the last one's)."""
    return driver.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus")


def text_of(driver: WebDriver, element_id: str) -> str:
    """The text of the element with this id, once it is on the page."""
    return wait(driver).until(expected_conditions.presence_of_element_located((By.ID, element_id))).text


def link_to(driver: WebDriver, css_class: str, path: str):
    """The link of `css_class` whose (decoded) address ends with `path`."""
    links = driver.find_elements(By.CSS_SELECTOR, f"a.{css_class}")
    found = [a for a in links if unquote(urlsplit(a.get_attribute("href")).path).endswith(path)]
    assert len(found) == 1, (path, [a.get_attribute("href") for a in links])
    return found[0]


def timeline(driver: WebDriver) -> list[tuple[int, str]]:
    """The timeline's event rows: (sequence, code)."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#timeline tr.event")
    return [(int(row.get_attribute("data-sequence")), row.get_attribute("data-code")) for row in rows]


def expected_timeline(scenario: str) -> list[tuple[int, str]]:
    return list(enumerate(SCENARIOS[scenario].codes))


def paused(relay: RunningRelay, name: str) -> bool:
    return bool(relay.redis.hexists(keys.destination_key(name), "paused"))


def state_cell(driver: WebDriver, name: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f"#destination-{name} td.state").text


def sent_to_failing(relay: RunningRelay, event_id: str) -> int:
    """Requests the failing destination's receiver got for `event_id`."""
    return sum(
        {k.lower(): v for k, v in r.headers.items()}.get("webhook-id") == event_id for r in relay.sink.to(f"/{FAILING}")
    )


def test_an_operator_logs_in_finds_a_failed_session_replays_its_dead_letter_pauses_and_logs_out(
    driver, relay_processes
):
    url = relay_processes.url
    driver.get(f"{url}/admin/ui/")
    assert_at_login(driver, "/admin/ui/")
    driver.find_element(By.ID, "token").send_keys(relay_processes.env["RELAY_ADMIN_TOKEN"])
    click_and_load(driver, driver.find_element(By.ID, "login-button"))
    assert path_of(driver) == "/admin/ui/"  # where ?next= said
    assert driver.find_element(By.ID, "overview").is_displayed()
    cookie = driver.get_cookie("relay_admin")
    assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
    assert cookie["path"] == "/admin/ui", cookie

    played = relay_processes.simulate("constraint-violation")
    played |= relay_processes.simulate("success")
    failed = next(sid for sid, name in played.items() if name == "constraint-violation")
    completed = next(sid for sid, name in played.items() if name == "success")
    relay_processes.wait_for_outcome(failed, "failed")
    relay_processes.wait_for_outcome(completed, "completed")

    # Sessions, filtered to the failed ones: ours is there, the completed one is not.
    click_and_load(driver, driver.find_element(By.ID, "nav-sessions"))
    assert path_of(driver) == "/admin/ui/sessions"
    form = driver.find_element(By.ID, "session-filter")
    Select(form.find_element(By.NAME, "outcome")).select_by_value("failed")
    click_and_load(driver, form.find_element(By.CSS_SELECTOR, "button, input[type=submit]"))
    assert parse_qs(urlsplit(driver.current_url).query)["outcome"] == ["failed"]
    driver.find_element(By.ID, "sessions")
    link_to(driver, "session-link", f"/admin/ui/sessions/wms/{failed}")
    assert not [
        a for a in driver.find_elements(By.CSS_SELECTOR, "a.session-link") if completed in a.get_attribute("href")
    ]

    # Its timeline: failed, every event in sequence order.
    click_and_load(driver, link_to(driver, "session-link", f"/admin/ui/sessions/wms/{failed}"))
    assert path_of(driver) == f"/admin/ui/sessions/wms/{failed}"
    assert text_of(driver, "outcome") == "failed"
    assert timeline(driver) == expected_timeline("constraint-violation")
    assert not driver.find_elements(By.CSS_SELECTOR, "#timeline tr.gap")  # played in order, none missing

    # Its outcome could not reach the failing destination: a dead letter, replayed from its page.
    event_id = f"wms:{failed}:session"
    before = relay_processes.wait_for_dead_letter(event_id)
    sent_before = sent_to_failing(relay_processes, event_id)
    assert sent_before == 2  # the attempt and its one retry
    click_and_load(driver, driver.find_element(By.ID, "nav-dead-letters"))
    driver.find_element(By.ID, "dead-letters")
    click_and_load(driver, link_to(driver, "dead-letter-link", f"/admin/ui/dead-letters/{FAILING}/{event_id}"))
    assert json.loads(text_of(driver, "body"))["sessionId"] == failed
    click_and_load(driver, driver.find_element(By.ID, "replay-button"))
    assert text_of(driver, "notice") == "replayed 1 dead letter"
    # Queued again with a fresh schedule: the receiver is asked again, fails again, and the
    # delivery is a dead letter once more, later than the first time.
    relay_processes.wait_for(
        lambda: sent_to_failing(relay_processes, event_id) > sent_before, 10, "the replayed delivery at the receiver"
    )
    died = datetime.fromisoformat(before["at"])
    relay_processes.wait_for(
        lambda: datetime.fromisoformat(relay_processes.admin(f"dead-letters/{FAILING}/{event_id}")["at"]) > died,
        10,
        "the replayed delivery's own dead letter",
    )

    # Pause the healthy destination, then resume it.
    click_and_load(driver, driver.find_element(By.ID, "nav-destinations"))
    assert state_cell(driver, HEALTHY) == "active"
    click_and_load(driver, driver.find_element(By.CSS_SELECTOR, f"#destination-{HEALTHY} .pause-button"))
    assert text_of(driver, "notice") == f"paused {HEALTHY}"
    assert state_cell(driver, HEALTHY) == "paused"
    assert paused(relay_processes, HEALTHY)
    assert state_cell(driver, FAILING) == "active"
    waiting = relay_processes.redis.llen(keys.parked_key(HEALTHY))
    click_and_load(driver, driver.find_element(By.CSS_SELECTOR, f"#destination-{HEALTHY} .resume-button"))
    assert text_of(driver, "notice") == f"resumed {HEALTHY}; released {waiting} waiting deliveries"
    assert state_cell(driver, HEALTHY) == "active"
    assert not paused(relay_processes, HEALTHY)

    # Log out: the login page, and every page leads there again.
    click_and_load(driver, driver.find_element(By.ID, "logout-button"))
    assert_at_login(driver, None)
    after = driver.get_cookie("relay_admin")  # the login page's own, for its form's CSRF token
    assert after is None or after["value"] != cookie["value"]
    driver.get(f"{url}/admin/ui/destinations")
    assert_at_login(driver, "/admin/ui/destinations")


def test_a_wrong_token_is_refused_and_sets_no_cookie(driver, relay_processes):
    driver.get(f"{relay_processes.url}/admin/ui/login")
    # What the login page itself may have set (a pre-login session holding its form's CSRF token).
    before = driver.get_cookie("relay_admin")
    driver.find_element(By.ID, "token").send_keys("not-the-admin-token-0123456789")
    click_and_load(driver, driver.find_element(By.ID, "login-button"))
    assert status(driver) == 401
    assert text_of(driver, "error") == "wrong admin token"
    assert driver.find_element(By.ID, "error").get_attribute("class") == "error"
    assert driver.find_element(By.ID, "token").get_attribute("value") == ""  # the token is not echoed back
    assert driver.get_cookie("relay_admin") == before  # the 401 set no cookie
    driver.get(f"{relay_processes.url}/admin/ui/")
    assert_at_login(driver, "/admin/ui/")


def play(relay: RunningRelay, session_id: str) -> str:
    """Post camera-denied's events as WMS would, under `session_id`; wait until its outcome is a
    dead letter at the failing destination; return the outcome's event id."""
    for event in sample_session(SCENARIOS["camera-denied"].codes, session_id):
        body = to_body(event)
        response = requests.post(
            f"{relay.url}/hooks/wms",
            data=body,
            headers={"Content-Type": "application/json", "X-WMS-Content-MAC": compute(SECRET, body)},
            timeout=5,
        )
        assert response.status_code == 202, response.text
    event_id = f"wms:{session_id}:session"
    relay.wait_for(lambda: relay.redis.exists(keys.dead_letter_key(FAILING, event_id)), 15, f"{event_id}'s letter")
    return event_id


def test_a_replay_form_of_a_session_id_with_dot_segments_replays_that_letter(driver, relay_processes):
    # Were its "/" left as they are, the browser would resolve this letter's replay form to
    # /admin/ui/dead-letters/partner/wms:victim:session/replay: the victim's.
    victim = play(relay_processes, "victim")
    hostile = play(relay_processes, f"x/../../{FAILING}/wms:victim")
    sent = {eid: sent_to_failing(relay_processes, eid) for eid in (victim, hostile)}
    assert sent == {victim: 2, hostile: 2}
    log_in(driver, relay_processes.url)
    driver.get(f"{relay_processes.url}/admin/ui/dead-letters")
    click_and_load(driver, link_to(driver, "dead-letter-link", f"/admin/ui/dead-letters/{FAILING}/{hostile}"))
    encoded = f"/admin/ui/dead-letters/{FAILING}/wms:x%2F..%2F..%2F{FAILING}%2Fwms:victim:session"
    assert path_of(driver) == encoded
    form = driver.find_element(By.ID, "replay-button").find_element(By.XPATH, "./ancestor::form")
    assert urlsplit(form.get_attribute("action")).path == f"{encoded}/replay"  # as the browser resolved it
    click_and_load(driver, driver.find_element(By.ID, "replay-button"))
    assert text_of(driver, "notice") == "replayed 1 dead letter"
    relay_processes.wait_for(
        lambda: sent_to_failing(relay_processes, hostile) > 2, 10, "the hostile letter's replay at the receiver"
    )
    assert sent_to_failing(relay_processes, victim) == 2  # the victim's letter was left alone


class _Attacker:
    """Another origin on 127.0.0.1 (its own port) serving one page with a form that posts to the
    relay's pause action, without the dashboard's CSRF token."""

    def __init__(self, target: str):
        page = (
            "<!doctype html><title>win a prize</title>"
            f'<form id="forged" method="post" action="{target}">'
            '<button type="submit" id="claim">claim</button></form>'
        ).encode()

        class Page(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.url = f"http://127.0.0.1:{free_port()}/"
        self._server = ThreadingHTTPServer(("127.0.0.1", urlsplit(self.url).port), Page)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "_Attacker":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_form_from_another_origin_or_with_a_tampered_token_changes_nothing(driver, relay_processes):
    log_in(driver, relay_processes.url)
    assert path_of(driver) == "/admin/ui/"

    # (a) Another origin's page, visited while logged in, posts to pause. Same site (127.0.0.1),
    # so the SameSite=Strict cookie goes along: the form's Origin and its missing CSRF token are
    # what stop it.
    with _Attacker(f"{relay_processes.url}/admin/ui/destinations/{HEALTHY}/pause") as attacker:
        driver.get(attacker.url)
        click_and_load(driver, driver.find_element(By.ID, "claim"))
    assert status(driver) == 403
    assert text_of(driver, "error") == CSRF_FAILED
    assert not paused(relay_processes, HEALTHY)

    # (b) The dashboard's own form, its csrf_token edited before it is sent.
    driver.get(f"{relay_processes.url}/admin/ui/destinations")
    form = driver.find_element(By.CSS_SELECTOR, f"form[action$='/destinations/{HEALTHY}/pause']")
    token = form.find_element(By.NAME, "csrf_token")
    original = token.get_attribute("value")
    assert original
    tampered = original[:-1] + ("A" if original[-1] != "A" else "B")
    driver.execute_script("arguments[0].value = arguments[1]", token, tampered)
    click_and_load(driver, form.find_element(By.CSS_SELECTOR, ".pause-button"))
    assert status(driver) == 403
    assert text_of(driver, "error") == CSRF_FAILED
    assert not paused(relay_processes, HEALTHY)
    driver.get(f"{relay_processes.url}/admin/ui/destinations")
    assert state_cell(driver, HEALTHY) == "active"  # still logged in, and nothing changed


def assert_fits_a_phone(driver: WebDriver) -> None:
    width = driver.execute_script("return window.innerWidth")
    assert width == PHONE[0], f"laid out {width} px wide: no <meta name=viewport content='width=device-width'>?"
    scroll = driver.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= width, f"{path_of(driver)} scrolls sideways on a phone: {scroll} px wide in {width}"
    assert driver.find_element(By.TAG_NAME, "nav").is_displayed()
    for link in NAV:
        element = driver.find_element(By.ID, link)
        assert element.is_displayed(), link
        assert element.rect["x"] >= 0 and element.rect["x"] + element.rect["width"] <= width, (link, element.rect)


def test_on_a_phone_and_without_javascript(driver, relay_processes, failed_session):
    timeline_path = f"/admin/ui/sessions/wms/{failed_session}"
    log_in(driver, relay_processes.url)
    emulate(driver, PHONE)
    for path in ("/admin/ui/", timeline_path):
        driver.get(f"{relay_processes.url}{path}")
        assert path_of(driver) == path
        assert_fits_a_phone(driver)
    assert timeline(driver) == expected_timeline("camera-denied")

    plain = chrome(javascript=False)
    try:
        plain.get("data:text/html,<title>off</title><script>document.title='on'</script>")
        assert plain.title == "off"  # JavaScript is off indeed
        plain.get(f"{relay_processes.url}{timeline_path}")
        assert_at_login(plain, timeline_path)
        plain.find_element(By.ID, "token").send_keys(relay_processes.env["RELAY_ADMIN_TOKEN"])
        click_and_load(plain, plain.find_element(By.ID, "login-button"))
        assert path_of(plain) == timeline_path  # ?next= brought it back
        assert text_of(plain, "outcome") == "failed"
        assert timeline(plain) == expected_timeline("camera-denied")
    finally:
        plain.quit()
