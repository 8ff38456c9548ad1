"""A session's outcome (SESSION_FAILED, _COMPLETED, _ABANDONED) in Slack and in mail: what failed
and why first, then how long, the last SNR, and a compact timeline with its gaps marked."""

import json

import pytest

from devtools.screenshots import failed_session
from relay.domain.event import Event
from tests.workers.destinations.derived import (
    FAILED_TIMELINE,
    MEASUREMENT,
    STARTED,
    html_rows,
    line,
    session_event,
    wms_event,
)
from workers.destinations.email import email_message
from workers.destinations.slack import compile_template, slack_message
from workers.destinations.slack_text import BLOCKS_MAX, FIELD_TEXT_MAX, HEADER_MAX, SECTION_TEXT_MAX

SENDER = "relay@wms.example.com"


def blocks(message: dict) -> list[dict]:
    return message["attachments"][0]["blocks"]


def timeline_lines(message: dict) -> list[str]:
    """The lines of every section after the facts: the timeline."""
    found = []
    for block in blocks(message)[3:]:
        if block["type"] == "section":
            found += block["text"]["text"].split("\n")
    return found


def plain(mail) -> list[str]:
    return mail.get_body(("plain",)).get_content().splitlines()


def html(mail) -> str:
    return mail.get_body(("html",)).get_content()


def test_a_failed_session_leads_with_the_measurement_the_reason_the_duration_and_the_snr_in_slack():
    message = slack_message(session_event())
    assert message["text"] == (
        ":red_circle: [ERROR] Measurement failed: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED) - session s-1"
    )
    assert message["attachments"][0]["color"] == "#d0312d"
    header, lead, facts, *_, context = blocks(message)
    assert header["text"]["text"] == "Measurement failed: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED)"
    assert lead["text"]["text"].split("\n") == [
        f":red_circle: *ERROR* Measurement {MEASUREMENT} failed after 40 s.",
        "*Why:* `CONSTRAINT_VIOLATION` at #7, +0:32 — Constraint: FACE_NOT_CENTERED",
    ]
    assert [f["text"] for f in facts["fields"]] == [
        f"*Measurement*\n{MEASUREMENT}",
        "*Duration*\n40 s (2025-11-30 10:52:40 – 10:53:20 UTC)",
        "*Last SNR*\n4.2",
        "*Session*\ns-1",
        "*Events*\n8 events · 1 gap (2 missing) · 1 out of order",
    ]
    assert timeline_lines(message) == [
        "*Timeline*",
        "`#0` `+0:00` :large_blue_circle: *WMS_LOADED*",
        "`#1` `+0:01` :large_blue_circle: *CONFIGURATION_LOADED*",
        "`#2` `+0:04` :large_blue_circle: *CAMERA_PERMISSION_GRANTED*",
        "_… 2 events missing (3–4)_",
        "`#5` `+0:09` :large_blue_circle: *MEASUREMENT_CREATED*",
        "`#6` `+0:21` :large_blue_circle: *INTERMEDIATE_RESULTS*  SNR: 4.2 · Result sequence: 1",
        "`#7` `+0:32` :red_circle: *CONSTRAINT_VIOLATION*  Constraint: FACE_NOT_CENTERED  ← *why*",
        "`#8` `+0:33` :large_orange_circle: *MEASUREMENT_CANCELED*",
        "`#9` `+0:40` :large_blue_circle: *PAGE_UNLOADED*",
    ]
    assert context["elements"][0]["text"] == "event `wms:s-1:session` · full timeline: `relay sessions show s-1`"


def test_a_failed_session_mail_says_the_same_with_its_severity_in_both_parts():
    mail = email_message(session_event(), SENDER, ["ops@example.com"], [], "ops-email")
    assert mail["Subject"] == "[WMS ERROR] Measurement failed: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED) - session s-1"
    assert plain(mail) == [
        "[ERROR] Measurement failed: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED)",
        "",
        f"Measurement {MEASUREMENT} failed after 40 s.",
        "Why: CONSTRAINT_VIOLATION at #7, +0:32 — Constraint: FACE_NOT_CENTERED",
        "",
        f"Measurement  {MEASUREMENT}",
        "Duration     40 s (2025-11-30 10:52:40 – 10:53:20 UTC)",
        "Last SNR     4.2",
        "Session      s-1",
        "Events       8 events · 1 gap (2 missing) · 1 out of order",
        "",
        "Timeline",
        "  #0  +0:00  10:52:40  INFO   WMS_LOADED",
        "  #1  +0:01  10:52:41  INFO   CONFIGURATION_LOADED",
        "  #2  +0:04  10:52:44  INFO   CAMERA_PERMISSION_GRANTED",
        "      … 2 events missing (3–4)",
        "  #5  +0:09  10:52:49  INFO   MEASUREMENT_CREATED",
        "  #6  +0:21  10:53:01  INFO   INTERMEDIATE_RESULTS       SNR: 4.2 · Result sequence: 1",
        "  #7  +0:32  10:53:12  ERROR  CONSTRAINT_VIOLATION       Constraint: FACE_NOT_CENTERED  <- why",
        "  #8  +0:33  10:53:13  WARN   MEASUREMENT_CANCELED",
        "  #9  +0:40  10:53:20  INFO   PAGE_UNLOADED",
        "",
        "event id: wms:s-1:session",
        "full timeline: relay sessions show s-1",
    ]
    page = html(mail)
    # The banner: the severity's colour, its name, the headline.
    assert '<td style="background:#d0312d;color:#ffffff;' in page
    assert ">ERROR</span>" in page and ">Session failed</span>" in page
    assert ">Measurement failed: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED)</div>" in page
    assert ">CONSTRAINT_VIOLATION</span>" in page and ">Constraint: FACE_NOT_CENTERED</div>" in page
    assert ("Last SNR", "4.2") in html_rows(page) and (
        "Duration",
        "40 s (2025-11-30 10:52:40 – 10:53:20 UTC)",
    ) in html_rows(page)
    assert ">… 2 events missing (3–4)</td>" in page
    assert "http://" not in page.replace('"http://www.w3.org', "") and "src=" not in page  # no external assets


@pytest.mark.parametrize(
    ("severity", "colour", "ink"),
    [("INFO", "#2e7bcf", "#ffffff"), ("WARN", "#e8a317", "#2b2000"), ("ERROR", "#d0312d", "#ffffff")],
)
def test_every_mail_shows_its_severity_in_a_coloured_banner(severity, colour, ink):
    mail = email_message(wms_event("X_EVENT", severity), SENDER, ["ops@example.com"], [])
    assert f'<td style="background:{colour};color:{ink};' in html(mail)
    assert plain(mail)[0].startswith(f"[{severity}] X_EVENT: ")


def test_a_completed_session_says_how_long_it_took():
    event = session_event("SESSION_COMPLETED", reason=None, reasonSequence=None, reasonPayload={}, gaps=[])
    message = slack_message(event)
    assert blocks(message)[0]["text"]["text"] == "Measurement completed in 40 s"
    assert blocks(message)[1]["text"]["text"] == (
        f":large_blue_circle: *INFO* Measurement {MEASUREMENT} completed in 40 s."
    )
    assert "← *why*" not in "\n".join(timeline_lines(message))
    mail = email_message(event, SENDER, ["ops@example.com"], [])
    assert mail["Subject"] == "[WMS INFO] Measurement completed in 40 s - session s-1"
    assert plain(mail)[:4] == [
        "[INFO] Measurement completed in 40 s",
        "",
        f"Measurement {MEASUREMENT} completed in 40 s.",
        "",
    ]


@pytest.mark.parametrize(
    ("payload", "headline", "why"),
    [
        (
            {"reason": "PAGE_UNLOADED", "reasonSequence": 9, "reasonPayload": {}},
            "Session abandoned: tab closed or navigated away",
            "*Why:* `PAGE_UNLOADED` at #9, +0:40 — The user closed the tab or navigated away from WMS",
        ),
        (
            {"reason": "idle", "reasonSequence": None, "reasonPayload": {}, "idleSeconds": 600},
            "Session abandoned: no event for 10 min",
            "*Why:* no event for 10 min (last event #9)",
        ),
        (
            {"reason": "idle", "reasonSequence": None, "reasonPayload": {}},
            "Session abandoned: no event after 10:53:20 UTC",
            "*Why:* no event after 10:53:20 UTC (last event #9)",
        ),
    ],
)
def test_an_abandoned_session_says_how(payload, headline, why):
    message = slack_message(session_event("SESSION_ABANDONED", **payload))
    assert message["attachments"][0]["color"] == "#e8a317"
    assert blocks(message)[0]["text"]["text"] == headline
    assert blocks(message)[1]["text"]["text"].split("\n")[1] == why
    mail = email_message(session_event("SESSION_ABANDONED", **payload), SENDER, ["ops@example.com"], [])
    assert mail["Subject"] == f"[WMS WARN] {headline} - session s-1"


def test_an_api_error_names_its_error_code():
    timeline = [*FAILED_TIMELINE[:5], line(7, "API_ERROR", "ERROR", 30, {"errorCode": "E_TIMEOUT"})]
    event = session_event(timeline=timeline, reason="API_ERROR", reasonPayload={"errorCode": "E_TIMEOUT"}, gaps=[])
    message = slack_message(event)
    assert blocks(message)[0]["text"]["text"] == "Measurement failed: API_ERROR (E_TIMEOUT)"
    assert blocks(message)[1]["text"]["text"].endswith("*Why:* `API_ERROR` at #7, +0:30 — Error code: E_TIMEOUT")


def test_a_failure_before_any_measurement_says_so_and_what_the_code_means():
    timeline = [line(0, "WMS_LOADED"), line(1, "CAMERA_PERMISSION_DENIED", "ERROR", 5)]
    event = session_event(
        timeline=timeline,
        reason="CAMERA_PERMISSION_DENIED",
        reasonSequence=1,
        reasonPayload={},
        measurementId=None,
        measurementIds=[],
        lastSnr=None,
        gaps=[],
        outOfOrder=0,
    )
    message = slack_message(event)
    assert blocks(message)[0]["text"]["text"] == "Measurement failed: CAMERA_PERMISSION_DENIED"
    assert blocks(message)[1]["text"]["text"].split("\n") == [
        ":red_circle: *ERROR* The session failed after 5 s. No measurement had been created.",
        "*Why:* `CAMERA_PERMISSION_DENIED` at #1, +0:05 — User has denied the camera permission",
    ]
    fields = [f["text"] for f in blocks(message)[2]["fields"]]
    assert "*Measurement*\nnone created" in fields and "*Last SNR*\nnone received" in fields
    assert "*Events*\n2 events" in fields


def test_a_500_event_timeline_is_cut_within_block_kit_limits_saying_how_many_lines_were_left_out():
    timeline = [line(i, "INTERMEDIATE_RESULTS", offset=i, payload={"snr": 5.0, "sequence": i}) for i in range(500)]
    timeline[250] = line(250, "CONSTRAINT_VIOLATION", "ERROR", 250, {"constraint": "FACE_NOT_CENTERED"})
    event = session_event(timeline=timeline, reasonSequence=250, gaps=[], eventCount=500)
    message = slack_message(event)
    assert_within_block_kit(message)
    lines = timeline_lines(message)
    assert lines.count("_… 242 events left out_") == 1 and lines.count("_… 233 events left out_") == 1
    assert "`#250` `+4:10` :red_circle: *CONSTRAINT_VIOLATION*  Constraint: FACE_NOT_CENTERED  ← *why*" in lines
    assert lines[1].startswith("`#0` ") and lines[-1].startswith("`#499` `+8:19` ")
    assert len(lines) == 1 + 6 + 1 + 5 + 1 + 14
    # The mail holds more of it, and stays under the ~100 KB past which Gmail clips a mail's HTML.
    mail = email_message(event, SENDER, ["ops@example.com"], [])
    text = plain(mail)
    assert sum(1 for t in text if t.startswith("  #")) == 25 + 5 + 50
    assert "        … 223 events left out" in text and "        … 197 events left out" in text
    assert len(html(mail)) < 90_000


def test_gaps_and_cuts_are_counted_apart():
    timeline = [line(2 * i, "INTERMEDIATE_RESULTS", offset=i) for i in range(100)]
    gaps = [[2 * i + 1, 2 * i + 1] for i in range(99)]
    message = slack_message(session_event(timeline=timeline, gaps=gaps, reasonSequence=None, reason=None))
    assert_within_block_kit(message)
    assert "_… 179 lines left out (90 events, 89 gaps)_" in timeline_lines(message)
    assert "_… 1 event missing (1)_" in timeline_lines(message)


def test_a_timeline_the_relay_cut_says_how_much_it_holds():
    message = slack_message(session_event(eventCount=120))
    assert blocks(message)[-1]["elements"][0]["text"].endswith(" · the timeline holds 8 of the session's 120 events")


def assert_within_block_kit(message: dict) -> None:
    """Block Kit's limits, and a size Slack takes whole."""
    all_blocks = blocks(message)
    assert len(all_blocks) <= BLOCKS_MAX
    for block in all_blocks:
        if block["type"] == "header":
            assert 1 <= len(block["text"]["text"]) <= HEADER_MAX
        if block["type"] == "section" and "text" in block:
            assert 1 <= len(block["text"]["text"]) <= SECTION_TEXT_MAX
        for f in block.get("fields", []) + block.get("elements", []):
            assert 1 <= len(f["text"]) <= FIELD_TEXT_MAX
        assert len(block.get("fields", [])) <= 10
    assert len(message["text"]) <= SECTION_TEXT_MAX
    assert len(json.dumps(message, ensure_ascii=False)) < 16_000


def test_a_template_leaves_derived_events_to_their_own_layout():
    template = compile_template("{{ code }} {{ payload.constraint }} #{{ sequence }}")
    assert slack_message(session_event(), template) == slack_message(session_event())


def test_a_payload_of_unexpected_shape_still_renders():
    # The relay builds these payloads, but an alert must not be lost to one field of another type.
    payload = {
        **session_event().payload,
        "timeline": "not a list",
        "gaps": [[5], "x", [4, 3]],
        "startedAt": "soon",
        "durationSeconds": True,
        "reasonPayload": ["x"],
        "reasonSequence": "6",
        "eventCount": None,
        "lastSnr": {"nested": [1]},
        "measurementIds": "f0c8",
    }
    event = Event("wms", "s-1", -1, STARTED, "ERROR", "SESSION_FAILED", payload, {}, derived="session")
    message = slack_message(event)
    assert blocks(message)[0]["text"]["text"] == "Measurement failed: CONSTRAINT_VIOLATION"
    fields = [f["text"] for f in blocks(message)[2]["fields"]]
    assert '*Last SNR*\n{"nested": [1]}' in fields and "*Duration*\nunknown" in fields
    assert timeline_lines(message) == ["*Timeline*"]
    email_message(event, SENDER, ["ops@example.com"], []).as_bytes()
    empty = Event("wms", "s-1", -1, STARTED, "ERROR", "SESSION_FAILED", {}, {}, derived="session")
    assert blocks(slack_message(empty))[0]["text"]["text"] == "Measurement failed"
    email_message(empty, SENDER, ["ops@example.com"], []).as_bytes()


def test_the_outcome_mail_threads_with_the_sessions_other_mails():
    outcome = email_message(session_event(), SENDER, ["ops@example.com"], [], "ops-email")
    single = email_message(wms_event("WMS_LOADED", "INFO", session="s-1"), SENDER, ["ops@example.com"], [])
    assert outcome["References"] == outcome["In-Reply-To"] == single["References"]
    assert outcome["Message-ID"] != single["Message-ID"]
    assert (
        email_message(session_event(), SENDER, ["ops@example.com"], [], "ops-email")["Message-ID"]
        == (outcome["Message-ID"])
    )


def test_the_event_the_relay_derives_reads_as_it_should():
    # devtools.screenshots builds it as the worker does: record lines, decide, derived_body, parse_event.
    event = failed_session()
    assert (event.derived, event.sequence, event.code) == ("session", -1, "SESSION_FAILED")
    message = slack_message(event)
    assert blocks(message)[0]["text"]["text"] == "Measurement failed: CONSTRAINT_VIOLATION (FACE_NOT_CENTERED)"
    assert "*Events*\n9 events · 1 gap (1 missing) · 1 out of order" in [
        f["text"] for f in blocks(message)[2]["fields"]
    ]
    assert "_… 1 event missing (4)_" in timeline_lines(message)
    text = plain(email_message(event, SENDER, ["ops@example.com"], []))
    assert "Why: CONSTRAINT_VIOLATION at #8, +0:23 — Constraint: FACE_NOT_CENTERED" in text
    assert "Last SNR     4.2" in text
