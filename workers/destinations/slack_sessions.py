"""Slack messages for what the relay derives: a session's outcome, a rule's grouped message, a digest.

Each leads with what a person needs (which measurement, why, how long, the last SNR), then a
compact timeline or list. Every piece of event data is mrkdwn-escaped here, and every message
keeps within Block Kit's limits however many events it carries: long lists are cut, saying how
many lines were left out and which `relay` command shows them all.
"""

from typing import Any

from relay.domain.event import Event
from workers.destinations.digest import DigestLine, digest, more_hint
from workers.destinations.session_view import Row, group_view, session_view, show_command, shown
from workers.destinations.slack_text import (
    FIELDS_PER_SECTION,
    SECTION_TEXT_MAX,
    context,
    cut,
    field,
    header,
    mrkdwn,
    section,
    sections,
)
from workers.destinations.summary import SEVERITY_COLOUR, SEVERITY_EMOJI, clip

# A timeline in chat: its start, the deciding event with its neighbours, and its end.
TIMELINE_HEAD = 6
TIMELINE_TAIL = 14
GROUP_HEAD = 10
GROUP_TAIL = 10
LINE_MAX = 400  # one line of a timeline or digest, escaped: a glance, not the whole payload
DETAIL_MAX = 200  # a line's payload, before escaping
DIGEST_LINES = 20


def session_message(event: Event) -> dict[str, Any]:
    """The Slack message of a session's outcome (SESSION_FAILED, _COMPLETED, _ABANDONED)."""
    view = session_view(event)
    emoji = SEVERITY_EMOJI[view.severity]
    lines = [f"{emoji} *{view.severity}* {mrkdwn(view.lead)}"]
    if view.reason is not None:
        lines.append(f"*Why:* {view.reason.sentence(mrkdwn, lambda code: f'`{code}`')}")
    rows = shown(view.rows, TIMELINE_HEAD, TIMELINE_TAIL)
    timeline = ["*Timeline*", *(_row(row, row.offset) for row in rows)]
    blocks = [
        header(mrkdwn(view.headline)),
        section("\n".join(lines)),
        {"type": "section", "fields": [field(label, value) for label, value in view.facts[:FIELDS_PER_SECTION]]},
        *sections(timeline),
    ]
    notes = [f"event `{mrkdwn(view.event_id)}`", f"full timeline: {_command(view.session)}"]
    if view.note:
        notes.append(mrkdwn(view.note))
    blocks.append(context(" · ".join(notes)))
    fallback = f"{emoji} [{view.severity}] {mrkdwn(view.headline)} - session {mrkdwn(view.session)}"
    return _message(fallback, view.severity, blocks)


def group_message(event: Event) -> dict[str, Any]:
    """The Slack message of a rule's grouped events of one session (EVENT_GROUP), or its follow-up."""
    view = group_view(event)
    emoji = SEVERITY_EMOJI[view.severity]
    facts = [f"rule `{mrkdwn(view.rule)}`"] if view.rule else []
    facts.append(f"measurement {mrkdwn(view.measurement)}" if view.measurement else "no measurement yet")
    headline = f"{emoji} *{view.severity}* " + " · ".join(facts)
    rows = shown(view.rows, GROUP_HEAD, GROUP_TAIL)
    blocks = [
        header(mrkdwn(view.headline[:1].upper() + view.headline[1:])),
        section(headline),
        *sections([_row(row, row.clock) for row in rows]),
        context(f"event `{mrkdwn(view.event_id)}` · full timeline: {_command(view.session)}"),
    ]
    fallback = f"{emoji} [{view.severity}] {mrkdwn(view.headline)}"
    return _message(fallback, view.severity, blocks)


def digest_message(events: list[Event]) -> dict[str, Any]:
    """One Slack message for several deliveries that waited for a rate-limited destination.

    The headline counts every event; the first DIGEST_LINES get a line each (most severe first),
    and the rest are counted in a last line with the `relay` command that lists them.
    """
    d = digest(events)
    emoji = SEVERITY_EMOJI[d.severity]
    lines = [_digest_line(line) for line in d.lines[:DIGEST_LINES]]
    hidden = d.lines[DIGEST_LINES:]
    if hidden:
        lines.append(f"+{len(hidden)} more (`{more_hint(hidden)}`)")
    blocks = [
        header(mrkdwn(d.headline[:1].upper() + d.headline[1:])),
        *sections(lines),
        context(
            f"{len(events)} deliveries folded into one message while this destination was rate-limited"
            f" · each session in full: `{mrkdwn('relay sessions show <sessionId>')}`"
        ),
    ]
    return _message(f"{emoji} [{d.severity}] {mrkdwn(d.headline)}", d.severity, blocks)


def _row(row: Row, when: str) -> str:
    """One timeline line: '`#6` `+0:32` :red_circle: *CONSTRAINT_VIOLATION* Constraint: …'."""
    if row.kind != "event":
        return f"_{mrkdwn(row.text)}_"
    line = f"`{mrkdwn(row.sequence)}`" + (f" `{mrkdwn(when)}`" if when else "")
    line += f" {SEVERITY_EMOJI[row.severity]} *{mrkdwn(row.code)}*"
    if row.detail:
        line += f"  {mrkdwn(clip(row.detail, DETAIL_MAX))}"
    if row.deciding:
        line += "  ← *why*"
    return cut(line, LINE_MAX)


def _digest_line(line: DigestLine) -> str:
    return cut(f"• session {mrkdwn(line.session)} — {mrkdwn(line.text)}", LINE_MAX)


def _message(fallback: str, severity: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "text": cut(fallback, SECTION_TEXT_MAX),
        "attachments": [{"color": SEVERITY_COLOUR[severity], "blocks": blocks}],
    }


def _command(session: str) -> str:
    """show_command() as Slack code, unless a backtick in it would end the code early."""
    command = mrkdwn(show_command(session))
    return command if "`" in command else f"`{command}`"
