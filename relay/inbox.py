"""Where accepted events go: the dedup key and the event's RQ job, written in one Redis round trip.

The job lands in RQ's queue `rq:queue:events`, drained by `python -m workers`; its one argument is
a plain JSON envelope {"v", "id", "source", "received_at", "body"}: `body` is the raw request body
(valid UTF-8, so it survives JSON unchanged) and is what later gets forwarded; `v` is the
envelope's version, for later changes of its shape (workers do not check it yet).
The rest of the Redis layout is in relay/keys.py.
"""

import importlib.resources
import time
from dataclasses import dataclass

from redis import Redis
from rq.job import JobStatus
from rq.utils import now

from relay import jobs
from relay.event import Event
from relay.keys import dedup_key

ENVELOPE_VERSION = 1
_ACCEPT_LUA = importlib.resources.files("relay").joinpath("accept.lua").read_text()


@dataclass(frozen=True)
class Accepted:
    """The outcome of offering an event to the inbox."""

    event_id: str
    duplicate: bool


class Inbox:
    """Accepts events into Redis: dedup and enqueue as one atomic step."""

    def __init__(self, redis: Redis, dedup_window_seconds: float):
        self.redis = redis
        self.queue = jobs.queue(redis)
        self._ttl = max(1, int(dedup_window_seconds))
        self._accept = redis.register_script(_ACCEPT_LUA)

    def accept(self, event: Event, body: bytes) -> Accepted:
        """Queue the event's fan-out job unless its id was seen within the dedup window."""
        envelope = {
            "v": ENVELOPE_VERSION, "id": event.id, "source": event.source, "received_at": time.time(),
            "body": body.decode("utf-8"),
        }
        # Built by RQ itself so the worker reads it like any enqueued job; RQ's own unique
        # enqueue (rq.scripts) writes the same fields from a Lua script.
        job = jobs.make(self.redis, jobs.FANOUT, [envelope], f"fan out {event.id}", status=JobStatus.QUEUED)
        job.enqueued_at = now()
        fields: list = []
        for name, value in job.to_dict().items():
            if value is not None:
                fields += (name, value)
        created = self._accept(
            keys=[dedup_key(event.id), job.key, self.queue.key, self.queue.redis_queues_keys],
            args=[self._ttl, job.id, *fields],
        )
        return Accepted(event.id, duplicate=not created)
