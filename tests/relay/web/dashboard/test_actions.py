"""What an operator does from the dashboard: pause and resume a destination, replay one dead
letter, purge dead letters after a confirmation; each logged, each refused without its CSRF
token, each answered with a notice on the page it leads back to."""

import logging
import re

import pytest
from markupsafe import escape

from relay.domain.samples import sample_session, to_body
from relay.store import dead_letters, destination_state
from tests.conftest import ADMIN_TOKEN, signed_post
from tests.relay.store.test_dead_letters import make_letters
from tests.relay.web.dashboard.conftest import CSRF_FAILED, csrf_of, post_form

NO_SCOPE = "no filter given: name one, or say all=1 to mean every dead letter"


def notice(client, response) -> str:
    """The notice on the page a 303 leads to."""
    assert response.status_code == 303, response.text
    page = client.get(response.headers["Location"]).text
    found = re.search(r'<p class="notice" id="notice">(.*?)</p>', page)
    assert found, page
    return found.group(1)


def test_the_destinations_page_shows_each_one_with_its_state_and_backlog(ui):
    page = ui.client.get("/admin/ui/destinations").text
    assert '<table id="destinations">' in page
    for name in ("ops-slack", "ops-email", "crm"):
        row = re.search(rf'<tr id="destination-{name}">(.*?)</tr>', page, re.S).group(1)
        assert '<td class="state">active</td>' in row
        assert f'action="/admin/ui/destinations/{name}/pause"' in row and 'class="pause-button"' in row


def test_pause_then_resume_from_the_dashboard(ui, caplog):
    caplog.set_level(logging.DEBUG)
    response = post_form(ui.client, "/admin/ui/destinations/crm/pause", page="/admin/ui/destinations")
    assert notice(ui.client, response) == "paused crm"
    state = destination_state.get(ui.redis, "crm")
    assert (state.paused, state.paused_by) == ("paused from the dashboard", "operator")
    assert "dashboard: paused destination crm from 127.0.0.1" in caplog.text
    page = ui.client.get("/admin/ui/destinations").text
    row = re.search(r'<tr id="destination-crm">(.*?)</tr>', page, re.S).group(1)
    assert '<td class="state">paused</td>' in row and "paused from the dashboard" in row
    assert 'action="/admin/ui/destinations/crm/resume"' in row and 'class="resume-button"' in row

    again = post_form(ui.client, "/admin/ui/destinations/crm/pause", page="/admin/ui/destinations")
    assert notice(ui.client, again) == "crm is already paused"

    (event,) = sample_session(("WMS_LOADED",))
    signed_post(ui.client, to_body(event))
    ui.drain()
    assert ui.http.requests == []  # parked while paused
    response = post_form(ui.client, "/admin/ui/destinations/crm/resume", page="/admin/ui/destinations")
    assert notice(ui.client, response) == "resumed crm; released 1 waiting deliveries"
    assert destination_state.get(ui.redis, "crm").paused is None
    ui.drain()
    assert [r.path for r in ui.http.requests] == ["/crm?token=crm-token"]
    assert "dashboard: resumed destination crm (1 released) from 127.0.0.1" in caplog.text
    assert ADMIN_TOKEN not in caplog.text

    not_paused = post_form(ui.client, "/admin/ui/destinations/crm/resume", page="/admin/ui/destinations")
    assert notice(ui.client, not_paused) == "crm is not paused"


def test_pausing_an_unknown_destination_is_a_404_page(ui):
    response = post_form(ui.client, "/admin/ui/destinations/nope/pause")
    assert response.status_code == 404
    assert "no destination named &#39;nope&#39; (defined: &#39;ops-slack&#39;, &#39;ops-email&#39;, &#39;crm&#39;)" in (
        response.text
    )


def test_the_dead_letters_page_lists_filters_and_links_them(ui):
    ids = make_letters(ui, 2)
    page = ui.client.get("/admin/ui/dead-letters").text
    assert '<form id="dead-letter-filter"' in page
    for eid in ids:
        assert f'<a class="dead-letter-link" href="/admin/ui/dead-letters/crm/{eid}">{eid}</a>' in page
    # Unfiltered, the link asks to purge them all: its confirmation page says how many first.
    assert '<a id="purge-link" href="/admin/ui/dead-letters/purge?all=1">Purge all dead letters' in page
    session = ids[0].split(":")[1]
    page = ui.client.get("/admin/ui/dead-letters", query_string={"destination": "crm", "session": session}).text
    assert f'<a id="purge-link" href="/admin/ui/dead-letters/purge?destination=crm&amp;session={session}">' in page
    # Nothing listed, nothing to purge: no link, filtered or not.
    elsewhere = ui.client.get("/admin/ui/dead-letters", query_string={"destination": "ops-slack"}).text
    assert 'class="dead-letter-link"' not in elsewhere
    assert '<p class="small">0 dead letter(s).\n</p>' in elsewhere
    assert 'id="purge-link"' not in elsewhere and "Purge" not in elsewhere
    dead_letters.purge(ui.redis, dead_letters.find(ui.redis, dead_letters.Filter()))
    empty = ui.client.get("/admin/ui/dead-letters").text
    assert '<tr><td colspan="9">No dead letter matches.</td></tr>' in empty
    assert 'id="purge-link"' not in empty and "Purge" not in empty


def test_a_dead_letter_shows_why_its_body_and_attempts(ui):
    (eid,) = make_letters(ui, 1)
    page = ui.client.get(f"/admin/ui/dead-letters/crm/{eid}").text
    letter = dead_letters.get(ui.redis, "crm", eid)
    assert f'<pre id="body">{escape(letter.envelope["body"])}</pre>' in page
    assert re.search(r'<tr class="attempt"><td>[^<]+</td><td>1</td><td>permanent</td><td>HTTP 400</td>', page)
    assert f'<form method="post" action="/admin/ui/dead-letters/crm/{eid}/replay">' in page
    assert 'id="replay-button"' in page
    missing = ui.client.get("/admin/ui/dead-letters/crm/wms:nobody:1")
    assert missing.status_code == 404
    assert "no dead letter for &#39;wms:nobody:1&#39; to &#39;crm&#39;" in missing.text


def test_replaying_one_dead_letter(ui, caplog):
    caplog.set_level(logging.DEBUG)
    first, second = make_letters(ui, 2)
    path = f"/admin/ui/dead-letters/crm/{first}"
    refused = ui.client.post(f"{path}/replay", data={"csrf_token": "stale"})
    assert (refused.status_code, CSRF_FAILED in refused.text) == (403, True)
    assert dead_letters.get(ui.redis, "crm", first) is not None

    response = post_form(ui.client, f"{path}/replay", page=path)
    assert notice(ui.client, response) == "replayed 1 dead letter"
    assert response.headers["Location"] == "/admin/ui/dead-letters"
    assert dead_letters.get(ui.redis, "crm", first) is None
    assert dead_letters.get(ui.redis, "crm", second) is not None
    ui.drain()
    assert ui.redis.hget(f"relay:delivery:{first}", "crm") == b"ok"
    assert f"dashboard: replay of 1 dead letter ({first} to crm) from 127.0.0.1" in caplog.text


def test_purge_asks_first_and_refuses_an_empty_filter_without_all(ui, caplog):
    caplog.set_level(logging.DEBUG)
    ids = make_letters(ui, 3)
    refused = ui.client.get("/admin/ui/dead-letters/purge")
    assert refused.status_code == 400
    assert f'<p class="error" id="error">{NO_SCOPE}</p>' in refused.text
    assert 'id="confirm-purge"' not in refused.text
    bad = ui.client.get("/admin/ui/dead-letters/purge", query_string={"all": "yes"})
    assert bad.status_code == 400 and "all: must be 1 to mean every dead letter, got &#39;yes&#39;" in bad.text

    page = ui.client.get("/admin/ui/dead-letters/purge", query_string={"all": "1"}).text
    assert '<p id="purge-count">3 dead letter(s) match' in page
    assert '<form method="post" action="/admin/ui/dead-letters/purge">' in page and 'id="confirm-purge"' in page
    assert '<input type="hidden" name="all" value="1">' in page
    # An empty filter posted without all=1 is refused too, whatever the page said.
    empty = ui.client.post("/admin/ui/dead-letters/purge", data={"csrf_token": csrf_of(page)})
    assert empty.status_code == 400 and NO_SCOPE in empty.text
    stale = ui.client.post("/admin/ui/dead-letters/purge", data={"all": "1", "csrf_token": "stale"})
    assert stale.status_code == 403
    assert len(dead_letters.find(ui.redis, dead_letters.Filter())) == 3

    session = ids[0].split(":")[1]
    one = ui.client.get("/admin/ui/dead-letters/purge", query_string={"destination": "crm", "session": session}).text
    assert '<p id="purge-count">3 dead letter(s) match' in one  # make_letters: one session
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', one))
    assert set(form) == {"csrf_token", "destination", "session", "until"}
    response = ui.client.post("/admin/ui/dead-letters/purge", data=form)
    assert notice(ui.client, response) == "purged 3 dead letter(s)"
    assert dead_letters.find(ui.redis, dead_letters.Filter()) == []
    assert "dashboard: purged 3 dead letter(s) from 127.0.0.1" in caplog.text


def test_purge_leaves_the_letters_that_died_after_the_confirmation(ui):
    make_letters(ui, 1)
    page = ui.client.get("/admin/ui/dead-letters/purge", query_string={"all": "1"}).text
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    make_letters(ui, 1)
    assert notice(ui.client, ui.client.post("/admin/ui/dead-letters/purge", data=form)) == "purged 1 dead letter(s)"
    assert len(dead_letters.find(ui.redis, dead_letters.Filter())) == 1


@pytest.mark.parametrize("field", ["since", "until"])
def test_a_bad_purge_time_is_refused(ui, field):
    response = ui.client.get("/admin/ui/dead-letters/purge", query_string={field: "soon"})
    assert response.status_code == 400
    assert f"{field}: must be an ISO 8601 time" in response.text
