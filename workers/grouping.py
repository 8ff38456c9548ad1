"""Grouped messages of rules with `group_by: session`: the events of one session that such a
rule sends to a Slack or email destination become one message, not one each.

The fan-out adds each matched event to its session's group for that destination
(relay/store/groups.py), in its own transaction, instead of queueing a delivery; the first event
of a message sets the group's timer in relay:due: `group_wait` after it for the first message,
the previous message's time + `group_interval` for a follow-up. When the timer runs, what was
collected becomes one derived event, EVENT_GROUP, '<source>:<sessionId>:group:<destination>:part-<n>',
queued to that destination only (not through the rules): retries, dead letters and replays are
those of any delivery. A timer run twice (its taker presumed dead) builds the same part again;
the part's flush (lua/group_flush.lua) marks and stores one message per part, and the delivery
is queued once per id (lua/enqueue.lua), so one message is sent.
"""

import json
import logging
import time

from redis.client import Pipeline

from config.rules import Rule
from config.wms_events import EVENT_GROUP, SEVERITIES
from relay.domain.event import Event, group_suffix, parse_event
from relay.store import event_log, groups, queues
from relay.store.groups import Group
from relay.store.inbox import envelope_of
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def add(pipe: Pipeline, rt: Runtime, event: Event, envelope: dict, destination: str, rule: Rule) -> None:
    """Queue on `pipe` exactly one command: add the event to its session's grouped message for
    `destination` (and set the group's timer); its answer only tells of an error."""
    # What the message needs of the event is kept in the group: the envelope is not stored.
    groups.add(
        pipe, event, destination, rule.name, rule.group_wait, rule.group_interval, time.time(), rt.config.state_ttl
    )


def run_timer(rt: Runtime, destination: str, source: str, session_id: str, *, now: float | None = None) -> float | None:
    """A group's timer: send what was collected as one message; when next (unix s), or None."""
    group = groups.read(rt.redis, destination, source, session_id)
    if group is None or not group.pending:
        return None  # sent by an earlier run, or expired; a new event sets the timer again
    now = time.time() if now is None else now
    body = message_body(group)
    event = parse_event(source, body, derived=True)  # the check every reader of it makes
    envelope = envelope_of(event, body)
    pipe = rt.redis.pipeline(transaction=True)
    groups.flush(pipe, group, envelope, now, rt.config.state_ttl)
    queues.enqueue_first(pipe, event.id, destination, rt.config.state_ttl)
    # Logged like any event, so that its attempts are (once per id: a second run logs nothing).
    event_log.log_event(pipe, event, envelope, (group.rule,), (destination,), (), rt.config.event_log.retention, now)
    reply, queued, _ = pipe.execute()
    flushed = groups.flushed(reply)
    if flushed.now:
        log.info(
            "%s: %s of session %s (rule %r), %d events, queued as %s",
            destination,
            "grouped message" if group.part == 1 else f"follow-up {group.part}",
            session_id,
            group.rule,
            group.pending,
            event.id,
            extra={"event_id": event.id, "source": source, "destination": destination, "outcome": "grouped"},
        )
    if queued:
        rt.wake([destination])
    if flushed.pending and flushed.sent is not None:
        # Events that arrived while this message was built: a follow-up at its turn.
        return flushed.sent + group.interval
    return None


def message_body(group: Group) -> bytes:
    """The body of the derived event EVENT_GROUP that says `group`'s pending events."""
    severities = [e["severity"] for e in group.events] + group.omitted
    measurements = [m for e in group.events if isinstance(m := e["payload"].get("measurementId"), str)]
    payload: dict = {
        "rule": group.rule,
        "part": group.part,
        "measurementId": measurements[-1] if measurements else None,
        "events": group.events,
    }
    if group.omitted:
        payload["omitted"] = len(group.omitted)  # past groups.MAX_LISTED: counted, not listed
    body = {
        "event": EVENT_GROUP,
        "severity": max(severities, key=SEVERITIES.index),
        "sessionId": group.session_id,
        "timestamp": group.events[0]["timestamp"] if group.events else int(time.time()),
        "derived": group_suffix(group.destination, group.part),
        "payload": payload,
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
