"""What each mail says, as its subject, plain-text part and HTML part: a WMS event, a session's
outcome, a grouped message, a digest. Both parts say the severity: the HTML in a coloured banner,
the text on its first line.

Texts come readable() from summary.py, session_view.py and digest.py; email_html.py escapes them
for HTML, and the subject is put on one line here (a line break would start a header of its own).
"""

from dataclasses import dataclass

from relay.domain.event import Event
from workers.destinations import email_html as h
from workers.destinations.digest import digest
from workers.destinations.session_view import Row, group_view, session_view, show_command, shown
from workers.destinations.summary import clip, one_line, summarize

LABEL_WIDTH_MAX = 24
CODE_WIDTH_MAX = 28  # longer codes overflow their own line only, as labels do
SUBJECT_HEADLINE_MAX = 120
# A mail holds more of a timeline than a chat message, but Gmail clips an HTML part past ~100 KB
# (about a kilobyte a row): its start, its end, and the deciding event with its neighbours.
TIMELINE_HEAD = 25
TIMELINE_TAIL = 50
FOOTER = "Sent by the WMS webhook relay."


@dataclass(frozen=True)
class Mail:
    """A mail's words: its subject (one line), its plain-text part and its HTML part."""

    subject: str
    text: str
    html: str


def event_mail(event: Event) -> Mail:
    """The mail of one of WMS's own events: what happened, its facts and its payload."""
    s = summarize(event)
    rows = s.facts + s.payload
    text = [f"[{s.severity}] {s.title}: {s.description}", "", *_labelled(rows), "", f"event id: {s.event_id}"]
    body = [h.paragraph(s.description), h.facts(s.facts)]
    if s.payload:
        body += [h.heading("Payload"), h.facts(s.payload)]
    html = h.page(s.severity, "WMS event", s.title, body, [f"event id: {s.event_id}", FOOTER])
    return Mail(_subject(s.severity, s.title, dict(s.facts)["Session"]), _text(text), html)


def session_mail(event: Event) -> Mail:
    """The mail of a session's outcome: which measurement, why, how long, the last SNR, the timeline."""
    v = session_view(event)
    rows = shown(v.rows, TIMELINE_HEAD, TIMELINE_TAIL)
    text = [f"[{v.severity}] {v.headline}", "", v.lead]
    body = [h.paragraph(v.lead, strong=True)]
    if v.reason is not None:
        r = v.reason
        text.append(f"Why: {r.sentence()}")
        body.append(h.callout(v.severity, "Why", r.code, r.at, r.detail))
    text += ["", *_labelled(v.facts), "", "Timeline", *_timeline_text(rows, with_offset=True)]
    body += [h.facts(v.facts), h.heading("Timeline"), h.timeline(rows, with_offset=True)]
    if v.note:
        text.append(f"({v.note})")
        body.append(h.paragraph(f"({v.note})"))
    footer = [f"event id: {v.event_id}", f"full timeline: {show_command(v.session)}"]
    text += ["", *footer]
    html = h.page(v.severity, f"Session {v.outcome}", v.headline, body, [*footer, FOOTER])
    return Mail(_subject(v.severity, v.headline, v.session), _text(text), html)


def group_mail(event: Event) -> Mail:
    """The mail of a rule's grouped events of one session, or of its follow-up."""
    v = group_view(event)
    rows = shown(v.rows, TIMELINE_HEAD, TIMELINE_TAIL)
    facts = [("Rule", v.rule or "(unnamed)"), ("Measurement", v.measurement or "none yet"), ("Session", v.session)]
    headline = v.headline[:1].upper() + v.headline[1:]
    text = [f"[{v.severity}] {headline}", "", *_labelled(facts), "", *_timeline_text(rows, with_offset=False)]
    body = [h.facts(facts), h.heading("Events"), h.timeline(rows, with_offset=False)]
    footer = [f"event id: {v.event_id}", f"full timeline: {show_command(v.session)}"]
    kicker = "Grouped events, follow-up" if v.follow_up else "Grouped events"
    html = h.page(v.severity, kicker, headline, body, [*footer, FOOTER])
    rule = f" (rule {v.rule})" if v.rule else ""
    return Mail(_subject(v.severity, headline + rule, ""), _text([*text, "", *footer]), html)


def digest_mail(events: list[Event]) -> Mail:
    """One mail for several deliveries that waited for a rate-limited destination: every one listed."""
    d = digest(events)
    headline = d.headline[:1].upper() + d.headline[1:]
    intro = (
        f"{len(events)} deliveries waited for this destination's rate limit and are folded into this one mail,"
        " most severe first."
    )
    text = [f"[{d.severity}] {headline}", "", intro, ""]
    text += [f"- {line.time}  {line.severity:<5}  session {line.session} — {line.text}" for line in d.lines]
    cells = [h.row([line.time[11:], h.badge(line.severity), h.mono(line.session), line.text]) for line in d.lines]
    body = [h.paragraph(intro), h.table(["UTC", "Severity", "Session", "What"], cells)]
    footer = ["each session in full: relay sessions show <sessionId>"]
    html = h.page(d.severity, "Digest", headline, body, [*footer, FOOTER])
    return Mail(_subject(d.severity, f"Digest: {d.headline}", ""), _text([*text, "", *footer]), html)


def _subject(severity: str, headline: str, session: str) -> str:
    suffix = f" - session {session}" if session else ""
    return one_line(f"[WMS {severity}] {clip(headline, SUBJECT_HEADLINE_MAX)}{suffix}")


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _labelled(rows: list[tuple[str, str]]) -> list[str]:
    # Labels line up, but a long payload key only overflows its own row: padding every row to
    # its length would multiply the mail's size by the number of rows.
    width = min(max((len(label) for label, _ in rows), default=0), LABEL_WIDTH_MAX)
    return [f"{label.ljust(width)}  {value}" for label, value in rows]


def _timeline_text(rows: list[Row], with_offset: bool) -> list[str]:
    events = [r for r in rows if r.kind == "event"]
    seq = max((len(r.sequence) for r in events), default=0)
    off = max((len(r.offset) for r in events), default=0)
    code = min(max((len(r.code) for r in events), default=0), CODE_WIDTH_MAX)
    out = []
    for r in rows:
        if r.kind != "event":
            out.append(f"  {'':<{seq}}  {r.text}")
            continue
        when = f"{r.offset:>{off}}  " if with_offset else ""
        line = f"  {r.sequence:<{seq}}  {when}{r.clock}  {r.severity:<5}  {r.code:<{code}}  {r.detail}".rstrip()
        out.append(line + ("  <- why" if r.deciding else ""))
    return out
