"""The operator dashboard under /admin/ui: server-rendered pages over the same store functions
as the admin API and the CLI (sessions, the event log, destinations, dead letters), behind the
admin token typed into a login form. Off, and 404 like the rest of /admin, without
RELAY_ADMIN_TOKEN.

Its modules: `blueprint` (the blueprint, its pages' rendering, headers and errors), `auth` (the
session cookie, login, logout, CSRF), and one view module per page group: `overview`,
`sessions`, `events`, `destinations`, `dead_letters`. The query strings are checked by
relay/web/filters.py, as the admin API's are.
"""

from flask import Flask

from relay.web.dashboard import auth, dead_letters, destinations, events, overview, sessions
from relay.web.dashboard.blueprint import IdConverter, bp, visible

__all__ = ["register"]
_VIEWS = (auth, dead_letters, destinations, events, overview, sessions)  # imported for their routes


def register(app: Flask) -> None:
    """Serve the dashboard from `app`: its blueprint, the session cookie only its paths use, the
    `id` converter of its routes, and the finalize that shows every value's invisible formatting
    characters as escapes (the dashboard's are the only templates the app renders)."""
    app.session_interface = auth.DashboardSessions()
    app.url_map.converters["id"] = IdConverter
    app.jinja_env.finalize = visible
    app.register_blueprint(bp)
