"""The fan-out: route accepted events and queue a delivery for every destination their rules name.

Events arrive in batches from the inbox stream (workers/drain.py). A batch's envelopes and the
first attempts of its deliveries go to Redis in one transaction (a few, for more deliveries than
FANOUT_CHUNK), each delivery into its own destination's queue (relay/store/queues.py), then the
entries are acknowledged in another transaction and the lanes of the destinations concerned are
woken. The fan-out never waits for a send: a slow destination lengthens its own queue only.

Entries are acknowledged once their deliveries are queued: an entry whose writes did not all
land stays pending and is read again, and the deliveries that were queued make that queue
nothing twice (lua/enqueue.lua).
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from redis.exceptions import RedisError

from config.destinations import HttpDestination
from config.rules import Rule
from relay.domain.event import Event
from relay.domain.outcome import Outcome
from relay.domain.routing import route
from relay.store import dead_letters, deliveries, event_log, keys, queues, sessions
from workers import grouping, ordering, runtime
from workers.delivery import read_envelope
from workers.runtime import Runtime

log = logging.getLogger(__name__)

FANOUT_CHUNK = 64  # deliveries per transaction: bounds the size of one MULTI


@dataclass(frozen=True)
class _Routed:
    """One event to fan out: where it came from and where it goes, by how it is queued there."""

    entry_id: bytes | None  # its inbox entry; None for an event that did not come from the inbox
    envelope: dict
    event: Event
    destinations: tuple[str, ...]  # each delivery queued at once
    ordered: tuple[str, ...] = ()  # held until the session's earlier events are done (workers/ordering.py)
    grouped: tuple[tuple[str, Rule], ...] = ()  # into the session's grouped message (workers/grouping.py)
    rules: tuple[str, ...] = ()  # the rules that fired, for the event log

    @property
    def size(self) -> int:
        """How many deliveries (or group entries) this event makes."""
        return len(self.destinations) + len(self.ordered) + len(self.grouped)


def fan_out_batch(rt: Runtime, entries: list[tuple[bytes | None, dict | None]]) -> int:
    """Queue the deliveries of a batch of (inbox entry id, envelope) and acknowledge the entries;
    an entry id of None is an event that did not come from the inbox. Return how many deliveries
    were queued.

    An envelope of None (an entry deleted before it was acknowledged, or not one of ours) is only
    acknowledged. An event that cannot be routed becomes a dead letter (dead_letters.ROUTING)
    before its entry is acknowledged. An entry whose writes did not all land stays pending, to be
    read again.
    """
    routed: list[_Routed] = []
    unroutable: list[_Unroutable] = []
    tracked: list[tuple[bytes | None, Event, float]] = []
    unrouted_logs: list[tuple[bytes | None, Event, dict]] = []  # matched no rule: logged on their own
    for entry_id, envelope in entries:
        if envelope is not None:
            item = _route(rt, entry_id, envelope, tracked)
            if isinstance(item, _Routed):
                routed.append(item)
            elif isinstance(item, _Unroutable):
                unroutable.append(item)
            elif isinstance(item, _NoRule):
                unrouted_logs.append((entry_id, item.event, envelope))
    failed: list[bytes | None] = []
    # A routed event is tracked in the transaction that queues its deliveries (so an ordered
    # destination never finds an event tracked but not yet held); the others on their own.
    routed_ids = {item.event.id for item in routed}
    unrouted = [t for t in tracked if t[1].id not in routed_ids]
    if unrouted:
        _track(rt, unrouted, failed)
    if unrouted_logs:
        _log_unrouted(rt, unrouted_logs, failed)
    queued = 0
    for chunk in _chunks(routed, FANOUT_CHUNK):
        queued += _enqueue(rt, chunk, failed)
    if unroutable:
        _dead_letter(rt, unroutable, failed)
    done = [entry_id for entry_id, _ in entries if entry_id is not None and entry_id not in failed]
    if done:
        # After the deliveries are queued, never beside them: Redis acknowledges even when a write
        # fails (out of memory, say), and an acknowledged entry is never read again. One
        # transaction, so an entry is never deleted while it is still pending.
        ack = rt.redis.pipeline(transaction=True)
        ack.xack(keys.INBOX, keys.INBOX_GROUP, *done)
        ack.xdel(keys.INBOX, *done)
        ack.execute()
    rt.wake({d for item in routed for d in (*item.destinations, *item.ordered)})
    if failed:
        raise RuntimeError(f"{len(failed)} inbox entries could not be fanned out and stay pending")
    return queued


@dataclass(frozen=True)
class _Unroutable:
    """An event whose envelope could not be read or whose routing raised: kept as a dead letter."""

    entry_id: bytes | None
    envelope: dict
    reason: str


@dataclass(frozen=True)
class _NoRule:
    """An event that matches no rule: delivered nowhere, but logged."""

    event: Event


def _route(
    rt: Runtime, entry_id: bytes | None, envelope: dict, tracked: list[tuple[bytes | None, Event, float]]
) -> _Routed | _Unroutable | _NoRule | None:
    """The event's first attempts; _Unroutable for one that cannot be routed; _NoRule (logged at
    INFO) for one that matches no rule; None (at ERROR) for an entry that is not an event at all.
    A WMS event read is added to `tracked`, routed or not: its session counts every event."""
    where = f"inbox entry {entry_id.decode()}" if entry_id else "a queued event"
    try:
        event = read_envelope(envelope)  # written by our own inbox: only a bug or a hand-made entry fails
        if not event.derived:
            tracked.append((entry_id, event, envelope["received_at"]))
        result = route(rt.config.rules, event)
    except Exception as exc:  # noqa: BLE001 - one bad entry must not hold up the rest of its batch
        reason = f"{exc.__class__.__name__}: {exc}"
        if isinstance(envelope.get("id"), str) and isinstance(envelope.get("source"), str):
            # Never a silent skip: the operator finds it among the dead letters and can replay it
            # (through the rules again) once the cause is fixed.
            log.error(
                "%s (%s) could not be routed (%s); kept as a dead letter",
                where,
                envelope["id"],
                reason,
                extra={"event_id": envelope["id"], "source": envelope["source"], "outcome": "unroutable"},
            )
            return _Unroutable(entry_id, envelope, reason)
        log.error("%s is not an event (%s); dropped: %s", where, reason, json.dumps(envelope)[:2000])
        return None
    for problem in result.unevaluable:
        log.warning("%s (%s): %s; taken as not matching", where, event.id, problem, extra={"event_id": event.id})
    if not result.destinations:
        log.info(
            "%s (%s, %s) matches no rule; not delivered anywhere",
            event.id,
            event.code,
            event.severity,
            extra={"event_id": event.id, "source": event.source, "outcome": "no_rule"},
        )
        return _NoRule(event)
    rules = {rule.name: rule for rule in rt.config.rules}
    grouped = dict(result.grouped)
    ordered = tuple(d for d in result.destinations if d not in grouped and _is_ordered(rt, d) and not event.derived)
    return _Routed(
        entry_id,
        envelope,
        event,
        tuple(d for d in result.destinations if d not in grouped and d not in ordered),
        ordered,
        tuple((d, rules[name]) for d, name in grouped.items()),
        result.rules,
    )


def _is_ordered(rt: Runtime, destination: str) -> bool:
    config = rt.config.destinations.get(destination)
    return isinstance(config, HttpDestination) and config.ordered


def _track(rt: Runtime, tracked: list[tuple[bytes | None, Event, float]], failed: list[bytes | None]) -> None:
    """Track events that go nowhere in their sessions (relay/store/sessions.py), in one round
    trip; entries whose writes failed go to `failed`, to be read again (tracking twice is harmless)."""
    config = rt.config.sessions
    pipe = rt.redis.pipeline(transaction=False)
    for _, event, received_at in tracked:
        sessions.track(pipe, event, received_at, config.settle, config.retention)
    for (entry_id, event, _), reply in zip(tracked, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(reply, Exception):
            _tracking_failed(event, reply)
            failed.append(entry_id)


def _log_unrouted(rt: Runtime, items: list[tuple[bytes | None, Event, dict]], failed: list[bytes | None]) -> None:
    """Log events that matched no rule in the event log, in one round trip; entries whose write
    failed go to `failed`, to be read again (logging twice writes nothing twice)."""
    pipe = rt.redis.pipeline(transaction=False)
    for _, event, envelope in items:
        event_log.log_event(pipe, event, envelope, (), (), (), rt.config.event_log.retention)
    for (entry_id, event, _), reply in zip(items, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(reply, Exception):
            _logging_failed(event, reply)
            failed.append(entry_id)


def _logging_failed(event: Event, error: Exception) -> None:
    log.error(
        "%s: logging it in the event log failed: %s",
        event.id,
        error,
        extra={"event_id": event.id, "source": event.source},
    )


def _tracking_failed(event: Event, error: Exception) -> None:
    log.error(
        "%s: tracking its session failed: %s", event.id, error, extra={"event_id": event.id, "source": event.source}
    )


def _dead_letter(rt: Runtime, items: list[_Unroutable], failed: list[bytes | None]) -> None:
    """Store the dead letters of events that could not be routed; entries whose write failed go to `failed`."""
    for item in items:  # rare: a transaction each, so that one failure keeps only its own entry pending
        pipe = rt.redis.pipeline(transaction=True)
        dead_letters.add(
            pipe, item.envelope, dead_letters.ROUTING, Outcome("permanent", "unroutable", item.reason), 0, []
        )
        try:
            pipe.execute()
        except RedisError as exc:
            log.error(
                "%s: keeping it as a dead letter failed: %s",
                item.envelope["id"],
                exc,
                extra={"event_id": item.envelope["id"]},
            )
            failed.append(item.entry_id)


def _chunks(routed: list[_Routed], limit: int) -> Iterator[list[_Routed]]:
    """Whole events, at most `limit` deliveries at a time (at least one event)."""
    chunk: list[_Routed] = []
    size = 0
    for item in routed:
        if chunk and size + item.size > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item.size
    if chunk:
        yield chunk


def _enqueue(rt: Runtime, chunk: list[_Routed], failed: list[bytes | None]) -> int:
    """Store the envelopes of `chunk` and queue their deliveries' first attempts in one
    transaction; return how many were queued. Entries whose writes failed go to `failed`."""
    pipe = rt.redis.pipeline(transaction=True)  # so no delivery's end can fall between our writes
    config = rt.config.sessions
    for item in chunk:
        if not item.event.derived:
            sessions.track(pipe, item.event, item.envelope["received_at"], config.settle, config.retention)
        # Before any attempt can be recorded: each appends a line to the record written here.
        event_log.log_event(
            pipe,
            item.event,
            item.envelope,
            item.rules,
            (*item.destinations, *item.ordered),
            tuple(d for d, _ in item.grouped),
            rt.config.event_log.retention,
        )
        if item.destinations or item.ordered:  # a grouped message keeps what it needs of the event
            deliveries.keep_envelope(pipe, item.envelope, rt.config.state_ttl)
        for destination in item.destinations:
            queues.enqueue_first(pipe, item.envelope["id"], destination, rt.config.state_ttl)
        for destination in item.ordered:
            ordering.hold(pipe, rt, item.event, destination)
        for destination, rule in item.grouped:
            grouping.add(pipe, rt, item.event, item.envelope, destination, rule)
    replies = iter(pipe.execute(raise_on_error=False))
    queued = 0
    for item in chunk:
        # Per event: its tracking, its event log entry, the envelope's write, then one answer per
        # destination, in the order queued: 1 queued (or held), 0 queued before; a grouped entry's
        # answer only tells of an error.
        tracking = next(replies) if not item.event.derived else None
        if isinstance(tracking, Exception):
            _tracking_failed(item.event, tracking)
        logged = next(replies)
        if isinstance(logged, Exception):
            _logging_failed(item.event, logged)
        kept = next(replies) if item.destinations or item.ordered else None
        targets = [*item.destinations, *item.ordered, *(d for d, _ in item.grouped)]
        answers = [next(replies) for _ in targets]
        for destination, answer in zip(targets, answers, strict=True):
            if isinstance(answer, Exception):
                log.error(
                    "%s -> %s: queueing the delivery failed: %s",
                    item.envelope["id"],
                    destination,
                    answer,
                    extra={"event_id": item.envelope["id"], "destination": destination},
                )
        if any(isinstance(answer, Exception) for answer in (tracking, logged, kept, *answers)):
            failed.append(item.entry_id)
        elif (item.destinations or item.ordered) and not any(answers[: len(item.destinations) + len(item.ordered)]):
            # Fanned out before (read again, or taken over from a reader that seemed dead): the
            # envelope just stored is not needed if every destination is done already.
            deliveries.forget_if_done(rt.redis, item.envelope["id"])
        queued += sum(answer == 1 for answer in answers[: len(item.destinations) + len(item.ordered)])
    return queued


def fan_out(envelope: dict) -> None:
    """RQ entry point (jobs.FANOUT) of earlier versions, one job per event: events queued before
    an upgrade still go out."""
    fan_out_batch(runtime.current(), [(None, envelope)])
