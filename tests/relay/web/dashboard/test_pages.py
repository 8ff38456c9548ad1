"""Each page on data built through the real path (signed events posted, fanned out, delivered to
local peers, sessions settled): tests/relay/cli/test_sessions.py's failed session; hostile
session ids and bodies shown escaped; every bad filter a 400 naming what is wrong."""

import html
import json
import re
import time
from urllib.parse import urljoin, urlsplit

import pytest
from markupsafe import Markup, escape

from relay.domain.samples import sample_event, to_body
from relay.store import dead_letters, destination_state, keys, queues
from relay.web.dashboard.blueprint import visible
from tests.conftest import signed_post
from tests.peers import Reply
from tests.relay.cli.test_sessions import FAILED_MID, SESSIONS_YAML, failed_session
from tests.relay.web.dashboard.conftest import csrf_of, login

HOSTILE = "<script>alert('x')</script>&\"/.."


@pytest.fixture
def ui(relay_factory):
    """The relay of SESSIONS_YAML (sources wms and kiosk; Slack, mail, a callback), logged in."""
    relay = relay_factory(SESSIONS_YAML)
    assert login(relay.client).status_code == 303
    return relay


@pytest.fixture
def failed(ui):
    """ui with the failed session s-failed played, delivered and settled."""
    failed_session(ui)
    return ui


def get(relay, path: str, **query: str):
    response = relay.client.get(path, query_string=query)
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    return response


def rows(page: str, table: str) -> list[str]:
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body, page
    return re.findall(r"<tr[^>]*>.*?</tr>", body.group(1), re.S)


def test_every_page_has_the_nav_and_a_title(failed):
    for path, title in [
        ("/admin/ui/", "Overview"),
        ("/admin/ui/sessions", "Sessions"),
        ("/admin/ui/sessions/wms/s-failed", "Session s-failed"),
        ("/admin/ui/events", "Events"),
        ("/admin/ui/events/wms:s-failed:8", "Event wms:s-failed:8"),
        ("/admin/ui/destinations", "Destinations"),
        ("/admin/ui/dead-letters", "Dead letters"),
    ]:
        page = get(failed, path)
        assert page.status_code == 200, (path, page.text)
        assert f"<title>{title} · relay dashboard</title>" in page.text
        for link, href in [
            ("nav-overview", "/admin/ui/"),
            ("nav-sessions", "/admin/ui/sessions"),
            ("nav-events", "/admin/ui/events"),
            ("nav-destinations", "/admin/ui/destinations"),
            ("nav-dead-letters", "/admin/ui/dead-letters"),
        ]:
            assert f'<a id="{link}" href="{href}"' in page.text, (path, link)


def test_the_overview_shows_the_figures_and_what_needs_attention(failed):
    page = get(failed, "/admin/ui/").text
    assert '<section id="overview">' in page
    assert re.search(r'<dd id="events-per-minute">[0-9.]+</dd>', page)
    assert '<dd id="inbox-lag">0 waiting</dd>' in page
    failures = rows(page, "failures")
    assert any("ops-email" in row for row in failures) and any("ops-slack" in row for row in failures)
    assert 'id="all-well"' in page
    destination_state.pause(failed.redis, "crm", "paused by an operator", "operator", None)
    page = get(failed, "/admin/ui/").text
    (row,) = rows(page, "attention")
    assert 'id="attention-crm"' in row and "paused: paused by an operator" in row


def test_a_destination_whose_oldest_due_delivery_waited_a_minute_is_lagging(ui):
    due = time.time() - 90
    ui.redis.zadd(keys.queue_key("ops-slack"), {queues.member("wms:s-late:0", "ops-slack", 1, 0): due})
    (row,) = rows(get(ui, "/admin/ui/").text, "attention")
    assert 'id="attention-ops-slack"' in row and '<td class="attention-state">lagging</td>' in row
    page = get(ui, "/admin/ui/destinations").text
    line = re.search(r'<tr id="destination-ops-slack">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'<td>1</td>\n<td class="lagging">9\d\.\d</td>', line)


def test_the_sessions_page_lists_and_links_each_session(failed):
    page = get(failed, "/admin/ui/sessions").text
    assert '<form id="session-filter"' in page and '<select name="outcome">' in page
    (row,) = rows(page, "sessions")
    assert '<a class="session-link" href="/admin/ui/sessions/wms/s-failed">s-failed</a>' in row
    assert ">failed<" in row and "CONSTRAINT_VIOLATION" in row and FAILED_MID in row
    assert rows(get(failed, "/admin/ui/sessions", outcome="completed").text, "sessions") == [
        '<tr><td colspan="9">No session matches.</td></tr>'
    ]
    narrowed = get(failed, "/admin/ui/sessions", outcome="failed", source="wms", since="1h").text
    assert len(rows(narrowed, "sessions")) == 1


def test_a_session_shows_its_outcome_timeline_gap_and_deliveries(failed):
    page = get(failed, "/admin/ui/sessions/wms/s-failed").text
    assert '<span id="outcome">failed</span>' in page
    assert '<span id="reason">CONSTRAINT_VIOLATION at sequence 8</span>' in page
    timeline = rows(page, "timeline")
    events = [re.search(r'data-code="([A-Z_]+)" data-sequence="(\d+)"', row) for row in timeline]
    assert [(m.group(2), m.group(1)) if m else "gap" for m in events] == [
        ("0", "WMS_LOADED"),
        ("1", "CONFIGURATION_LOADED"),
        ("2", "CAMERA_PERMISSION_GRANTED"),
        "gap",
        ("5", "MEASUREMENT_CREATED"),
        ("6", "INTERMEDIATE_RESULTS"),
        ("7", "INTERMEDIATE_RESULTS"),
        ("8", "CONSTRAINT_VIOLATION"),
        ("9", "MEASUREMENT_CANCELED"),
        ("10", "PAGE_UNLOADED"),
    ]
    assert '<tr class="gap"><td colspan="7">sequences 3–4 missing</td></tr>' in timeline
    deciding = timeline[7]
    assert deciding.startswith(
        '<tr class="event" data-code="CONSTRAINT_VIOLATION" data-sequence="8">\n<td class="deciding"'
    )
    text = re.sub(r"<[^>]+>", "", deciding)
    assert "ops-slack scheduled at attempt 2 (last: HTTP 503)" in text
    assert "ops-email dead at attempt 1 (last: SMTP 550)" in text
    assert "crm ok at attempt 1" in text
    assert str(escape('{"constraint":"FACE_NOT_CENTERED"}')) in deciding
    assert '<a href="/admin/ui/events/wms:s-failed:session">wms:s-failed:session</a> SESSION_FAILED' in page


def test_an_unknown_session_is_a_404_page_saying_why(ui):
    response = get(ui, "/admin/ui/sessions/wms/nobody")
    assert response.status_code == 404
    assert (
        '<p class="error" id="error">no session &#39;nobody&#39; at source &#39;wms&#39; '
        "(a session is kept 7d after its last event)</p>"
    ) in response.text


def test_the_events_page_searches_and_links_each_event(failed):
    page = get(failed, "/admin/ui/events", outcome="failed").text
    assert '<form id="event-search"' in page
    (row,) = rows(page, "events")
    assert '<a class="event-link" href="/admin/ui/events/wms:s-failed:8">wms:s-failed:8</a>' in row
    assert len(rows(get(failed, "/admin/ui/events", session="s-failed", limit="3").text, "events")) == 3
    found = rows(get(failed, "/admin/ui/events", code="CONSTRAINT_VIOLATION", measurement=FAILED_MID).text, "events")
    assert len(found) == 1


def test_an_event_shows_its_body_rules_and_attempts(failed):
    page = get(failed, "/admin/ui/events/wms:s-failed:8").text
    body = re.search(r'<pre id="body">(.*?)</pre>', page, re.S).group(1)
    assert json.loads(html.unescape(body))["sequence"] == 8
    assert re.search(r'<ul id="rules">\s*<li>failed-measurements</li><li>everything-downstream</li>', page)
    statuses = sorted(re.findall(r"<td>(ops-slack|ops-email|crm)</td><td>\d+</td><td>\w+</td><td>([^<]+)</td>", page))
    assert statuses == [("crm", "HTTP 200"), ("ops-email", "SMTP 550"), ("ops-slack", "HTTP 503")]
    assert '<table id="attempts">' in page


def test_an_event_whose_body_was_cut_says_so(ui):
    event = sample_event("API_ERROR", "s-big", 0)
    event["payload"] = {"pad": "x" * 40_000}
    body = to_body(event)
    assert signed_post(ui.client, body).status_code == 202
    ui.drain()
    page = get(ui, "/admin/ui/events/wms:s-big:0").text
    assert (
        f'<p class="small" id="body-cut">Its first 32768 of {len(body)} bytes: the event log keeps no more.</p>' in page
    )
    assert 'id="body-cut"' not in get(ui, "/admin/ui/events/wms:s-failed:8").text


def test_an_unknown_event_is_a_404_page_saying_why(ui):
    response = get(ui, "/admin/ui/events/wms:nobody:1")
    assert response.status_code == 404
    assert "no event &#39;wms:nobody:1&#39; in the event log" in response.text


def test_hostile_session_ids_and_bodies_are_shown_escaped(ui):
    event = sample_event("CONSTRAINT_VIOLATION", HOSTILE, 0)
    event["payload"] = {"constraint": "<img src=x onerror=alert(1)>", "note": "</pre><script>alert(2)</script>"}
    assert signed_post(ui.client, to_body(event)).status_code == 202
    ui.drain()
    pages = [
        get(ui, "/admin/ui/sessions").text,
        get(ui, "/admin/ui/events").text,
        get(ui, f"/admin/ui/events/wms:{HOSTILE}:0").text,
        get(ui, f"/admin/ui/sessions/wms/{HOSTILE}").text,
    ]
    for page in pages:
        assert "<script>" not in page and "<img" not in page and "</pre><script>" not in page
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&#34;/.." in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in pages[2]
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[2]
    assert get(ui, f"/admin/ui/sessions/wms/{HOSTILE}").status_code == 200


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        (
            "/admin/ui/sessions",
            {"outcome": "exploded"},
            "outcome: must be one of &#39;in_progress&#39;, &#39;completed&#39;, &#39;failed&#39;, &#39;abandoned&#39;, got &#39;exploded&#39;",
        ),
        ("/admin/ui/sessions", {"since": "yesterday"}, "since: "),
        ("/admin/ui/sessions", {"limit": "0"}, "limit: must be a whole number from 1 to 1000, got &#39;0&#39;"),
        ("/admin/ui/sessions", {"limit": "1e3"}, "limit: must be a whole number from 1 to 1000, got &#39;1e3&#39;"),
        (
            "/admin/ui/sessions",
            {"outcom": "failed"},
            "unknown key &#39;outcom&#39; (allowed: &#39;outcome&#39;, &#39;source&#39;, &#39;since&#39;, &#39;limit&#39;)",
        ),
        (
            "/admin/ui/events",
            {"outcome": "lost"},
            "outcome: must be one of &#39;failed&#39;, &#39;retrying&#39;, &#39;pending&#39;, &#39;delivered&#39;, &#39;grouped&#39;, &#39;unrouted&#39;, got &#39;lost&#39;",
        ),
        ("/admin/ui/events", {"since": "-5m"}, "since: "),
        ("/admin/ui/events", {"limit": "5000"}, "limit: must be a whole number from 1 to 1000, got &#39;5000&#39;"),
        (
            "/admin/ui/dead-letters",
            {"since": "yesterday"},
            "since: must be an ISO 8601 time like 2026-11-28T09:00:00 or a duration ago like 2h, got &#39;yesterday&#39;",
        ),
        ("/admin/ui/dead-letters", {"sesion": "s"}, "unknown key &#39;sesion&#39;"),
    ],
)
def test_a_bad_filter_is_a_400_page_naming_what_is_wrong(ui, path, query, message):
    response = get(ui, path, **query)
    assert response.status_code == 400
    assert f'<p class="error" id="error">{message}' in response.text
    for key, value in query.items():  # the form keeps what was typed, to be corrected
        if key in ("since", "limit"):
            assert f'name="{key}" value="{escape(value)}"' in response.text


def test_a_bad_filter_gives_the_same_sentence_as_the_admin_api(ui):
    from tests.relay.web.test_admin_events import AUTH

    for path, query in [("/sessions", {"outcome": "x"}), ("/events", {"limit": "0"}), ("/sessions", {"since": "2x"})]:
        api = ui.client.get(f"/admin{path}", headers=AUTH, query_string=query).json["detail"]
        page = get(ui, f"/admin/ui{path}", **query).text
        assert f'<p class="error" id="error">{escape(api)}</p>' in page


TWO_CALLBACKS_YAML = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  crm: {type: http, url: "%(http)s/crm", signing_secret: "%(crm_secret)s"}
  dev-callback: {type: http, url: "%(http)s/dev-callback", signing_secret: "%(crm_secret)s"}
rules:
  - {name: everything, match: {}, to: [crm, dev-callback]}
"""
# A sender-chosen sessionId whose dot-segments, were its "/" left as they are, would turn the
# replay form of its letter to crm into the replay form of wms:victim:0's letter to dev-callback.
DOTTED = "x/../../dev-callback/wms:victim"
DOTTED_ID = f"wms:{DOTTED}:0"
DOTTED_PATH = "x%2F..%2F..%2Fdev-callback%2Fwms:victim"


def test_ids_with_dot_segments_stay_one_segment_in_every_link_and_form(relay_factory):
    relay = relay_factory(TWO_CALLBACKS_YAML)
    assert login(relay.client).status_code == 303
    for path in ("/crm", "/dev-callback"):
        relay.http.script(path, Reply(400, b"rejected"), Reply(400, b"rejected"))
    for session_id in (DOTTED, "victim"):
        assert signed_post(relay.client, to_body(sample_event("WMS_LOADED", session_id, 0))).status_code == 202
        relay.drain()
    assert dead_letters.get(relay.redis, "crm", DOTTED_ID) is not None
    assert dead_letters.get(relay.redis, "dev-callback", "wms:victim:0") is not None

    listing = get(relay, "/admin/ui/dead-letters").text
    href = f"/admin/ui/dead-letters/crm/wms:{DOTTED_PATH}:0"
    assert f'<a class="dead-letter-link" href="{href}">{escape(DOTTED_ID)}</a>' in listing
    page = get(relay, href)
    assert page.status_code == 200
    action = re.search(r'<form method="post" action="([^"]+)">', page.text).group(1)
    assert action == f"{href}/replay"
    assert f'<a href="/admin/ui/events/wms:{DOTTED_PATH}:0">' in page.text
    assert f'<a href="/admin/ui/sessions/wms/{DOTTED_PATH}">' in page.text
    # What a browser does with the address: it resolves it, removing dot-segments (RFC 3986).
    posted_to = urljoin(f"http://localhost{href}", action)
    assert posted_to == f"http://localhost{href}/replay"
    assert urljoin(f"http://localhost{href}", f"/admin/ui/dead-letters/crm/{DOTTED_ID}/replay") == (
        "http://localhost/admin/ui/dead-letters/dev-callback/wms:victim:0/replay"  # what it was before
    )

    response = relay.client.post(urlsplit(posted_to).path, data={"csrf_token": csrf_of(page.text)})
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/ui/dead-letters")
    assert dead_letters.get(relay.redis, "crm", DOTTED_ID) is None  # the hostile letter was replayed
    assert dead_letters.get(relay.redis, "dev-callback", "wms:victim:0") is not None  # not the victim's
    for link in (f"/admin/ui/events/wms:{DOTTED_PATH}:0", f"/admin/ui/sessions/wms/{DOTTED_PATH}"):
        assert get(relay, link).status_code == 200, link
    events = get(relay, "/admin/ui/events").text
    assert f'<a class="event-link" href="/admin/ui/events/wms:{DOTTED_PATH}:0">' in events
    sessions = get(relay, "/admin/ui/sessions").text
    assert f'<a class="session-link" href="/admin/ui/sessions/wms/{DOTTED_PATH}">' in sessions


# Right-to-left override, first-strong isolate, zero-width space: each reorders or hides text.
INVISIBLE = {"\u202e": "\\u202e", "\u2066": "\\u2066", "\u200b": "\\u200b", "\U000e0041": "\\U000e0041"}


def test_invisible_formatting_characters_are_shown_as_escapes(ui):
    event = sample_event("CONSTRAINT_VIOLATION", "s-bidi", 0)
    event["payload"] = {"constraint": "ok\u202edelif\u2066 x\u200by \U000e0041é"}
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    assert signed_post(ui.client, body).status_code == 202
    ui.drain()
    shown = "ok\\u202edelif\\u2066 x\\u200by \\U000e0041é"
    event_page = get(ui, "/admin/ui/events/wms:s-bidi:0").text
    (row,) = [r for r in rows(get(ui, "/admin/ui/sessions/wms/s-bidi").text, "timeline") if "data-sequence" in r]
    body_shown = re.search(r'<pre id="body">(.*?)</pre>', event_page, re.S).group(1)
    assert f"&#34;constraint&#34;:&#34;{shown}&#34;" in body_shown
    assert f"<code>{{&#34;constraint&#34;:&#34;{shown}&#34;}}</code>" in row
    for page in (event_page, row):
        assert not any(raw in page for raw in INVISIBLE)
    assert ui.client.application.jinja_env.finalize is visible


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("a\u202eb", "a\\u202eb"),
        ("\u00ad\ufeff", "\\u00ad\\ufeff"),
        ("é ü 漢 \u2028", "é ü 漢 \u2028"),  # letters and separators are not Cf: shown as they are
        (Markup("<b>\u202e</b>"), Markup("<b>\u202e</b>")),  # a macro's output, its values already shown
        (3, 3),
        (None, None),
    ],
)
def test_visible(value, shown):
    assert visible(value) == shown
