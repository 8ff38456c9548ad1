"""The dashboard's tests: the real app (tests/conftest.py's relay, on the private Redis) driven
through Flask's test client as a browser would, a form at a time."""

import re

import pytest

from tests.conftest import ADMIN_TOKEN, Relay

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_FAILED = (
    '<p class="error" id="error">the form was stale or not from this dashboard (CSRF check failed); '
    "reload the page and try again</p>"
)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


def login(client, token: str = ADMIN_TOKEN, next_: str | None = None):
    """Open the login page, then post the token with the page's CSRF token."""
    page = client.get("/admin/ui/login", query_string={"next": next_} if next_ else None)
    assert page.status_code == 200
    form = {"token": token, "csrf_token": csrf_of(page.text)}
    if next_:
        form["next"] = next_
    return client.post("/admin/ui/login", data=form)


def post_form(client, path: str, data: dict | None = None, page: str = "/admin/ui/", **kwargs):
    """Post a form to `path` with the CSRF token of `page` (a page that holds the form)."""
    token = csrf_of(client.get(page).text)
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)


@pytest.fixture
def ui(relay) -> Relay:
    """tests/conftest.py's relay (admin token set), its client logged in to the dashboard."""
    response = login(relay.client)
    assert response.status_code == 303, response.text
    return relay
