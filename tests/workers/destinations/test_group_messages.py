"""A rule's grouped message (EVENT_GROUP): one message listing a session's matched events, and
one follow-up for those matched later, in Slack and in mail."""

from tests.workers.destinations.derived import MEASUREMENT, group_event, line
from tests.workers.destinations.test_session_messages import assert_within_block_kit, blocks
from workers.destinations.email import email_message
from workers.destinations.slack import compile_template, slack_message
from workers.destinations.slack_sessions import digest_message

SENDER = "relay@wms.example.com"
M = {"measurementId": MEASUREMENT}
EVENTS = [
    line(3, "WEBSOCKET_DISCONNECTED", "WARN", 30, M),
    line(7, "CONSTRAINT_VIOLATION", "ERROR", 32, {"constraint": "FACE_NOT_CENTERED", **M}),
    line(8, "API_ERROR", "ERROR", 33, {"errorCode": "E1", "measurementId": "other-id"}),
]


def test_a_group_lists_the_sessions_matched_events_in_one_slack_message():
    message = slack_message(group_event(EVENTS))
    assert message["text"] == ":red_circle: [ERROR] 3 events in session s-1"
    header, lead, rows, context = blocks(message)
    assert header["text"]["text"] == "3 events in session s-1"
    assert lead["text"]["text"] == f":red_circle: *ERROR* rule `errors` · measurement {MEASUREMENT}"
    # The measurement the message names is not repeated on each line; another one is.
    assert rows["text"]["text"].split("\n") == [
        "`#3` `10:53:10` :large_orange_circle: *WEBSOCKET_DISCONNECTED*",
        "`#7` `10:53:12` :red_circle: *CONSTRAINT_VIOLATION*  Constraint: FACE_NOT_CENTERED",
        "`#8` `10:53:13` :red_circle: *API_ERROR*  Error code: E1 · Measurement: other-id",
    ]
    assert context["elements"][0]["text"] == (
        "event `wms:s-1:group:ops-slack:part-1` · full timeline: `relay sessions show s-1`"
    )


def test_a_later_part_is_a_follow_up():
    event = group_event([line(9, "MEASUREMENT_CANCELED", "WARN", 40, M)], part=2, severity="WARN")
    message = slack_message(event)
    assert message["text"] == ":large_orange_circle: [WARN] follow-up: 1 more event for session s-1"
    assert blocks(message)[0]["text"]["text"] == "Follow-up: 1 more event for session s-1"
    mail = email_message(event, SENDER, ["ops@example.com"], [])
    assert mail["Subject"] == "[WMS WARN] Follow-up: 1 more event for session s-1 (rule errors)"
    assert ">Grouped events, follow-up</span>" in mail.get_body(("html",)).get_content()


def test_a_group_mail_lists_them_and_threads_with_the_session():
    mail = email_message(group_event(EVENTS), SENDER, ["ops@example.com"], [], "ops-email")
    assert mail["Subject"] == "[WMS ERROR] 3 events in session s-1 (rule errors)"
    assert mail.get_body(("plain",)).get_content().splitlines() == [
        "[ERROR] 3 events in session s-1",
        "",
        "Rule         errors",
        f"Measurement  {MEASUREMENT}",
        "Session      s-1",
        "",
        "  #3  10:53:10  WARN   WEBSOCKET_DISCONNECTED",
        "  #7  10:53:12  ERROR  CONSTRAINT_VIOLATION    Constraint: FACE_NOT_CENTERED",
        "  #8  10:53:13  ERROR  API_ERROR               Error code: E1 · Measurement: other-id",
        "",
        "event id: wms:s-1:group:ops-slack:part-1",
        "full timeline: relay sessions show s-1",
    ]
    part_two = email_message(group_event(EVENTS, part=2), SENDER, ["ops@example.com"], [], "ops-email")
    assert mail["References"] == part_two["References"] and mail["Message-ID"] != part_two["Message-ID"]


def test_long_values_are_cut_for_display():
    event = group_event([line(3, "API_ERROR", "ERROR", 30, {"errorCode": "E" * 5000, "detail": "d" * 50})])
    (rows,) = [b for b in blocks(slack_message(event)) if b["type"] == "section"][1:]
    assert rows["text"]["text"] == "`#3` `10:53:10` :red_circle: *API_ERROR*  Error code: " + "E" * 187 + "…"
    text = email_message(event, SENDER, ["ops@example.com"], []).get_body(("plain",)).get_content()
    assert "Error code: " + "E" * 299 + "… · detail: " + "d" * 50 in text


def test_a_500_event_group_stays_within_block_kit_limits():
    events = [line(i, "WEBSOCKET_DISCONNECTED", "WARN", i, {"note": "<&>" * 200, **M}) for i in range(500)]
    message = slack_message(group_event(events))
    assert_within_block_kit(message)
    lines = [t for b in blocks(message)[2:-1] for t in b["text"]["text"].split("\n")]
    assert len(lines) == 21 and lines[10] == "_… 480 events left out_"
    assert blocks(message)[0]["text"]["text"] == "500 events in session s-1"


def test_a_template_leaves_groups_to_their_own_layout():
    assert slack_message(group_event(EVENTS), compile_template("{{ code }}")) == slack_message(group_event(EVENTS))


def test_events_the_relay_counted_without_listing_them_are_counted_and_said():
    listed = [line(i, "WEBSOCKET_DISCONNECTED", "WARN", i, M) for i in range(50)]
    event = group_event(listed, omitted=30)
    message = slack_message(event)
    assert blocks(message)[0]["text"]["text"] == "80 events in session s-1"
    rows = [t for b in blocks(message)[2:-1] for t in b["text"]["text"].split("\n")]
    assert rows[-1] == "_… 30 more events not listed_" and rows[10] == "_… 31 events left out_"
    text = email_message(event, SENDER, ["ops@example.com"], []).get_body(("plain",)).get_content()
    assert "       … 30 more events not listed" in text.splitlines()  # under the codes, past "#49"
    digest = digest_message([event, group_event([], omitted=4, part=2)])
    # Most severe first, then in time: the follow-up (no event listed) carries the earlier time.
    assert [t for b in blocks(digest)[1:-1] for t in b["text"]["text"].split("\n")] == [
        "• session s-1 — EVENT_GROUP follow-up (ERROR), 4 more events: +4",
        (
            "• session s-1 — EVENT_GROUP (ERROR), 80 events: WEBSOCKET_DISCONNECTED, WEBSOCKET_DISCONNECTED,"
            " WEBSOCKET_DISCONNECTED, +77"
        ),
    ]
