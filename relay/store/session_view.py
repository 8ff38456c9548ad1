"""Sessions as operators look at them: the listing (`relay sessions list`, GET /admin/sessions)
and one session's timeline with each event's deliveries (`relay sessions show`, GET
/admin/sessions/<source>/<sessionId>). One place assembles both, as JSON-safe dicts; the CLI
prints the same content as text.

Deliveries are read from relay:delivery:<event id> (each destination's state) and
relay:attempts:<event id> (the attempts that did not simply succeed). Both expire (the first
`state_ttl` after its last write): an event older than that whose deliveries are gone shows
`deliveries: null`, "delivery records expired", rather than "no destination".
"""

import time
from dataclasses import dataclass, replace
from typing import Any

from redis import Redis

from config.destinations import HttpDestination
from config.durations import span
from config.model import RelayConfig
from relay.domain.event import event_id, group_suffix
from relay.domain.session import DERIVED_CODE, Seen, Session
from relay.domain.times import iso
from relay.store import event_log, keys, ordering, sessions

LIMIT_MAX = 1000  # sessions one listing returns at most
SCAN_MAX = 5000  # index entries one listing reads at most, so that a rare filter stays cheap
_PAGE = 200
OWNER_SUFFIX = ":owner"


@dataclass(frozen=True)
class Listing:
    """The sessions a listing found, newest first, and whether the index holds more it did not read."""

    sessions: list[tuple[Session, float]]  # (session, when the relay accepted its last event)
    more: bool

    def to_json(self) -> dict[str, Any]:
        """What GET /admin/sessions answers and `relay sessions list --json` prints."""
        return {
            "count": len(self.sessions),
            "more": self.more,
            "sessions": [summary(session, last) for session, last in self.sessions],
        }


def find(
    redis: Redis,
    outcome: str | None = None,
    source: str | None = None,
    since: float | None = None,
    limit: int = 50,
) -> Listing:
    """The newest `limit` sessions with this outcome and source whose last event was accepted at
    or after `since` (unix s). At most SCAN_MAX index entries are read; `more` says whether the
    index holds sessions past the last one read (some may match: a narrower `since` reaches them)."""
    found: list[tuple[Session, float]] = []
    offset = 0
    while offset < SCAN_MAX:
        page = sessions.recent(redis, since=since, limit=min(_PAGE, SCAN_MAX - offset), offset=offset)
        wanted = [(s, sid) for s, sid, _ in page if source in (None, s)]
        read = {session.key: session for session in sessions.read_many(redis, wanted)}
        for i, (s, sid, last_at) in enumerate(page):
            session = read.get(f"{s}:{sid}")
            if session is not None and session.events and outcome in (None, session.outcome):
                found.append((session, last_at))
                if len(found) == limit:
                    return Listing(found, more=i + 1 < len(page) or _beyond(redis, since, offset + len(page)))
        offset += len(page)
        if len(page) < _PAGE:
            return Listing(found, more=False)
    return Listing(found, more=_beyond(redis, since, offset))


def _beyond(redis: Redis, since: float | None, offset: int) -> bool:
    return bool(sessions.recent(redis, since=since, limit=1, offset=offset))


def lookup(redis: Redis, session_id: str, sources: list[str]) -> list[Session]:
    """The sessions with this sessionId at each of `sources` that has one with an event to show."""
    return [session for session in sessions.find(redis, session_id, sources) if session.events]


def reason_of(session: Session) -> tuple[str | None, int | None]:
    """The reason of the session's outcome and the sequence of the event that decided it: as
    emitted once final, else as its events decide so far."""
    if session.final:
        return session.final.get("reason"), session.final.get("sequence")
    verdict = session.verdict
    return verdict.reason, verdict.deciding.sequence if verdict.deciding else None


def summary(session: Session, last_event_at: float) -> dict[str, Any]:
    """One session in a listing."""
    reason, _ = reason_of(session)
    measurement_ids = session.measurement_ids
    return {
        "source": session.source,
        "session_id": session.session_id,
        "last_event_at": iso(last_event_at),
        "outcome": session.outcome,
        "reason": reason,
        "emitted": session.final is not None,
        "events": len(session.events),
        "gaps": len(session.gaps),
        "measurement_id": measurement_ids[-1] if measurement_ids else None,
    }


@dataclass(frozen=True)
class Delivery:
    """Where one event's delivery to one destination stands."""

    destination: str
    # ok, dead, sending, scheduled, waiting (the destination is paused), held (ordered: for the
    # session's earlier events), grouped (collected for the session's next grouped message), unknown
    state: str
    attempt: int | None  # the attempt that succeeded, died, or is in flight or next; None: unknown
    last_status: str | None  # the last recorded attempt's status (HTTP 503, timeout, ...)
    grouped_in: str | None = None  # the grouped message (its event id) that carried the event

    def to_json(self) -> dict[str, Any]:
        """The delivery as the admin API shows it."""
        return {
            "destination": self.destination,
            "state": self.state,
            "attempt": self.attempt,
            "last_status": self.last_status,
            "grouped_in": self.grouped_in,
        }


def detail(redis: Redis, config: RelayConfig, session: Session, now: float | None = None) -> dict[str, Any]:
    """One session: its outcome, what decided it, and its timeline with each event's deliveries
    (and those of the derived event that said the outcome)."""
    now = time.time() if now is None else now
    events = session.events
    final = session.final
    derived_id = final.get("event") if final else None
    ids = [event_id(session.source, session.session_id, e.sequence) for e in events]
    grouped = _grouped(redis, config, session)
    messages = sorted({m for per in grouped.values() for m in per.values() if m})
    found = _deliveries(redis, config, [*ids, *([derived_id] if derived_id else []), *messages])
    for seen, eid in zip(events, ids, strict=True):
        if seen.sequence in grouped:
            found[eid] = _in_order(config, found[eid] + _via(grouped[seen.sequence], found))
    reason, reason_sequence = reason_of(session)
    first = events[0].timestamp
    outcome_event = None
    if final and derived_id:
        outcome_event = {
            "id": derived_id,
            "event": DERIVED_CODE.get(final.get("outcome", "")),
            "emitted_at": iso(final["at"]) if isinstance(final.get("at"), (int, float)) else None,
            "deliveries": _known(found[derived_id], final.get("at"), config, now),
        }
    return {
        "source": session.source,
        "session_id": session.session_id,
        "outcome": session.outcome,
        "reason": reason,
        "reason_sequence": reason_sequence,
        "emitted": final is not None,
        "outcome_event": outcome_event,
        "measurement_ids": session.measurement_ids,
        "started_at": iso(first),
        "ended_at": iso(events[-1].timestamp),
        "duration_seconds": max(0, events[-1].timestamp - first),
        "first_received_at": iso(min(e.received_at for e in events)),
        "last_received_at": iso(session.last_received),
        "last_snr": session.last_snr,
        "event_count": len(events),
        "gaps": [list(gap) for gap in session.gaps],
        "out_of_order": session.out_of_order,
        "late": session.late,
        "duplicates": session.duplicates,
        "skipped": skipped(redis, config, session),
        "timeline": [_line(e, first, found[i], config, now) for e, i in zip(events, ids, strict=True)],
    }


def skipped(redis: Redis, config: RelayConfig, session: Session) -> dict[str, list[int]]:
    """Per HTTP destination with `ordered: true`, the sequences of this session it gave up
    waiting for after its gap timeout (relay/store/ordering.py); [] for one that skipped none."""
    ordered = [n for n, d in config.destinations.items() if isinstance(d, HttpDestination) and d.ordered]
    return {name: ordering.skipped(redis, name, session.source, session.session_id) for name in ordered}


def _grouped(redis: Redis, config: RelayConfig, session: Session) -> dict[int, dict[str, str | None]]:
    """Per sequence, the destinations of rules with `group_by` that collected the event (their
    group's hash, relay/store/groups.py: q:<sequence> pending, s:<sequence> the part it went out
    in), each with the id of the grouped message that carried it, or None while it waits."""
    names = sorted({d for rule in config.rules if rule.group_by for d in rule.to})
    if not names:
        return {}
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.group_key(name, session.source, session.session_id))
    found: dict[int, dict[str, str | None]] = {}
    for name, fields in zip(names, pipe.execute(), strict=True):
        for raw, value in fields.items():
            kind, _, number = raw.decode().partition(":")
            if kind in ("q", "s") and number.isdigit():
                message = f"{session.key}:{group_suffix(name, int(value))}" if kind == "s" else None
                found.setdefault(int(number), {})[name] = message
    return found


def _via(grouped: dict[str, str | None], found: dict[str, list[Delivery]]) -> list[Delivery]:
    """An event's deliveries through grouped messages: the state of the message's delivery, or
    `grouped` while the event waits for its message."""
    out = []
    for name, message in grouped.items():
        if message is None:
            out.append(Delivery(name, "grouped", None, None))
            continue
        sent = next((d for d in found[message] if d.destination == name), None)
        out.append(replace(sent, grouped_in=message) if sent else Delivery(name, "unknown", None, None, message))
    return out


def _in_order(config: RelayConfig, deliveries: list[Delivery]) -> list[Delivery]:
    """In the config's order of destinations, then any no longer in it by name."""
    order = {name: i for i, name in enumerate(config.destinations)}
    return sorted(deliveries, key=lambda d: (order.get(d.destination, len(order)), d.destination))


def _line(seen: Seen, first: int, found: list[Delivery], config: RelayConfig, now: float) -> dict[str, Any]:
    return {
        "sequence": seen.sequence,
        "timestamp": iso(seen.timestamp),
        "offset_seconds": seen.timestamp - first,
        "received_at": iso(seen.received_at),
        "event": seen.code,
        "severity": seen.severity,
        "measurement_id": seen.measurement_id,
        "payload": seen.payload,
        "deliveries": _known(found, seen.received_at, config, now),
    }


def _known(found: list[Delivery], since: Any, config: RelayConfig, now: float) -> list[dict[str, Any]] | None:
    """The deliveries as JSON; None when there are none and the records would have expired by
    now (they are kept `state_ttl` after their last write, which is after `since`)."""
    if not found and isinstance(since, (int, float)) and now - since > config.state_ttl:
        return None
    return [d.to_json() for d in found]


def _deliveries(redis: Redis, config: RelayConfig, event_ids: list[str]) -> dict[str, list[Delivery]]:
    """Each event's deliveries, in the config's order of destinations (then any no longer in it)."""
    pipe = redis.pipeline(transaction=False)
    for eid in event_ids:
        pipe.hgetall(keys.delivery_key(eid))
    states = {
        eid: {k.decode(): v.decode() for k, v in f.items()} for eid, f in zip(event_ids, pipe.execute(), strict=True)
    }
    records = event_log.attempts_of_many(redis, event_ids)
    waiting = sorted({d for s in states.values() for d, v in s.items() if "." in v and not d.endswith(OWNER_SUFFIX)})
    paused = _paused(redis, waiting)
    found = {}
    for eid in event_ids:
        state = states[eid]
        names = [d for d in state if not d.endswith(OWNER_SUFFIX)]
        found[eid] = _in_order(config, [_delivery(d, state, records[eid], d in paused) for d in names])
    return found


def _paused(redis: Redis, names: list[str]) -> set[str]:
    if not names:
        return set()
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hexists(keys.destination_key(name), "paused")
    return {name for name, paused in zip(names, pipe.execute(), strict=True) if paused}


def _delivery(destination: str, state: dict[str, str], records: list[dict[str, Any]], paused: bool) -> Delivery:
    value = state[destination]
    mine = [r for r in records if r.get("destination") == destination]
    last = mine[-1] if mine else None
    last_status = str(last["status"]) if last and last.get("status") is not None else None
    last_attempt = int(last["attempt"]) if last and isinstance(last.get("attempt"), int) else None
    if value == "ok":
        # No record: the event log no longer holds the event's; say the first attempt did it.
        return Delivery(destination, "ok", last_attempt or 1, None)
    if value == "dead":
        return Delivery(destination, "dead", last_attempt, last_status)
    if value == "held":  # ordered: waits for the session's earlier events (relay/store/ordering.py)
        return Delivery(destination, "held", None, last_status)
    number, dot, deferrals = value.partition(".")
    if not (number.isdigit() and dot and deferrals.isdigit()):
        return Delivery(destination, "unknown", None, last_status)  # a later version's state
    attempt = int(number)
    if destination + OWNER_SUFFIX in state:
        kind = "sending"
    elif paused:
        kind = "waiting"
    else:
        kind = "scheduled"
    return Delivery(destination, kind, attempt, last_status)


def not_found(session_id: str, sources: list[str], retention: float) -> str:
    """Why no session was found, as the CLI and the admin API say it."""
    where = f"source {sources[0]!r}" if len(sources) == 1 else f"any source ({', '.join(map(repr, sources))})"
    return f"no session {session_id!r} at {where} (a session is kept {span(retention)} after its last event)"
