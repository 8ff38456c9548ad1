"""The Flask app factory: settings and config are loaded and checked before anything is served."""

import os
import sys

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from redis import Redis

from config.errors import ConfigError
from config.loader import load
from config.model import RelayConfig
from config.settings import Settings
from relay import logs
from relay.store.connection import connect
from relay.store.inbox import Inbox
from relay.web import admin, dashboard, deadline, errors, health, hooks, metrics, openapi


def create_app(
    settings: Settings | None = None, config: RelayConfig | None = None, redis: Redis | None = None
) -> Flask:
    """Build the web app; anything not given is read from the environment and the config file.

    Raises:
        ConfigError: the environment or the config file is invalid (every problem listed).
    """
    if settings is None or config is None:
        settings, config = load()
        logs.configure(settings.log_level, settings.log_format)
    if redis is None:
        redis = connect(settings.require_redis_url(), settings.redis_tls_verify)

    app = Flask(__name__)
    # Flask's default provider, as always here: the JSONProvider it is typed as has no sort_keys.
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False  # {"status": ..., "id": ...} reads better in that order
    app.config["RELAY"] = config
    app.config["RELAY_SETTINGS"] = settings
    # One byte over the limit, so that a chunked body that is too large can be told apart
    # from one of exactly the limit (relay.web.hooks).
    app.config["MAX_CONTENT_LENGTH"] = config.ingest.max_body_bytes + 1
    app.extensions["relay.redis"] = redis
    app.extensions["relay.store.inbox"] = Inbox(redis, config.ingest.dedup_window)
    app.extensions["relay.metrics"] = metrics.IngestMetrics()
    errors.register(app)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(admin.bp)
    dashboard.register(app)  # /admin/ui: the operator's pages, with their own session cookie
    app.register_blueprint(openapi.bp)
    app.register_blueprint(metrics.bp)
    return app


def create_app_or_exit() -> Flask:
    """create_app() for gunicorn: a bad config prints its problems and exits 3.

    The Procfile runs gunicorn with --preload, so this runs once in the master before any worker
    is forked: the operator sees the problem list, not a traceback per worker. (Without --preload,
    exit code 3 is gunicorn's "worker failed to boot" and still stops it.) The web worker's own
    variable (RELAY_READ_TIMEOUT, relay.web.deadline) is checked here too, with the rest.
    """
    problems = []
    try:
        deadline.read_timeout(os.environ)
    except ValueError as exc:
        problems.append(str(exc))
    # Before any metric exists, so that every gunicorn worker forked from here counts in files
    # that a scrape of any one of them sums (relay/web/metrics.py).
    metrics.use_multiprocess_dir()
    try:
        app = create_app()
    except ConfigError as exc:
        problems[:0] = exc.problems
    if problems:
        print("\n".join(problems), file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    return app
