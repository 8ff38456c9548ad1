"""The fan-out: route accepted events and hand a delivery to every destination their rules name.

Events arrive in batches from the inbox stream (workers/drain.py). Delivery threads are
reserved first (workers/runtime.py), since a claim starts its delivery's lease; then a batch's
envelopes and the claims of its deliveries go to Redis in one transaction (a few, for more
deliveries than 16), the sends start, and the entries are acknowledged in another transaction.
A slow destination holds up neither the others nor later events. A destination that fails gets
a retry job of its own (workers/delivery.py), so it never repeats the others.

Entries are acknowledged once their claims have landed: a claimed delivery holds a lease, so one
whose worker dies before sending it is sent by the sweeper; an entry whose claims did not all
land stays pending and is read again, and the claims that did land make that send nothing twice.
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from relay.domain.routing import route
from relay.store import deliveries, keys
from workers import runtime, sweeper
from workers.delivery import Attempt, read_envelope
from workers.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Routed:
    """One event to fan out: where it came from and the first attempt of each delivery."""

    entry_id: bytes | None  # its inbox entry; None for an event that did not come from the inbox
    envelope: dict
    attempts: list[Attempt]


def fan_out_batch(rt: Runtime, entries: list[tuple[bytes | None, dict | None]]) -> int:
    """Start the deliveries of a batch of (inbox entry id, envelope) and acknowledge the entries;
    an entry id of None is an event that did not come from the inbox. Return how many sends started.

    An envelope of None (an entry deleted before it was acknowledged, or not one of ours) is only
    acknowledged. An entry whose writes did not all land stays pending, to be read again.
    """
    routed = [
        item
        for entry_id, envelope in entries
        if envelope is not None
        if (item := _route(rt, entry_id, envelope)) is not None
    ]
    failed: list[bytes | None] = []
    started = 0
    for chunk in _chunks(routed, runtime.MAX_IN_FLIGHT // 2):
        started += _claim_and_start(rt, chunk, failed)
    if routed:
        sweeper.ensure_scheduled(rt)
    done = [entry_id for entry_id, _ in entries if entry_id is not None and entry_id not in failed]
    if done:
        # After the claims, never beside them: Redis acknowledges even when a claim fails (out of
        # memory, say), and an acknowledged entry is never read again. One transaction, so an
        # entry is never deleted while it is still pending.
        ack = rt.redis.pipeline(transaction=True)
        ack.xack(keys.INBOX, keys.INBOX_GROUP, *done)
        ack.xdel(keys.INBOX, *done)
        ack.execute()
    if failed:
        raise RuntimeError(f"{len(failed)} inbox entries could not be fanned out and stay pending")
    return started


def _route(rt: Runtime, entry_id: bytes | None, envelope: dict) -> _Routed | None:
    """The event's first attempts; None (logged) for an event that goes nowhere."""
    # One bad entry must not hold up the others: it is kept in the log, not retried for ever.
    where = f"inbox entry {entry_id.decode()}" if entry_id else "a queued event"
    try:
        event = read_envelope(envelope)  # written by our own inbox: only a bug or a hand-made entry fails
    except Exception as exc:  # noqa: BLE001
        log.error("%s is not a valid envelope (%s); skipped: %s", where, exc, json.dumps(envelope)[:2000])
        return None
    try:
        result = route(rt.config.rules, event)
    except Exception as exc:  # noqa: BLE001 - e.g. a payload number too large for a rule's bound
        log.error(
            "%s (%s) could not be routed (%s: %s); skipped: %s",
            where,
            event.id,
            exc.__class__.__name__,
            exc,
            json.dumps(envelope)[:2000],
        )
        return None
    if not result.destinations:
        log.info("%s (%s, %s) matches no rule; not delivered anywhere", event.id, event.code, event.severity)
        return None
    return _Routed(entry_id, envelope, [Attempt(envelope, event, d, 1, fresh=True) for d in result.destinations])


def _chunks(routed: list[_Routed], limit: int) -> Iterator[list[_Routed]]:
    """Whole events, at most `limit` deliveries at a time (at least one event)."""
    chunk: list[_Routed] = []
    size = 0
    for item in routed:
        if chunk and size + len(item.attempts) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item.attempts)
    if chunk:
        yield chunk


def _claim_and_start(rt: Runtime, chunk: list[_Routed], failed: list[bytes | None]) -> int:
    """Store the envelopes and claim the deliveries of `chunk` in one transaction, then hand the
    claimed ones to delivery threads reserved beforehand. Entries whose writes failed go to `failed`."""
    # An event with more destinations than there are threads: the rest wait for one.
    reserved = min(sum(len(item.attempts) for item in chunk), runtime.MAX_IN_FLIGHT)
    rt.reserve(reserved)
    handed = 0  # reserved threads passed on to attempt.start, which sends or gives each back
    try:
        pipe = rt.redis.pipeline(transaction=True)  # so no delivery's end can fall between our writes
        for item in chunk:
            deliveries.keep_envelope(pipe, item.envelope, rt.config.state_ttl)
            for attempt in item.attempts:
                attempt.claim_on(rt, pipe)
        replies = iter(pipe.execute(raise_on_error=False))
        # Per event: the envelope's write, then one claim per attempt, in the order queued.
        results = [(item, next(replies), [next(replies) for _ in item.attempts]) for item in chunk]
        started = 0
        for item, _, claims in results:
            for attempt, claimed in zip(item.attempts, claims, strict=True):
                if isinstance(claimed, Exception):
                    log.error("%s -> %s: the claim failed: %s", attempt.event.id, attempt.destination, claimed)
                    continue
                is_reserved = handed < reserved
                handed += is_reserved
                started += attempt.start(rt, claimed, reserved=is_reserved) and claimed == 1
    finally:
        rt.unreserve(reserved - handed)
    for item, kept, claims in results:
        if isinstance(kept, Exception) or any(isinstance(claimed, Exception) for claimed in claims):
            failed.append(item.entry_id)
        elif all(claimed == 0 for claimed in claims):
            # Fanned out before (read again, or taken over from a reader that seemed dead): the
            # envelope just stored is not needed if every destination is done already.
            deliveries.forget_if_done(rt.redis, item.envelope["id"])
    return started


def fan_out(envelope: dict) -> None:
    """RQ entry point (jobs.FANOUT) of earlier versions, one job per event: events queued before
    an upgrade still go out."""
    fan_out_batch(runtime.current(), [(None, envelope)])
