"""The HTML of every mail: a card under a banner coloured by severity, facts, and tables of events.

Mail clients drop <style> blocks and external files, so every style is inline and the layout is
tables. Every text these functions take is escaped here (html.escape, quotes included); the
only markup they take is their own, from another function of this module (`html_parts`).
"""

import html

from workers.destinations.session_view import Row
from workers.destinations.summary import SEVERITY_COLOUR, SEVERITY_INK, SEVERITY_TINT

FONT = "-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
MONO = "Menlo,Consolas,'Liberation Mono',monospace"
TEXT = "#1f2328"
MUTED = "#59636e"
RULE = "#e3e6ea"
PAGE = "#f3f4f6"


class Markup(str):
    """HTML written by this module: put in a page as it is, where any other text is escaped."""


def e(text: str) -> str:
    """`text` escaped for HTML, quotes included: the one escaping rule of the mail's HTML part."""
    return text if isinstance(text, Markup) else html.escape(text, quote=True)


def page(severity: str, kicker: str, headline: str, body: list[Markup], footer: list[str]) -> str:
    """A whole HTML document: the banner (severity badge, kicker, headline), the body, the footer."""
    colour, ink = SEVERITY_COLOUR[severity], SEVERITY_INK[severity]
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f'</head><body style="margin:0;padding:0;background:{PAGE};">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:{PAGE};">'
        '<tr><td align="center" style="padding:24px 12px;">'
        '<table role="presentation" width="680" cellpadding="0" cellspacing="0" style="width:100%;max-width:680px;'
        f"background:#ffffff;border:1px solid {RULE};border-radius:8px;border-collapse:separate;"
        f'font-family:{FONT};color:{TEXT};">'
        f'<tr><td style="background:{colour};color:{ink};padding:18px 24px 20px;border-radius:8px 8px 0 0;">'
        f'<span style="display:inline-block;padding:2px 8px;border:1px solid {ink};border-radius:4px;'
        f'font-size:12px;font-weight:bold;letter-spacing:0.08em;">{e(severity)}</span>'
        f'<span style="font-size:12px;letter-spacing:0.08em;text-transform:uppercase;padding-left:10px;">'
        f"{e(kicker)}</span>"
        f'<div style="font-size:21px;font-weight:bold;line-height:1.3;margin-top:10px;">{e(headline)}</div>'
        "</td></tr>"
        f'<tr><td style="padding:20px 24px 8px;font-size:14px;line-height:1.5;">{"".join(body)}</td></tr>'
        f'<tr><td style="padding:12px 24px 16px;border-top:1px solid {RULE};font-size:12px;line-height:1.6;'
        f'color:{MUTED};">{"<br>".join(e(line) for line in footer)}</td></tr>'
        "</table></td></tr></table></body></html>"
    )


def paragraph(text: str, strong: bool = False) -> Markup:
    """A paragraph of text."""
    weight = "font-weight:bold;" if strong else ""
    return Markup(f'<p style="margin:0 0 14px;font-size:15px;{weight}">{e(text)}</p>')


def heading(text: str) -> Markup:
    """A small heading over a table."""
    return Markup(
        f'<div style="margin:18px 0 6px;font-size:12px;font-weight:bold;letter-spacing:0.06em;'
        f'text-transform:uppercase;color:{MUTED};">{e(text)}</div>'
    )


def callout(severity: str, label: str, code: str, at: str, detail: str) -> Markup:
    """A box tinted by severity: why a session ended, the deciding event's code, place and payload."""
    code_html = f'<span style="font-family:{MONO};font-weight:bold;">{e(code)}</span>' if code else ""
    at_html = f' <span style="color:{MUTED};">at {e(at)}</span>' if at else ""
    detail_html = f'<div style="margin-top:4px;">{e(detail)}</div>' if detail else ""
    return Markup(
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="margin:0 0 16px;">'
        f'<tr><td style="background:{SEVERITY_TINT[severity]};border-left:4px solid {SEVERITY_COLOUR[severity]};'
        f'padding:10px 14px;font-size:14px;">'
        f'<div style="font-size:12px;font-weight:bold;letter-spacing:0.06em;text-transform:uppercase;'
        f'color:{MUTED};margin-bottom:2px;">{e(label)}</div>{code_html}{at_html}{detail_html}</td></tr></table>'
    )


def facts(rows: list[tuple[str, str]]) -> Markup:
    """Label and value, one row each."""
    cells = "".join(
        f'<tr><th align="left" valign="top" style="{_CELL}color:{MUTED};font-weight:normal;white-space:nowrap;'
        f'width:130px;">{e(label)}</th><td style="{_CELL}">{e(value)}</td></tr>'
        for label, value in rows
    )
    return Markup(f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0">{cells}</table>')


def badge(severity: str) -> Markup:
    """A small pill in the severity's colour."""
    return Markup(
        f'<span style="display:inline-block;padding:1px 6px;border-radius:3px;font-size:11px;font-weight:bold;'
        f'background:{SEVERITY_COLOUR[severity]};color:{SEVERITY_INK[severity]};">{e(severity)}</span>'
    )


def table(columns: list[str], rows: list[Markup]) -> Markup:
    """A table of events: a header row over `rows` (from `row` and `note_row`)."""
    head = "".join(f'<th align="left" style="{_HEAD}">{e(c)}</th>' for c in columns)
    return Markup(
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;'
        f'font-size:13px;"><tr>{head}</tr>{"".join(rows)}</table>'
    )


def row(cells: list[str], tint: str = "") -> Markup:
    """One row of a table, on a `tint` background when given."""
    style = f' style="background:{tint};"' if tint else ""
    tds = "".join(f'<td valign="top" style="{_ROW}">{e(cell)}</td>' for cell in cells)
    return Markup(f"<tr{style}>{tds}</tr>")


def note_row(text: str, span: int) -> Markup:
    """A row across `span` columns saying something about the rows around it (a gap, a cut)."""
    return Markup(f'<tr><td colspan="{span}" style="{_ROW};color:{MUTED};font-style:italic;">{e(text)}</td></tr>')


def mono(text: str, bold: bool = False, muted: bool = False) -> Markup:
    """`text` in a monospace font: codes, sequence numbers, ids."""
    style = f"font:12px {MONO};" + "font-weight:bold;" * bold + f"color:{MUTED};" * muted
    return Markup(f'<span style="{style}">{e(text)}</span>')


def timeline(rows: list[Row], with_offset: bool) -> Markup:
    """A session's events: sequence, time, severity, code and key payload; gaps and cuts as notes."""
    columns = ["#", *(["Time"] if with_offset else []), "UTC", "Severity", "Event", "Details"]
    out: list[Markup] = []
    for r in rows:
        if r.kind != "event":
            out.append(note_row(r.text, len(columns)))
            continue
        why = f' <b style="color:{SEVERITY_COLOUR[r.severity]};white-space:nowrap;">← why</b>' * r.deciding
        cells = [mono(r.sequence, muted=True), *([r.offset] if with_offset else []), r.clock, badge(r.severity)]
        cells += [mono(r.code, bold=r.deciding), Markup(e(r.detail) + why)]
        out.append(row(cells, SEVERITY_TINT[r.severity] if r.deciding else ""))
    return table(columns, out)


_CELL = f"padding:5px 12px 5px 0;border-bottom:1px solid {RULE};"
_HEAD = (
    f"padding:6px 10px 6px 0;border-bottom:2px solid {RULE};color:{MUTED};font-size:11px;"
    "font-weight:bold;letter-spacing:0.05em;text-transform:uppercase;white-space:nowrap;"
)
_ROW = f"padding:6px 9px 6px 0;border-bottom:1px solid {RULE}"
