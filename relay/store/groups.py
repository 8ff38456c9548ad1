"""Grouped messages of rules with `group_by: session`: one session's matched events for one
destination, collected until the group's timer sends them as one message (workers/grouping.py).

A group is one hash, relay:group:<destination>:<source>:<sessionId>. Each matched event waits
in it as q:<sequence> until its message is sent, then stays as s:<sequence> (the part it went
out in), so an event fanned out twice is listed once, in one message only. `part` is the number
of the next message (1, then 2, 3 ... for follow-ups), `sent` when the last one was sent.

What is kept of an event is what its message shows: code, severity, sequence, timestamp and
payload. A message lists at most MAX_LISTED events; past that an event keeps only its severity
and is counted (payload `omitted`), never dropped silently. A payload whose JSON exceeds
MAX_PAYLOAD_BYTES keeps its scalar values only, strings cut to MAX_VALUE_CHARS. So one group
holds at most about MAX_LISTED x (MAX_PAYLOAD_BYTES + 200) bytes of events (~60 KiB); a typical
failed session's three or four events take a few hundred bytes.

Both scripts are atomic: adding (lua/group_add.lua) also sets the group's timer in relay:due
when the event opens the next message; flushing a part (lua/group_flush.lua) checks its number,
so a timer run twice marks and stores one message per part.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.client import Pipeline

from relay.domain.event import Event
from relay.store import due, keys, scripts

MAX_LISTED = 50  # events listed in one message; more are counted as omitted
MAX_PAYLOAD_BYTES = 1024  # an event's payload (JSON) kept whole up to this size
MAX_VALUE_CHARS = 200  # a string value of a payload cut down to its scalars
# Fields of one group's hash (pending events, and the sequences sent): past it events are only
# counted by severity, so that a session sent any number of events keeps a bounded group.
MAX_FIELDS = 1000


def timer(destination: str, source: str, session_id: str) -> str:
    """The relay:due member of a group's timer."""
    return due.timer(due.GROUP, destination, source, session_id)


def listed(event: Event) -> dict[str, Any]:
    """What a grouped message keeps of one event."""
    return {
        "sequence": event.sequence,
        "event": event.code,
        "severity": event.severity,
        "timestamp": event.timestamp,
        "payload": _kept_payload(event.payload),
    }


def _kept_payload(payload: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(payload, separators=(",", ":"))) <= MAX_PAYLOAD_BYTES:
        return payload
    # The values a message shows at a glance (a constraint, an error code, an SNR) are scalars.
    kept: dict[str, Any] = {}
    for name, value in payload.items():
        if isinstance(value, str):
            kept[name[:MAX_VALUE_CHARS]] = value[:MAX_VALUE_CHARS]
        elif value is None or isinstance(value, (bool, int, float)):
            kept[name[:MAX_VALUE_CHARS]] = value
        if len(kept) * (MAX_VALUE_CHARS + 20) > MAX_PAYLOAD_BYTES:
            break
    return kept


def add(
    pipe: Pipeline,
    event: Event,
    destination: str,
    rule: str,
    wait: float,
    interval: float,
    now: float,
    ttl: int,
) -> None:
    """Queue on `pipe` one command: add `event` to its session's group for `destination` and set
    the group's timer if the event opens the next message. Its answer is 1 (added) or 0 (the
    event was in the group already)."""
    scripts.GROUP_ADD.queue(
        pipe,
        [keys.group_key(destination, event.source, event.session_id), keys.DUE],
        [
            event.sequence,
            json.dumps(listed(event), separators=(",", ":")),
            event.severity,
            rule,
            repr(now),
            repr(float(wait)),
            repr(float(interval)),
            timer(destination, event.source, event.session_id),
            MAX_LISTED,
            ttl,
            MAX_FIELDS,
        ],
    )


@dataclass(frozen=True)
class Group:
    """A group as read: the events of its next message, and what the message says of itself."""

    destination: str
    source: str
    session_id: str
    part: int  # the next message's number
    rule: str
    interval: float  # group_interval of the rule that last added to it (s)
    sent: float | None  # when the last message was sent (unix s)
    events: list[dict[str, Any]] = field(default_factory=list)  # listed, by sequence
    omitted: list[str] = field(default_factory=list)  # severities of pending events past the cap
    sequences: list[int] = field(default_factory=list)  # of every pending event, listed or not
    over: dict[str, int] = field(default_factory=dict)  # severity -> events only counted (MAX_FIELDS)

    @property
    def pending(self) -> int:
        """How many events wait for the next message."""
        return len(self.sequences) + sum(self.over.values())


def read(redis: Redis, destination: str, source: str, session_id: str) -> Group | None:
    """The group of this session for `destination`, or None when there is none (or it expired)."""
    fields = redis.hgetall(keys.group_key(destination, source, session_id))
    if not fields:
        return None
    values = {_text(k): _text(v) for k, v in fields.items()}
    events, omitted, sequences = [], [], []
    over = {name[5:]: int(value) for name, value in values.items() if name.startswith("over:") and int(value) > 0}
    for severity, count in over.items():
        omitted += [severity] * count
    for name, value in values.items():
        if not name.startswith("q:"):
            continue
        sequences.append(int(name[2:]))
        if value.startswith("{"):
            events.append(json.loads(value))
        else:
            omitted.append(value)
    events.sort(key=lambda e: e["sequence"])
    return Group(
        destination,
        source,
        session_id,
        int(values.get("part", 1)),
        values.get("rule", ""),
        float(values.get("interval", 0)),
        float(values["sent"]) if "sent" in values else None,
        events,
        omitted,
        sorted(sequences),
        over,
    )


def flush(pipe: Pipeline, group: Group, envelope: dict, now: float, ttl: int) -> None:
    """Queue on `pipe` one command: mark `group`'s pending events as sent in its part and store
    the message's envelope, unless that part was flushed before. Its answer, read by
    flushed(): [1 marked now or 0 before, events still pending, when the last message was sent]."""
    scripts.GROUP_FLUSH.queue(
        pipe,
        [keys.group_key(group.destination, group.source, group.session_id), keys.event_key(envelope["id"])],
        [
            group.part,
            repr(now),
            json.dumps(envelope, separators=(",", ":")),
            ttl,
            *(group.over.get(severity, 0) for severity in ("INFO", "WARN", "ERROR")),
            *group.sequences,
        ],
    )


@dataclass(frozen=True)
class Flushed:
    """What a flush found: whether it marked the part now, and what is left for a follow-up."""

    now: bool
    pending: int
    sent: float | None


def flushed(reply: list) -> Flushed:
    """A flush's answer, read."""
    marked, pending, sent = reply
    text = _text(sent)
    return Flushed(bool(marked), int(pending), float(text) if text else None)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
