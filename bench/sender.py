"""A sender that behaves as WMS, or any careful webhook sender, would: events leave on a fixed
schedule (an open loop: a stalled relay does not slow it down), a 503 is sent again after its
Retry-After, a request that failed or went unanswered for TIMEOUT seconds after RETRY_UNANSWERED
seconds, and every answer is kept.

asyncio and raw HTTP/1.1, one connection per request (gunicorn's sync workers close every
connection after one answer anyway), so that it costs the machine little beside the relay.
"""

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass

from bench.workload import SOURCE

TIMEOUT = 30.0  # seconds for a whole request: long, so that a busy relay is not sent more work
RETRY_UNANSWERED = 2.0  # seconds before a request that got no answer is sent again


@dataclass
class Answer:
    """One POST of an event and what came back (status 0: no answer, the connection failed)."""

    event_id: str
    sent: float  # unix s
    at: float  # unix s
    status: int
    resend: bool  # a deliberate second sending of an accepted event


async def post(port: int, mac: str, body: bytes) -> tuple[int, float | None]:
    """POST one event to 127.0.0.1:`port`; (status, Retry-After in seconds or None)."""
    head = (
        f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nX-WMS-Content-MAC: {mac}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + body)
        reply = await reader.read()  # to the end: the answer says Connection: close
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    status = int(reply.split(b" ", 2)[1])
    retry_after = re.search(rb"\r\nretry-after:\s*(\d+)", reply, re.I)
    return status, float(retry_after.group(1)) if retry_after else None


class Sender:
    """Sends events to the relay's POST /hooks/<source> on `port` at `rate` per second.

    A 503 (and any other 5xx) is retried after its Retry-After, capped at `retry_cap` seconds when
    given; an event is given up after `give_up_after` seconds. One event in `resend_every` is sent
    once more a second after its 202, as WMS may repeat a webhook: the relay must answer that one
    200 (a duplicate).
    """

    def __init__(
        self, port: int, rate: float, *, retry_cap: float | None, give_up_after: float, resend_every: int
    ) -> None:
        self._port, self._rate = port, rate
        self._retry_cap, self._give_up_after, self._resend_every = retry_cap, give_up_after, resend_every
        self.answers: list[Answer] = []
        self.behind = 0.0  # how late, at worst, an event's first sending started: the sender's own lag
        self._tasks: set[asyncio.Task] = set()

    async def send(self, events: list[tuple[str, str, bytes]]) -> None:
        """Start one event (id, MAC, body) every 1/rate s; return once every retry and resend ended."""
        start = time.monotonic()
        for i, (event_id, mac, body) in enumerate(events):
            due = start + i / self._rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.behind = max(self.behind, time.monotonic() - due)
            task = asyncio.create_task(self._deliver(event_id, mac, body, i % self._resend_every == 0))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def _deliver(self, event_id: str, mac: str, body: bytes, again: bool, resend: bool = False) -> None:
        """Send until answered 2xx or 4xx, or given up; then once `again` if it was accepted."""
        give_up = time.monotonic() + self._give_up_after
        while True:
            sent = time.time()
            try:
                status, retry_after = await asyncio.wait_for(post(self._port, mac, body), TIMEOUT)
            except (OSError, TimeoutError, ValueError, IndexError):  # refused, reset, timed out, garbled
                status, retry_after = 0, RETRY_UNANSWERED
            self.answers.append(Answer(event_id, sent, time.time(), status, resend))
            if status in (200, 202) or 400 <= status < 500 or time.monotonic() > give_up:
                break
            wait = retry_after or 1.0
            await asyncio.sleep(min(wait, self._retry_cap or wait))
        if status == 202 and again:
            await asyncio.sleep(1.0)
            await self._deliver(event_id, mac, body, again=False, resend=True)
