"""Where accepted events go: the dedup key and an entry in the inbox stream, in one Redis round trip.

relay:inbox is a Redis stream read by the worker processes through one consumer group
(workers/drain.py): each entry is read by one worker, stays pending until its deliveries are
claimed, and is taken over by another worker if its reader dies. An entry's fields are the
event's envelope: v, id, source, received_at and body. `body` is the raw request body, what later
gets forwarded; `v` is the envelope's version, for later changes of its shape. Plain fields, not
one JSON value: the body is not escaped a second time, and Redis stores field names once per
block of entries. Elsewhere (relay:event, dead letters, parked deliveries) the envelope is the
same object as JSON; the body is valid UTF-8, so it survives JSON unchanged.
Why a stream and not an RQ job per event: building and queueing an RQ job cost more than half
of a request's time, and running one ~3 ms of worker CPU per event (docs/performance.md).
The rest of the Redis layout is in relay/store/keys.py.
"""

import time
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from relay.domain.event import Event
from relay.store import keys, replies, stats
from relay.store.scripts import ACCEPT

ENVELOPE_VERSION = 1
ENVELOPE_FIELDS = ("v", "id", "source", "received_at", "body")  # an inbox entry's, in lua/accept.lua's order


@dataclass(frozen=True)
class Accepted:
    """The outcome of offering an event to the inbox."""

    event_id: str
    duplicate: bool


def envelope_of(event: Event, body: bytes) -> dict:
    """What the inbox holds for one event received now, and what every later step reads; a
    derived event's (relay/domain/session.py) also says `derived`, so that its body is read as
    the relay's own."""
    envelope: dict = {
        "v": ENVELOPE_VERSION,
        "id": event.id,
        "source": event.source,
        "received_at": time.time(),
        "body": body.decode("utf-8"),
    }
    if event.derived:
        envelope["derived"] = 1
    return envelope


class Inbox:
    """Accepts events into Redis: dedup and append as one atomic step."""

    def __init__(self, redis: Redis, dedup_window_seconds: float):
        self.redis = redis
        self._ttl = max(1, int(dedup_window_seconds))

    def accept(self, event: Event, body: bytes) -> Accepted:
        """Append the event to the inbox unless its id was seen within the dedup window."""
        envelope = envelope_of(event, body)
        created = ACCEPT.run(
            self.redis,
            [keys.dedup_key(event.id), keys.INBOX, stats.minute_key(envelope["received_at"])],
            [
                self._ttl,
                *(envelope[name] for name in ENVELOPE_FIELDS),
                stats.ingest_field(event.source, ""),
                stats.KEEP,
            ],
        )
        return Accepted(event.id, duplicate=not created)


def requeue(pipe: Pipeline, envelope: dict) -> None:
    """Queue on `pipe` an envelope's return to the inbox, to be routed again (a replayed dead
    letter of an event that could not be routed); dedup is not asked again: it was accepted once."""
    fields: dict[FieldT, EncodableT] = {name: envelope[name] for name in ENVELOPE_FIELDS}
    if envelope.get("derived"):
        fields["derived"] = 1
    pipe.xadd(keys.INBOX, fields)


def envelope_from_entry(fields: dict[bytes, bytes]) -> dict:
    """The envelope an inbox entry holds; KeyError or ValueError for an entry not written by accept()."""
    envelope = {
        "v": int(fields[b"v"]),
        "id": fields[b"id"].decode(),
        "source": fields[b"source"].decode(),
        "received_at": float(fields[b"received_at"]),
        "body": fields[b"body"].decode("utf-8"),
    }
    if fields.get(b"derived"):  # only a replayed dead letter of a derived event (requeue)
        envelope["derived"] = 1
    return envelope


def waiting(redis: Redis) -> list[dict]:
    """The envelopes in the inbox not yet fanned out (read or not), oldest first."""
    return [envelope_from_entry(fields) for _, fields in replies.stream_entries(redis.xrange(keys.INBOX))]


def entry_time(entry_id: bytes | str) -> float:
    """When an inbox entry was appended (unix s): a stream entry id starts with it, in ms."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0]) / 1000


def oldest_at(redis: Redis) -> float | None:
    """When the oldest event still in the inbox (read or not, not yet fanned out) was accepted;
    None when the inbox is empty. Fanned-out entries are deleted, so the first entry is it."""
    first = replies.stream_entries(redis.xrange(keys.INBOX, count=1))
    return entry_time(first[0][0]) if first else None
