"""The fan-out: route accepted events and hand a delivery to every destination their rules name.

Events arrive in batches from the inbox stream (workers/drain.py); a batch's envelopes and the
claims of all its deliveries go to Redis in one pipeline, the acknowledgement of its entries in a
second one, and the sends run on delivery threads (workers/runtime.py), so a slow destination holds up
neither the others nor later events. A destination that fails gets a retry job of its own
(workers/delivery.py), so it never repeats the others.

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
from workers.delivery import Attempt, keep_envelope, read_envelope

log = logging.getLogger(__name__)


def fan_out_batch(redis: Redis, entries: list[tuple[bytes | None, dict | None]]) -> int:
    """Start the deliveries of a batch of (inbox entry id, envelope) and acknowledge the entries;
    an entry id of None is an event that did not come from the inbox. Return how many sends started.

    An envelope of None (an entry deleted before it was acknowledged, or not one of ours) is only
    acknowledged. An entry whose writes did not all land stays pending, to be read again.
    """
    rules = runtime.current().config.rules
    attempts: list[tuple[int, Attempt]] = []  # with the position of its claim's reply
    writes: dict[bytes | None, list[int]] = {}  # entry id -> positions of its writes' replies
    pipe = redis.pipeline(transaction=False)
    for entry_id, envelope in entries:
        writes[entry_id] = []
        if envelope is None:
            continue
        try:
            event = read_envelope(envelope)
        except (KeyError, TypeError, ValueError) as exc:
            # Written by our own inbox, so a bug or a hand-made entry: kept in the log, not retried forever.
            where = f"inbox entry {entry_id.decode()}" if entry_id else "a queued event"
            log.error("%s is not a valid envelope (%s); skipped: %s", where, exc, json.dumps(envelope)[:2000])
            continue
        result = route(rules, event)
        if not result.destinations:
            log.info("%s (%s, %s) matches no rule; not delivered anywhere", event.id, event.code, event.severity)
            continue
        writes[entry_id].append(len(pipe))
        keep_envelope(pipe, envelope)
        for destination in result.destinations:
            attempt = Attempt(envelope, event, destination, 1, fresh=True)
            writes[entry_id].append(len(pipe))
            attempts.append((len(pipe), attempt))
            attempt.claim_on(redis, pipe)
    # Not raising at the first error: Redis ran every command anyway, and what did land counts.
    replies = pipe.execute(raise_on_error=False) if len(pipe) else []
    failed = [entry_id for entry_id, positions in writes.items()
              if any(isinstance(replies[p], Exception) for p in positions)]
    started = 0
    for position, attempt in attempts:
        if not isinstance(replies[position], Exception):
            started += attempt.start(redis, replies[position]) and replies[position] == 1
    if attempts:
        sweeper.ensure_scheduled(redis)
    done = [entry_id for entry_id in writes if entry_id is not None and entry_id not in failed]
    if done:
        # After the claims, never in their pipeline: Redis acknowledges even when a claim fails
        # (out of memory, say), and an acknowledged entry is never read again.
        ack = redis.pipeline(transaction=False)
        ack.xack(keys.INBOX, keys.INBOX_GROUP, *done)
        ack.xdel(keys.INBOX, *done)
        ack.execute()
    if failed:
        error = next(replies[p] for p in writes[failed[0]] if isinstance(replies[p], Exception))
        raise RuntimeError(f"{len(failed)} inbox entries could not be fanned out and stay pending: {error}")
    return started


def fan_out(envelope: dict) -> None:
    """RQ job of earlier versions (one job per event): events queued before an upgrade still go out."""
    fan_out_batch(get_current_job().connection, [(None, envelope)])
