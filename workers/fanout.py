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

from relay.domain.outcome import Outcome
from relay.domain.routing import route
from relay.store import dead_letters, deliveries, keys, queues
from workers import runtime
from workers.delivery import read_envelope
from workers.runtime import Runtime

log = logging.getLogger(__name__)

FANOUT_CHUNK = 64  # deliveries per transaction: bounds the size of one MULTI


@dataclass(frozen=True)
class _Routed:
    """One event to fan out: where it came from and the first attempt of each delivery."""

    entry_id: bytes | None  # its inbox entry; None for an event that did not come from the inbox
    envelope: dict
    destinations: tuple[str, ...]


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
    for entry_id, envelope in entries:
        if envelope is not None:
            item = _route(rt, entry_id, envelope)
            if isinstance(item, _Routed):
                routed.append(item)
            elif isinstance(item, _Unroutable):
                unroutable.append(item)
    failed: list[bytes | None] = []
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
    rt.wake({d for item in routed for d in item.destinations})
    if failed:
        raise RuntimeError(f"{len(failed)} inbox entries could not be fanned out and stay pending")
    return queued


@dataclass(frozen=True)
class _Unroutable:
    """An event whose envelope could not be read or whose routing raised: kept as a dead letter."""

    entry_id: bytes | None
    envelope: dict
    reason: str


def _route(rt: Runtime, entry_id: bytes | None, envelope: dict) -> _Routed | _Unroutable | None:
    """The event's first attempts; _Unroutable for one that cannot be routed; None (logged at
    INFO) for one that matches no rule, or (at ERROR) for an entry that is not an event at all."""
    where = f"inbox entry {entry_id.decode()}" if entry_id else "a queued event"
    try:
        event = read_envelope(envelope)  # written by our own inbox: only a bug or a hand-made entry fails
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
        return None
    return _Routed(entry_id, envelope, result.destinations)


def _dead_letter(rt: Runtime, items: list[_Unroutable], failed: list[bytes | None]) -> None:
    """Store the dead letters of events that could not be routed; entries whose write failed go to `failed`."""
    for item in items:  # rare: a transaction each, so that one failure keeps only its own entry pending
        pipe = rt.redis.pipeline(transaction=True)
        dead_letters.add(pipe, item.envelope, dead_letters.ROUTING, Outcome("permanent", "unroutable", item.reason), 0)
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
        if chunk and size + len(item.destinations) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item.destinations)
    if chunk:
        yield chunk


def _enqueue(rt: Runtime, chunk: list[_Routed], failed: list[bytes | None]) -> int:
    """Store the envelopes of `chunk` and queue their deliveries' first attempts in one
    transaction; return how many were queued. Entries whose writes failed go to `failed`."""
    pipe = rt.redis.pipeline(transaction=True)  # so no delivery's end can fall between our writes
    for item in chunk:
        deliveries.keep_envelope(pipe, item.envelope, rt.config.state_ttl)
        for destination in item.destinations:
            queues.enqueue_first(pipe, item.envelope["id"], destination, rt.config.state_ttl)
    replies = iter(pipe.execute(raise_on_error=False))
    queued = 0
    for item in chunk:
        # Per event: the envelope's write, then one enqueue per destination, in the order queued.
        kept = next(replies)
        answers = [next(replies) for _ in item.destinations]
        for destination, answer in zip(item.destinations, answers, strict=True):
            if isinstance(answer, Exception):
                log.error(
                    "%s -> %s: queueing the delivery failed: %s",
                    item.envelope["id"],
                    destination,
                    answer,
                    extra={"event_id": item.envelope["id"], "destination": destination},
                )
        if isinstance(kept, Exception) or any(isinstance(answer, Exception) for answer in answers):
            failed.append(item.entry_id)
        elif not any(answers):
            # Fanned out before (read again, or taken over from a reader that seemed dead): the
            # envelope just stored is not needed if every destination is done already.
            deliveries.forget_if_done(rt.redis, item.envelope["id"])
        queued += sum(answer == 1 for answer in answers)
    return queued


def fan_out(envelope: dict) -> None:
    """RQ entry point (jobs.FANOUT) of earlier versions, one job per event: events queued before
    an upgrade still go out."""
    fan_out_batch(runtime.current(), [(None, envelope)])
