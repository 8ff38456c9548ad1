"""Slack's text rules: the one escaping of event data (mrkdwn) and Block Kit's limits, held by cutting."""

import re
from typing import Any

# Block Kit limits (api.slack.com/reference/block-kit): longer values are cut, not rejected.
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
FIELDS_PER_SECTION = 10
BLOCKS_MAX = 50


def mrkdwn(text: str) -> str:
    """`text` escaped for any Slack text: the one escaping rule of this adapter."""
    # Slack's formatting reference: '&', '<' and '>' are its control characters (mentions, links,
    # dates), and exactly these three must be sent as entities; it decodes those and only those.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


def cut(text: str, limit: int) -> str:
    """`text` (already escaped) cut to `limit` characters, '…' included, never inside an entity."""
    if len(text) <= limit:
        return text
    # Never leave part of an entity mrkdwn() wrote: '&am' would show as itself.
    return _PARTIAL_ENTITY.sub("", text[: limit - 1]) + "…"


def header(text: str) -> dict[str, Any]:
    """A header block for `text` (already escaped); a blank one, which Slack refuses, says so."""
    shown = text if text.strip() else "(blank)"
    return {"type": "header", "text": {"type": "plain_text", "text": cut(shown, HEADER_MAX), "emoji": True}}


def section(text: str) -> dict[str, Any]:
    """A mrkdwn section block for `text` (already escaped), cut to its limit."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_TEXT_MAX)}}


def field(label: str, value: str) -> dict[str, str]:
    """A section field: the label in bold over its value, both escaped here."""
    return {"type": "mrkdwn", "text": cut(f"*{mrkdwn(label)}*\n{mrkdwn(value)}", FIELD_TEXT_MAX)}


def context(text: str) -> dict[str, Any]:
    """A context block of one mrkdwn text (already escaped)."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, FIELD_TEXT_MAX)}]}


def sections(lines: list[str]) -> list[dict[str, Any]]:
    """`lines` (already escaped) packed into as few sections as their text limit allows."""
    out: list[dict[str, Any]] = []
    chunk: list[str] = []
    size = 0
    for line in (cut(line, SECTION_TEXT_MAX) for line in lines):
        if chunk and size + 1 + len(line) > SECTION_TEXT_MAX:
            out.append(section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + (1 if size else 0)
    return out + ([section("\n".join(chunk))] if chunk else [])
