"""The event log: every event the fan-out read (WMS's, and the relay's derived ones), the rules
that fired for it, its body, and every attempt of its deliveries, kept `event_log.retention`.

Two structures (docs/event-log.md):
- relay:event-log, a stream: one small entry per event (id, code, measurementId, destinations),
  time-ordered by its entry id and trimmed to the retention as entries are added (MINID). A
  search scans it newest first with its filters, within bounds (SCAN_MAX entries).
- relay:event-log:<source>:<sessionId>, a hash: per event of the session (field: its sequence,
  or `session`, or `group:<destination>:part-<n>`), its record: a JSON line [received at, rules
  fired, destinations, grouped destinations, body length], the body as received, then a JSON
  line per attempt, added by whoever records the attempt (lua/delivered.lua,
  lua/event_attempt.lua) in the same script or transaction. One hash per session, not a key per
  event: a key costs ~100 bytes of name, table entries and expiry that a hash field does not, and
  a session's timeline reads its events' records in one round trip. It expires `retention` after the
  session's last event was logged.

This is the one record of attempts: the dead letters keep their own delivery's (dead_letters.add),
and the counts per minute that `relay stats` sums live in relay/store/stats.py. An event's
outcome is worked out from its attempts when it is read: per destination, the last attempt's
outcome, or none yet.
"""

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline

from config.durations import span
from relay.domain.event import Event, InvalidEvent, parse_event
from relay.domain.times import iso
from relay.store import attempts, keys, replies, scripts
from relay.store.inbox import entry_time

# What an event came to, worst first: one destination failed (its last attempt failed and no
# retry follows: a dead letter, or a delivery waiting for a paused destination), is retrying, or
# has no attempt yet; every destination delivered; grouped into a session's message only; no rule.
OUTCOMES = ("failed", "retrying", "pending", "delivered", "grouped", "unrouted")
SCAN_MAX = 50_000  # index entries one search reads at most: bounds its time on a busy week
LIMIT_MAX = 1000
_PAGE = 500  # index entries read at a time
_RECORDS = 100  # records read at a time: bodies may be large (up to BODY_KEPT each)
# The bytes of a body the log keeps. WMS's events are a few hundred bytes to a few kB; a sender
# with the MAC secret could send ingest.max_body_bytes (256 KiB) each, which the log would keep
# for its retention, where delivery forgets a body once delivered. Its first 32 KiB say what it was.
BODY_KEPT = 32 * 1024
# The most events one session's hash holds (lua/event_log.lua): WMS's sessions have tens; a
# session that never ends (a broken or hostile sender) stops being logged here, so that no one
# key grows, and is freed, without bound.
SESSION_EVENTS_MAX = 10_000


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# A grouped message's id ends so (relay.domain.event.group_suffix); a destination name has no ':'.
_GROUP = re.compile(r"(.*):(group:[^:]+:part-\d+)")


def split_id(event_id: str) -> tuple[str, str, str]:
    """(source, sessionId, sequence or derived name) of an event id. Only the whole form of a
    derived id counts as one: a sessionId may itself hold ':group:' or ':session'."""
    source, _, rest = event_id.partition(":")
    group = _GROUP.fullmatch(rest)
    if group:
        return source, group[1], group[2]
    session, _, tail = rest.rpartition(":")
    return source, session, tail


def where(event_id: str) -> tuple[str, str]:
    """(the session's hash, the event's field in it) of an event's record."""
    source, session, tail = split_id(event_id)
    return keys.event_log_key(source, session), tail


def log_event(
    pipe: Pipeline,
    event: Event,
    envelope: dict,
    rules: tuple[str, ...],
    destinations: tuple[str, ...],
    grouped: tuple[str, ...],
    retention: float,
    now: float | None = None,
) -> None:
    """Queue on `pipe` the event's record and index entry, once (lua/event_log.lua); its answer is
    1 when logged, 0 when it was logged before, 2 when its session has SESSION_EVENTS_MAX logged."""
    now = time.time() if now is None else now
    raw = envelope["body"].encode()
    # Over BODY_KEPT, what a cut body can no longer tell: its size, code, severity, measurementId.
    cut = [len(raw), event.code, event.severity, event.measurement_id] if len(raw) > BODY_KEPT else []
    body = raw[:BODY_KEPT].decode(errors="ignore")  # not half a character
    # The body as received, after a header that says its length: JSON-escaping it inside the
    # header would cost ~10% of it again in backslashes.
    header = _compact(
        [round(envelope["received_at"], 3), list(rules), list(destinations), list(grouped), len(body.encode()), *cut]
    )
    key, field = where(event.id)
    fields = [
        "id",
        event.id,
        "code",
        event.code,
        "mid",
        event.measurement_id or "",
        "to",
        ",".join((*destinations, *grouped)),
    ]
    scripts.EVENT_LOG.queue(
        pipe,
        [key, keys.EVENT_LOG],
        [int(retention), int((now - retention) * 1000), field, f"{header}\n{body}", SESSION_EVENTS_MAX, *fields],
    )


def add_attempt(pipe: Pipeline, record: dict) -> None:
    """Queue on `pipe` an attempt's line onto its event's record, if the event is logged."""
    key, field = where(record["event"])
    scripts.EVENT_ATTEMPT.queue(pipe, [key], [field, attempts.line(record)])


def attempts_of(redis: Redis | Pipeline, event_id: str, destination: str | None = None) -> list[dict]:
    """The recorded attempts of an event's deliveries (to `destination` only, if given), oldest
    first; [] when the event is not logged (or no longer). On a pipeline in WATCH mode it reads at
    once, as relay/store/deliveries.py's finish does."""
    found = _attempts(event_id, replies.optional_bytes(redis.hget(*where(event_id))))
    return [a for a in found if destination is None or a["destination"] == destination]


def attempts_of_many(redis: Redis, event_ids: list[str]) -> dict[str, list[dict]]:
    """attempts_of each event, in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for event_id in event_ids:
        pipe.hget(*where(event_id))
    return {event_id: _attempts(event_id, raw) for event_id, raw in zip(event_ids, pipe.execute(), strict=True)}


def _attempts(event_id: str, raw: bytes | None) -> list[dict]:
    return [] if raw is None else [attempts.record_of(event_id, line) for line in _parse(raw)[2]]


def every_attempt(redis: Redis) -> list[dict]:
    """Every attempt the log holds, in the order they were made: reads the whole log, for tests
    and benchmarks (bench/chaos.py), not for a busy Redis."""
    ids = [fields[b"id"].decode() for _, fields in replies.stream_entries(redis.xrange(keys.EVENT_LOG))]
    found = [a for per in attempts_of_many(redis, ids).values() for a in per]
    return sorted(found, key=lambda a: a["at"])


@dataclass(frozen=True)
class Query:
    """What `relay events list` and GET /admin/events search for; None matches anything."""

    session: str | None = None
    measurement: str | None = None
    code: str | None = None
    destination: str | None = None
    outcome: str | None = None
    since: float | None = None  # unix s
    until: float | None = None

    def wants(self, fields: dict[bytes, bytes]) -> bool:
        """Whether an index entry may match (the outcome needs the record)."""
        event_id = fields.get(b"id", b"").decode()
        if self.session is not None and split_id(event_id)[1] != self.session:
            return False
        if self.code is not None and fields.get(b"code", b"").decode() != self.code:
            return False
        if self.measurement is not None and fields.get(b"mid", b"").decode() != self.measurement:
            return False
        return self.destination is None or self.destination in fields.get(b"to", b"").decode().split(",")


def _entries(redis: Redis, query: Query) -> Iterator[tuple[float, dict[bytes, bytes]]]:
    """Index entries newest first within the query's times, at most SCAN_MAX of them."""
    high = "+" if query.until is None else str(int(query.until * 1000))
    low = "-" if query.since is None else str(int(query.since * 1000))
    read = 0
    while read < SCAN_MAX:
        page = replies.stream_entries(redis.xrevrange(keys.EVENT_LOG, max=high, min=low, count=_PAGE))
        for entry_id, fields in page[: SCAN_MAX - read]:
            yield entry_time(entry_id), fields
        read += len(page)
        if len(page) < _PAGE:
            return
        high = f"({page[-1][0].decode()}"  # exclusive: Redis 6.2


def find(redis: Redis, query: Query, limit: int = 50) -> dict[str, Any]:
    """The events matching `query`, newest first, at most `limit`, and whether more may match
    (past the limit, or past SCAN_MAX entries read): GET /admin/events's answer."""
    found: list[dict[str, Any]] = []
    scanned = 0
    more = False
    batch: list[tuple[float, dict[bytes, bytes]]] = []

    paused = Paused(redis)

    def flush() -> None:
        nonlocal more
        pipe = redis.pipeline(transaction=False)
        for _, f in batch:
            pipe.hget(*where(f[b"id"].decode()))
        records = [(entry, _parse(raw)) for entry, raw in zip(batch, pipe.execute(), strict=True) if raw is not None]
        paused.learn({d for _, ((_, _, destinations, _, _), _, _) in records for d in destinations})
        for (logged_at, fields), record in records:  # a record gone expired before its index entry
            summary = _summary(fields[b"id"].decode(), logged_at, fields, record, paused.names)
            if query.outcome is None or summary["outcome"] == query.outcome:
                if len(found) >= limit:
                    more = True
                    break
                found.append(summary)
        batch.clear()

    for logged_at, fields in _entries(redis, query):
        scanned += 1
        if query.wants(fields):
            batch.append((logged_at, fields))
            if len(batch) >= min(_RECORDS, limit + 1):
                flush()
                if more:
                    break
    if batch and not more:
        flush()
    if scanned >= SCAN_MAX:
        more = True
    return {"count": len(found), "events": found, "more": more, "scanned": scanned}


def _parse(raw: bytes) -> tuple[list, str, list[list]]:
    """A record's header, its body, and its attempts' lines (as lists)."""
    end = raw.index(b"\n")
    header = json.loads(raw[:end])
    body_end = end + 1 + header[4]
    lines = raw[body_end:].split(b"\n")
    return header, raw[end + 1 : body_end].decode(), [json.loads(line) for line in lines if line]


class Paused:
    """Which destinations are paused now, asked of Redis once per name in one search."""

    def __init__(self, redis: Redis):
        self.redis = redis
        self.names: set[str] = set()
        self._asked: set[str] = set()

    def learn(self, destinations: set[str]) -> None:
        """Ask about the `destinations` not asked about yet, in one round trip."""
        new = sorted(destinations - self._asked)
        if not new:
            return
        pipe = self.redis.pipeline(transaction=False)
        for name in new:
            pipe.hexists(keys.destination_key(name), "paused")
        self.names |= {name for name, paused in zip(new, pipe.execute(), strict=True) if paused}
        self._asked |= set(new)


def _states(destinations: list[str], lines: list[list], paused: set[str]) -> dict[str, dict[str, Any]]:
    """Per destination: its state from its last attempt (ok; failed: no retry follows; retrying;
    pending: none yet), or waiting when that delivery is not done and its destination is paused
    now (it waits for the pause to end, whatever retry its last attempt planned); and how many
    attempts it had."""
    out: dict[str, dict[str, Any]] = {d: {"state": "pending", "attempts": 0} for d in destinations}
    for line in lines:
        attempt = attempts.record_of("", line)
        entry = out.setdefault(attempt["destination"], {"state": "pending", "attempts": 0})
        entry["attempts"] += 1
        entry["state"] = (
            "ok" if attempt["outcome"] == "ok" else "retrying" if attempt["next_retry_in"] is not None else "failed"
        )
    for name, entry in out.items():
        if entry["state"] in ("retrying", "pending") and name in paused:
            entry["state"] = "waiting"
    return out


# An event's outcome from its destinations' states, worst first: a delivery waiting for a paused
# destination needs the operator as much as one that failed.
_WORST = (("failed", "failed"), ("waiting", "failed"), ("retrying", "retrying"), ("pending", "pending"))


def _outcome(states: dict[str, dict[str, Any]], grouped: list[str]) -> str:
    if not states:
        return "grouped" if grouped else "unrouted"
    seen = {s["state"] for s in states.values()}
    for state, outcome in _WORST:
        if state in seen:
            return outcome
    return "delivered"


def _summary(
    event_id: str, logged_at: float, fields: dict[bytes, bytes], record: tuple[list, str, list[list]], paused: set[str]
) -> dict:
    (received_at, rules, destinations, grouped, _), _, lines = record
    source, session, _ = split_id(event_id)
    states = _states(destinations, lines, paused)
    return {
        "id": event_id,
        "received_at": iso(received_at),
        "logged_at": iso(logged_at),
        "source": source,
        "session_id": session,
        "code": fields.get(b"code", b"").decode(),
        "measurement_id": fields.get(b"mid", b"").decode() or None,
        "outcome": _outcome(states, grouped),
        "rules": rules,
        "destinations": states,
        "grouped": grouped,
    }


def _shown(attempt: dict[str, Any]) -> dict[str, Any]:
    """An attempt as `relay events show --json` shows it: its time in ISO 8601, no event id."""
    return {**{k: v for k, v in attempt.items() if k != "event"}, "at": iso(attempt["at"])}


def not_found(event_id: str, retention: float) -> str:
    """Why an event is not shown: what `relay events show` and GET /admin/events/<id> say."""
    return (
        f"no event {event_id!r} in the event log (kept {span(retention)}, at most "
        f"{SESSION_EVENTS_MAX:,} events a session; "
        "an id is <source>:<sessionId>:<sequence>, or <source>:<sessionId>:session)"
    )


def detail(redis: Redis, event_id: str) -> dict[str, Any] | None:
    """One event's record: body (its first BODY_KEPT bytes; `body_bytes` says its size as
    received), rules fired, every attempt; None when not logged (or expired)."""
    raw = replies.optional_bytes(redis.hget(*where(event_id)))
    if raw is None:
        return None
    header, body, lines = _parse(raw)
    received_at, rules, destinations, grouped, kept = header[:5]
    source, session, name = split_id(event_id)
    size, code, severity, measurement = header[5:9] if len(header) > 5 else (kept, None, None, None)
    if size == kept:
        try:
            event = parse_event(source, body.encode(), derived=not name.isdigit())
            code, severity, measurement = event.code, event.severity, event.measurement_id
        except InvalidEvent:
            pass
    paused = Paused(redis)
    paused.learn(set(destinations))
    states = _states(destinations, lines, paused.names)
    # While its delivery states are kept: "dead" says a failure ended as a dead letter.
    for destination, value in cast(dict[bytes, bytes], redis.hgetall(keys.delivery_key(event_id))).items():
        name_, value_ = destination.decode(), value.decode()
        if name_ in states and value_ in ("dead", "held"):
            states[name_]["state"] = "failed" if value_ == "dead" else "pending"
            states[name_]["delivery"] = value_
    return {
        "id": event_id,
        "source": source,
        "session_id": session,
        "code": code,
        "severity": severity,
        "measurement_id": measurement,
        "received_at": iso(received_at),
        "outcome": _outcome(states, grouped),
        "rules": rules,
        "destinations": states,
        "grouped": grouped,
        "attempts": [_shown(attempts.record_of(event_id, line)) for line in lines],
        "body": body,
        "body_bytes": size,
    }
