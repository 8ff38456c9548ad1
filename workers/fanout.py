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

from redis import Redis
from rq import get_current_job

from relay import keys
from relay.routing import route
from workers import runtime, sweeper
from workers.delivery import Attempt, forget_if_done, keep_envelope, read_envelope

log = logging.getLogger(__name__)


def fan_out_batch(redis: Redis, entries: list[tuple[bytes | None, dict | None]]) -> int:
    """Start the deliveries of a batch of (inbox entry id, envelope) and acknowledge the entries;
    an entry id of None is an event that did not come from the inbox. Return how many sends started.

    An envelope of None (an entry deleted before it was acknowledged, or not one of ours) is only
    acknowledged. An entry whose writes did not all land stays pending, to be read again.
    """
    rules = runtime.current().config.rules
    routed: list[tuple[bytes | None, dict, list[Attempt]]] = []
    for entry_id, envelope in entries:
        if envelope is None:
            continue
        # One bad entry must not hold up the others: it is kept in the log, not retried for ever.
        where = f"inbox entry {entry_id.decode()}" if entry_id else "a queued event"
        try:
            event = read_envelope(envelope)  # written by our own inbox: only a bug or a hand-made entry fails
        except Exception as exc:  # noqa: BLE001
            log.error("%s is not a valid envelope (%s); skipped: %s", where, exc, json.dumps(envelope)[:2000])
            continue
        try:
            result = route(rules, event)
        except Exception as exc:  # noqa: BLE001 - e.g. a payload number too large for a rule's bound
            log.error("%s (%s) could not be routed (%s: %s); skipped: %s", where, event.id, exc.__class__.__name__,
                      exc, json.dumps(envelope)[:2000])
            continue
        if not result.destinations:
            log.info("%s (%s, %s) matches no rule; not delivered anywhere", event.id, event.code, event.severity)
            continue
        routed.append((entry_id, envelope, [Attempt(envelope, event, d, 1, fresh=True) for d in result.destinations]))
    failed: list[bytes | None] = []
    started = 0
    for chunk in _chunks(routed, runtime.MAX_IN_FLIGHT // 2):
        started += _claim_and_start(redis, chunk, failed)
    if routed:
        sweeper.ensure_scheduled(redis)
    done = [entry_id for entry_id, _ in entries if entry_id is not None and entry_id not in failed]
    if done:
        # After the claims, never beside them: Redis acknowledges even when a claim fails (out of
        # memory, say), and an acknowledged entry is never read again. One transaction, so an
        # entry is never deleted while it is still pending.
        ack = redis.pipeline(transaction=True)
        ack.xack(keys.INBOX, keys.INBOX_GROUP, *done)
        ack.xdel(keys.INBOX, *done)
        ack.execute()
    if failed:
        raise RuntimeError(f"{len(failed)} inbox entries could not be fanned out and stay pending")
    return started


def _chunks(routed: list, limit: int):
    """Whole events, at most `limit` deliveries at a time (at least one event)."""
    chunk, size = [], 0
    for item in routed:
        if chunk and size + len(item[2]) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item[2])
    if chunk:
        yield chunk


def _claim_and_start(redis: Redis, chunk: list, failed: list) -> int:
    """Store the envelopes and claim the deliveries of `chunk` in one transaction, then hand the
    claimed ones to delivery threads reserved beforehand. Entries whose writes failed go to `failed`."""
    rt = runtime.current()
    attempts = [attempt for _, _, event_attempts in chunk for attempt in event_attempts]
    # An event with more destinations than there are threads: the rest wait for one, as before.
    reserved = min(len(attempts), runtime.MAX_IN_FLIGHT)
    rt.reserve(reserved)
    handed = 0  # reserved threads passed on to attempt.start, which sends or gives each back
    try:
        positions: list[tuple[bytes | None, str, list[int]]] = []
        pipe = redis.pipeline(transaction=True)  # so no delivery's end can fall between our writes
        for entry_id, envelope, event_attempts in chunk:
            writes = [len(pipe)]
            keep_envelope(pipe, envelope)
            for attempt in event_attempts:
                writes.append(len(pipe))
                attempt.claim_on(redis, pipe)
            positions.append((entry_id, envelope["id"], writes))
        replies = pipe.execute(raise_on_error=False)
        started = 0
        reply_of = iter(replies[p] for _, _, writes in positions for p in writes[1:])
        for index, attempt in enumerate(attempts):
            reply = next(reply_of)
            if isinstance(reply, Exception):
                log.error("%s -> %s: the claim failed: %s", attempt.event.id, attempt.destination, reply)
                continue
            is_reserved = index < reserved
            handed += is_reserved
            started += attempt.start(redis, reply, reserved=is_reserved) and reply == 1
    finally:
        rt.unreserve(reserved - handed)
    for entry_id, event_id, writes in positions:
        if any(isinstance(replies[p], Exception) for p in writes):
            failed.append(entry_id)
        elif all(replies[p] == 0 for p in writes[1:]):
            # Fanned out before (read again, or taken over from a reader that seemed dead): the
            # envelope just stored is not needed if every destination is done already.
            forget_if_done(redis, event_id)
    return started


def fan_out(envelope: dict) -> None:
    """RQ job of earlier versions (one job per event): events queued before an upgrade still go out."""
    fan_out_batch(get_current_job().connection, [(None, envelope)])
