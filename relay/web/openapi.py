"""GET /openapi.json: the HTTP contract of the relay (ingest, health, the admin API).

The document is relay/web/openapi.yaml, read once; tests/relay/web/test_openapi.py checks that it
and the app's routes agree.
"""

from functools import cache
from importlib import resources

import yaml
from flask import Blueprint, Response, jsonify

bp = Blueprint("openapi", __name__)


@cache
def document() -> dict:
    """The OpenAPI document, parsed once per process."""
    text = resources.files("relay.web").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3 document, as JSON."""
    return jsonify(document())
