"""What a catch-all route (the admin API's, the dashboard's) says of a path no other route takes
with this method: the methods that path does take."""

from flask import current_app, request
from werkzeug.exceptions import HTTPException

# Every method HTTP clients send; Werkzeug's own 405 lists HEAD and OPTIONS too.
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def other_methods() -> list[str]:
    """The methods the request's path takes by another route than the one answering it."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in METHODS:
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.append(method)
    return allowed
