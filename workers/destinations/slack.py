"""Slack incoming webhooks: a Block Kit message readable at a glance, with a plain-text fallback."""

from typing import Any

import requests
from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment

from config.destinations import SlackDestination
from relay.domain.event import Event
from relay.domain.outcome import Outcome
from workers.destinations.base import judge_http, post, scrub
from workers.destinations.summary import SEVERITY_COLOUR, SEVERITY_EMOJI, summarize

# Block Kit limits (api.slack.com/reference/block-kit): longer values are cut, not rejected.
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
FIELDS_PER_SECTION = 10
MAX_PAYLOAD_SECTIONS = 2
PAYLOAD_VALUE_MAX = 300  # a chat alert is for reading at a glance; the callback carries everything


def compile_template(source: str) -> Template:
    """A sandboxed template whose every printed value is mrkdwn-escaped, so event data cannot
    inject links or mentions such as <!channel>."""
    env = SandboxedEnvironment(
        autoescape=False, finalize=lambda value: _escape(str(value)) if value is not None else ""
    )
    return env.from_string(source)


def slack_message(event: Event, template: Template | None = None) -> dict[str, Any]:
    """The webhook payload for `event`: fallback `text` plus blocks in an attachment coloured by severity."""
    s = summarize(event)
    emoji = SEVERITY_EMOJI[s.severity]
    measurement = f" (measurement {event.measurement_id})" if event.measurement_id else ""
    fallback = f"{emoji} [{s.severity}] {_escape(s.title)} - session {_escape(event.session_id)}{_escape(measurement)}"
    headline = f"{emoji} *{s.severity}* {_escape(s.description)}"
    if template is not None:
        headline = fallback = _render(template, event)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(s.title, HEADER_MAX), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(headline, SECTION_TEXT_MAX)}},
        {"type": "section", "fields": [_field(label, value) for label, value in s.facts]},
    ]
    chunks = [s.payload[i : i + FIELDS_PER_SECTION] for i in range(0, len(s.payload), FIELDS_PER_SECTION)]
    for chunk in chunks[:MAX_PAYLOAD_SECTIONS]:
        fields = [_field(label, _cut(value, PAYLOAD_VALUE_MAX)) for label, value in chunk]
        blocks.append({"type": "section", "fields": fields})
    hidden = len(s.payload) - FIELDS_PER_SECTION * MAX_PAYLOAD_SECTIONS
    context = f"event `{_escape(event.id)}`" + (f" - {hidden} more payload field(s) not shown" if hidden > 0 else "")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(context, FIELD_TEXT_MAX)}]})
    return {
        "text": _cut(fallback, SECTION_TEXT_MAX),
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


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(f"*{label}*\n{_escape(value)}", FIELD_TEXT_MAX)}


def _escape(text: str) -> str:
    # Slack's mrkdwn needs exactly these three escaped (api.slack.com/reference/surfaces/formatting).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SlackAdapter:
    """Posts to one Slack incoming webhook; success is HTTP 200 with the body 'ok'."""

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
            json={"text": f":rotating_light: {_escape(text)}"},
        )

    def deliver(self, event: Event, body: bytes) -> Outcome:
        """Post the Block Kit message for `event`."""
        url = self._config.webhook_url.reveal()
        try:
            message = slack_message(event, self._template)
        except Exception as exc:  # noqa: BLE001 - a template error is the config's, not the event's
            return Outcome("permanent", "template error", scrub(f"{exc.__class__.__name__}: {exc}", url))
        return post(self._session, url, [url], self._config.timeout, judge=_judge_slack, json=message)


def _judge_slack(status: int, retry_after_header: str | None, text: str) -> Outcome:
    # Slack answers 200 with an error text for some failures: only 'ok' is a success.
    if status == 200 and text != "ok":
        return Outcome("permanent", "HTTP 200", f"Slack did not answer 'ok': {text[:200]!r}")
    return judge_http(status, retry_after_header, text)
