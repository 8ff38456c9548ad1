"""Slack incoming webhooks: a Block Kit message readable at a glance, with a plain-text fallback.

WMS's own events are laid out here; what the relay derives (sessions' outcomes, grouped messages,
digests) in slack_sessions.py.
"""

from typing import Any

import requests
from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment

from config.destinations import SlackDestination
from relay.domain.event import Event
from relay.domain.outcome import Outcome
from workers.destinations.base import judge_http, post, scrub
from workers.destinations.session_view import is_group, is_session
from workers.destinations.slack_sessions import digest_message, group_message, session_message
from workers.destinations.slack_text import (
    FIELD_TEXT_MAX,
    FIELDS_PER_SECTION,
    HEADER_MAX,
    SECTION_TEXT_MAX,
    cut,
    field,
    mrkdwn,
)
from workers.destinations.summary import SEVERITY_COLOUR, SEVERITY_EMOJI, readable, render_value, summarize

__all__ = ["FIELD_TEXT_MAX", "HEADER_MAX", "SECTION_TEXT_MAX", "SlackAdapter", "mrkdwn", "slack_message"]

MAX_PAYLOAD_SECTIONS = 2
PAYLOAD_VALUE_MAX = 300  # a chat alert is for reading at a glance; the callback carries everything


def compile_template(source: str) -> Template:
    """A sandboxed template whose every printed value is mrkdwn-escaped, so event data cannot
    inject links or mentions such as <!channel>."""
    env = SandboxedEnvironment(autoescape=False, finalize=_template_text)
    return env.from_string(source)


def slack_message(event: Event, template: Template | None = None) -> dict[str, Any]:
    """The webhook payload for `event`: fallback `text` plus blocks in an attachment coloured by severity.

    Every piece of event data in it, payload keys included, is mrkdwn-escaped. `template` writes
    the headline of WMS's own events only: a derived event (a session's outcome, a grouped
    message) always gets its built-in layout, whatever the destination's template, since a
    template's variables (`sequence`, `payload.constraint`, ...) describe one WMS event and would
    print blanks or a raw summary payload where the alert must say what failed and why.
    """
    if is_session(event):
        return session_message(event)
    if is_group(event):
        return group_message(event)
    s = summarize(event)
    emoji = SEVERITY_EMOJI[s.severity]
    measurement = f" (measurement {dict(s.facts)['Measurement']})" if event.measurement_id else ""
    fallback = f"{emoji} [{s.severity}] {mrkdwn(s.title)} - session {mrkdwn(dict(s.facts)['Session'] + measurement)}"
    headline = f"{emoji} *{s.severity}* {mrkdwn(s.description)}"
    rendered = _render(template, event) if template is not None else ""
    if rendered.strip():  # Slack refuses a blank text object: a template that printed nothing keeps ours
        headline = fallback = rendered
    # A blank header is refused too, and an event code may be all spaces.
    header = mrkdwn(s.title.strip() or "(blank event code)")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(header, HEADER_MAX), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": cut(headline, SECTION_TEXT_MAX)}},
        {"type": "section", "fields": [field(label, value) for label, value in s.facts]},
    ]
    chunks = [s.payload[i : i + FIELDS_PER_SECTION] for i in range(0, len(s.payload), FIELDS_PER_SECTION)]
    for chunk in chunks[:MAX_PAYLOAD_SECTIONS]:
        fields = [field(label, cut(value, PAYLOAD_VALUE_MAX)) for label, value in chunk]
        blocks.append({"type": "section", "fields": fields})
    hidden = len(s.payload) - FIELDS_PER_SECTION * MAX_PAYLOAD_SECTIONS
    context = f"event `{mrkdwn(s.event_id)}`" + (f" - {hidden} more payload field(s) not shown" if hidden > 0 else "")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(context, FIELD_TEXT_MAX)}]})
    return {
        "text": cut(fallback, SECTION_TEXT_MAX),
        "attachments": [{"color": SEVERITY_COLOUR[s.severity], "blocks": blocks}],
    }


def _render(template: Template, event: Event) -> str:
    s = summarize(event)
    return template.render(
        event=event,
        code=event.code,
        severity=event.severity,
        session_id=event.session_id,
        measurement_id=event.measurement_id,
        sequence=event.sequence,
        payload=event.payload,
        source=event.source,
        time_utc=dict(s.facts)["Time (UTC)"],
        emoji=SEVERITY_EMOJI[event.severity],
        description=s.description,
    )


def _template_text(value: object) -> str:
    """What a template prints for a value: readable and escaped; objects and arrays as JSON."""
    if value is None:
        return ""
    # render_value, not str(): it spells JSON as JSON and does not recurse, whatever the nesting.
    text = render_value(value) if isinstance(value, (dict, list, tuple)) else str(value)
    return mrkdwn(readable(text))


class SlackAdapter:
    """Posts to one Slack incoming webhook; success is HTTP 200 with the body 'ok'.

    The destination's template applies to WMS's own events; derived events and digests keep
    their built-in layout (slack_message).
    """

    def __init__(self, config: SlackDestination, session: requests.Session):
        self._config = config
        self._session = session
        self._template = compile_template(config.template) if config.template is not None else None

    def notify(self, text: str) -> Outcome:
        """Post a plain message from the relay itself (a destination paused or resumed)."""
        url = self._config.webhook_url.reveal()
        return post(
            self._session,
            url,
            [url],
            self._config.timeout,
            judge=_judge_slack,
            json={"text": f":rotating_light: {mrkdwn(readable(text))}"},
        )

    def deliver(self, event: Event, body: bytes) -> Outcome:
        """Post the Block Kit message for `event`."""
        url = self._config.webhook_url.reveal()
        try:
            message = slack_message(event, self._template)
        except Exception as exc:  # noqa: BLE001 - a template error is the config's, not the event's
            return Outcome("permanent", "template error", scrub(f"{exc.__class__.__name__}: {exc}", url))
        return post(self._session, url, [url], self._config.timeout, judge=_judge_slack, json=message)

    def deliver_digest(self, events: list[Event]) -> Outcome:
        """Post one message for `events`, deliveries that waited for this rate-limited webhook."""
        url = self._config.webhook_url.reveal()
        message = digest_message(events)
        return post(self._session, url, [url], self._config.timeout, judge=_judge_slack, json=message)


def _judge_slack(status: int, retry_after_header: str | None, text: str) -> Outcome:
    # Slack answers 200 with an error text for some failures: only 'ok' is a success.
    if status == 200 and text != "ok":
        return Outcome("permanent", "HTTP 200", f"Slack did not answer 'ok': {text[:200]!r}")
    return judge_http(status, retry_after_header, text)
