"""The inbox reader: every worker process reads relay:inbox through the consumer group `fanout`,
a batch at a time, and fans the events out (workers/fanout.py) into each destination's queue,
on a thread of its own beside the lanes that send (workers/lanes.py) and RQ's job loop.

Why not an RQ job per event: one costs ~3 ms of worker CPU, several times a whole delivery; and
why not RQ jobs per batch: something would have to wake them, which costs ingest a round trip
and lets only one batch run at a time. A consumer group gives each entry to one reader, keeps it
pending until acknowledged and lets another reader take it over, and adding worker processes
adds readers.

An entry is pending from its read until its deliveries are queued: milliseconds, since the
reader never waits for a send. One pending longer than operations.lease_grace belongs to a reader
that died: the next maintenance of any reader (every operations.sweep_every) takes it over.
"""

import logging
import os
import socket
import threading
import time
import uuid

from redis.exceptions import ResponseError

from relay.store import keys, replies
from relay.store.inbox import envelope_from_entry
from relay.store.scripts import FORGET_READERS
from workers.fanout import fan_out_batch
from workers.outage import waits_out
from workers.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 16  # entries per read: with 3 destinations each, 48 claims in one pipeline
BLOCK_MS = 1000  # how long one read waits for new entries: also how soon a stop is noticed
ERROR_PAUSE = 1.0  # seconds between a failed step and the next
IDLE_READER_TTL_MS = 3600_000  # readers with nothing pending and idle this long are forgotten


class Drain:
    """One reader of the inbox; `start` runs it on a thread, `drain_all` in the caller."""

    def __init__(self, rt: Runtime, name: str | None = None):
        self.rt = rt
        self.redis = rt.redis
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_own = False  # after an error: read once more what this reader holds
        self._reading_own = False  # the step in hand is that second read
        self._next_maintenance = 0.0

    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless they exist; from the first entry on."""
        try:
            self.redis.xgroup_create(keys.INBOX, keys.INBOX_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self, block_ms: int | None = BLOCK_MS) -> int:
        """Fan out one batch; return how many entries it held (0: nothing was waiting)."""
        rt = self.rt
        started = rt.outage.clock()
        if rt.suspended():
            # `rq suspend` pauses the whole worker, fan-out too, until `rq resume`.
            self._stop.wait(1 if block_ms else 0)
            return 0
        if self._stop.is_set():
            return 0
        try:
            if time.monotonic() >= self._next_maintenance:
                self._next_maintenance = time.monotonic() + rt.config.operations.sweep_every
                taken = self._take_over(int(rt.config.operations.lease_grace * 1000))
                rt.outage.ok(started)
                if taken:
                    return taken
            entries, self._reading_own = [], self._retry_own
            if self._retry_own:
                # Once, right after an error: entries that fail again wait for a take-over
                # (after lease_grace), so one that always fails cannot hold up the others.
                self._retry_own = False
                entries = self._read("0", None)
            if not entries:
                self._reading_own = False
                entries = self._read(">", block_ms)
            rt.outage.ok(started)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # Redis was emptied (or never had it): the next read finds it
            return 0
        if not entries:
            return 0
        self._fan_out(entries)
        return len(entries)

    def _fan_out(self, entries: list) -> None:
        fan_out_batch(self.rt, [(entry_id, _envelope(entry_id, fields)) for entry_id, fields in entries])

    def _read(self, start: str, block_ms: int | None) -> list:
        """Entries this reader holds ("0") or new ones (">")."""
        reply = replies.read_group_streams(
            self.redis.xreadgroup(keys.INBOX_GROUP, self.name, {keys.INBOX: start}, count=BATCH, block=block_ms)
        )
        return reply[0][1] if reply else []

    def drain_all(self) -> int:
        """Fan out everything waiting now, in this thread (`--burst` and tests); return how many."""
        self.ensure_group()
        total = 0
        while count := self.step(block_ms=None):
            total += count
        return total

    def start(self) -> None:
        self.ensure_group()
        self._thread = threading.Thread(target=self._run, name="inbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in hand and stop reading (within a read's BLOCK_MS)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.guarded_step()

    def guarded_step(self) -> None:
        """One step; an error is logged (Redis away: to the process's outage account), and what
        this reader holds is read once more, unless that was what failed."""
        started = self.rt.outage.clock()
        try:
            self.step()
        except Exception as exc:
            if waits_out(exc):
                self.rt.outage.failed(exc, started)
            else:
                log.exception("reading the inbox failed; trying again in %g s", ERROR_PAUSE)
            self._retry_own = not self._reading_own
            self._stop.wait(ERROR_PAUSE)

    def _take_over(self, min_idle_ms: int) -> int:
        """Fan out entries left pending by readers that died; forget long-idle readers."""
        reply = self.redis.xautoclaim(keys.INBOX, keys.INBOX_GROUP, self.name, min_idle_ms, count=BATCH)
        # Redis 6.2 answers an entry deleted while pending without its id: nothing to fan out.
        entries = [(entry_id, fields) for entry_id, fields in (reply[1] if reply else []) if entry_id]
        if entries:
            log.warning(
                "taking over %d inbox entries left pending by a stopped worker",
                len(entries),
                extra={"outcome": "taken_over"},
            )
            self._fan_out(entries)
        FORGET_READERS.run(self.redis, [keys.INBOX], [keys.INBOX_GROUP, IDLE_READER_TTL_MS, self.name])
        return len(entries)


def _envelope(entry_id: bytes, fields: dict | None) -> dict | None:
    """An entry's envelope; None for an entry deleted while it was pending, or not one of ours."""
    if not fields:
        return None
    try:
        return envelope_from_entry(fields)
    except (KeyError, ValueError) as exc:
        # Not written by the inbox: a bug or a hand-made entry. Kept in the log, not read forever.
        shown = {k.decode(errors="replace"): v.decode(errors="replace")[:2000] for k, v in fields.items()}
        log.error(
            "inbox entry %s is not an event envelope (%s: %s); skipped: %s",
            entry_id.decode(),
            exc.__class__.__name__,
            exc,
            shown,
        )
        return None
