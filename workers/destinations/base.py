"""What every destination adapter returns, and the shared rules for classifying failures."""

import email.utils
import re
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import requests

from config.secret import REDACTED
from relay.domain.event import Event
from relay.domain.outcome import Outcome

MAX_RETRY_AFTER = 86400.0  # a sanity bound; each destination's retry policy caps it further
MAX_DETAIL = 500
MIN_FRAGMENT = 4  # see secret_fragments


class Adapter(Protocol):
    """One configured destination: delivers one event, says how it went, never raises for its peer."""

    def deliver(self, event: Event, body: bytes) -> Outcome:
        """Send `event` (whose raw body is `body`) once."""
        ...

    def notify(self, text: str) -> Outcome:
        """Send a plain notice from the relay itself (a destination paused or resumed), once."""
        ...

    def deliver_digest(self, events: list[Event]) -> Outcome:
        """Send `events`, deliveries that waited for this rate-limited destination, as one message, once.

        Only chat and mail fold (slack, email): an HTTP callback raises NotImplementedError, since
        each of its receivers' requests must carry one event's own signed body. `events` must not
        be empty (ValueError).
        """
        ...


def classify_http(status: int, retry_after_header: str | None, detail: str) -> Outcome:
    """Status classes as Standard Webhooks and Alertmanager use them."""
    label = f"HTTP {status}"
    if 200 <= status < 300:
        return Outcome("ok", label, detail)
    if status == 410:
        return Outcome("gone", label, detail)
    if status in (408, 429) or status >= 500:
        # 5xx is assumed recoverable; 408 and 429 say so explicitly.
        return Outcome("transient", label, detail, retry_after_seconds(retry_after_header))
    return Outcome("permanent", label, detail or ("redirects are not followed" if 300 <= status < 400 else ""))


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """Parse Retry-After (delay-seconds or an HTTP date), capped at MAX_RETRY_AFTER; None if absent or bad."""
    if not header:
        return None
    value = header.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def scrub(text: str, *secrets: str) -> str:
    """Remove secrets from an error text: each whole, and each fragment of it (secret_fragments)."""
    fragments = sorted({f for secret in secrets if secret for f in secret_fragments(secret)}, key=len, reverse=True)
    if fragments:
        # One pass, longest first: a fragment is never looked for inside a '<redacted>' already written.
        text = re.sub("|".join(map(re.escape, fragments)), REDACTED, text)
    return text[:MAX_DETAIL]


def secret_fragments(secret: str) -> set[str]:
    """`secret` and every part of it that a receiver or a library may quote on its own.

    For a URL: its userinfo, path, each path segment, query, each query value, and fragment, as
    written and percent-decoded (a Slack webhook's credential is its path segments; a callback's
    is often a query value). For anything else (a header value such as 'Bearer <token>'): its
    words. A part shorter than MIN_FRAGMENT is no credential, and replacing it would garble texts.
    """
    parts = {secret}
    try:
        split = urlsplit(secret)
        is_url = bool(split.scheme and split.netloc)
    except ValueError:
        is_url = False
    if is_url:
        parts |= {split.username or "", split.password or "", split.path, split.query, split.fragment}
        parts |= {f"{split.path}?{split.query}", *split.path.split("/")}
        parts |= {value for _, _, value in (pair.partition("=") for pair in split.query.split("&"))}
        parts |= {value for _, value in parse_qsl(split.query, keep_blank_values=True)}
    else:
        parts |= set(secret.split())
    parts |= {unquote(part) for part in parts}
    return {part for part in parts if part == secret or len(part) >= MIN_FRAGMENT}


# How a response is judged: (status, Retry-After header, the start of the body, scrubbed) -> Outcome.
Judge = Callable[[int, str | None, str], Outcome]


def judge_http(status: int, retry_after_header: str | None, text: str) -> Outcome:
    """The default judge: status classes (classify_http), with the start of the body as detail."""
    return classify_http(status, retry_after_header, text[:200])


def post(
    session: requests.Session, url: str, secrets: list[str], timeout: float, judge: Judge = judge_http, **kwargs: Any
) -> Outcome:
    """POST without following redirects and judge the answer; a timeout or connection failure is
    transient. `secrets` are scrubbed from every text that reaches the Outcome."""
    try:
        # stream=True: the body is read by response_text, a few KiB at most, whatever is sent.
        response = session.post(url, timeout=timeout, allow_redirects=False, stream=True, **kwargs)
    except requests.Timeout as exc:
        return Outcome("transient", "timeout", scrub(f"{exc.__class__.__name__}: {exc}", *secrets))
    except requests.RequestException as exc:
        return Outcome("transient", "connection error", scrub(f"{exc.__class__.__name__}: {exc}", *secrets))
    return judge(response.status_code, response.headers.get("Retry-After"), scrub(response_text(response), *secrets))


def response_text(response: requests.Response, limit: int = 4096) -> str:
    """The start of a response's body as text, stripped; the connection goes back to the pool."""
    try:
        return response.raw.read(limit, decode_content=True).decode("utf-8", "replace").strip()
    except (requests.RequestException, OSError, ValueError):
        return ""
    finally:
        response.close()
