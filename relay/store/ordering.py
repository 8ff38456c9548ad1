"""Ordered delivery's state: each session's events held for one destination with `ordered: true`
until the events before them are done, in relay:order:<destination>:<source>:<sessionId>.

One script (lua/order_settle.lua) does every step, atomically: the fan-out holds an event
(`hold`), a delivery's end releases the next (`settle`, mode "end"), and the session's timer in
relay:due (["order", destination, source, sessionId]) gives up on gaps and re-checks while
anything waits (mode "timer"), so that a worker dying between a delivery's end and the release
of the next event delays the session, and never stalls it. The workers' side is
workers/ordering.py.
"""

import json
import time
from dataclasses import dataclass
from typing import cast

from redis import Redis
from redis.client import Pipeline

from relay.domain.event import event_id
from relay.store import due, keys, queues, replies, scripts

# While an event waits for one before it to be delivered, the timer looks again after a tenth
# of how long it has waited, within these bounds (seconds): a lost release is taken up within
# seconds for a fresh wait, within a minute for one of hours, at one look a minute per session.
RECHECK_MIN = 5.0
RECHECK_MAX = 60.0
HOLD, END, TIMER, FLUSH = "hold", "end", "timer", "flush"
SKIPPED_LIST_MAX = 1000  # sequences skipped() lists at most (a range can be as wide as a sender makes it)


def timer(destination: str, source: str, session_id: str) -> str:
    """The relay:due member of one session's ordering timer for one destination."""
    return due.timer(due.ORDER, destination, source, session_id)


@dataclass(frozen=True)
class Settled:
    """What one settle of a session did."""

    released: list[int]  # sequences queued now, in order
    skipped: list[tuple[int, int]]  # sequence ranges (inclusive) given up after the gap timeout
    passed: list[tuple[int, int]]  # seen, but never routed to this destination: not waited for
    late_after: int | None  # the ended event had arrived late: the sequence sent before it, in order
    next_at: float | None  # when the timer should run again (unix s); None: nothing waits


def hold(
    pipe: Pipeline,
    destination: str,
    source: str,
    session_id: str,
    sequence: int,
    *,
    now: float,
    gap_timeout: float,
    grace: float,
    state_ttl: int,
) -> None:
    """Queue on `pipe` one command: hold this event's delivery to `destination` until the
    session's earlier events are done (queued at once when they are); its answer is 1 (held or
    queued) or 0 (fanned out to this destination before)."""
    scripts.ORDER_SETTLE.queue(
        pipe,
        _keys(destination, source, session_id),
        _args(HOLD, destination, source, session_id, now, gap_timeout, grace, state_ttl, sequence),
    )


def settle(
    redis: Redis,
    destination: str,
    source: str,
    session_id: str,
    mode: str,
    *,
    now: float,
    gap_timeout: float,
    grace: float,
    state_ttl: int,
    ended: int | None = None,
) -> Settled:
    """Release what may go now. `mode`: END after the delivery of sequence `ended` ended (it sets
    the timer), TIMER from the session's timer (the caller sets it to `next_at`), FLUSH to release
    everything held at once (the destination is no longer ordered)."""
    reply = scripts.ORDER_SETTLE.run(
        redis,
        _keys(destination, source, session_id),
        _args(mode, destination, source, session_id, now, gap_timeout, grace, state_ttl, ended),
    )
    released, skipped_text, passed_text, late, following = reply
    next_ms = int(following)
    return Settled(
        [int(s) for s in released],
        parse_ranges(skipped_text.decode()),
        parse_ranges(passed_text.decode()),
        int(late) if late else None,
        None if next_ms < 0 else next_ms / 1000,
    )


def skipped_ranges(redis: Redis, destination: str, source: str, session_id: str) -> list[tuple[int, int]]:
    """The sequences (inclusive ranges) that `destination` gave up waiting for in this session."""
    text = replies.optional_bytes(redis.hget(keys.order_key(destination, source, session_id), "skipped"))
    return parse_ranges(text.decode()) if text else []


def skipped(redis: Redis, destination: str, source: str, session_id: str) -> list[int]:
    """The sequences that `destination` gave up waiting for in this session, ascending (at most
    SKIPPED_LIST_MAX: skipped_ranges has them all)."""
    found: list[int] = []
    for first, last in sorted(skipped_ranges(redis, destination, source, session_id)):
        room = SKIPPED_LIST_MAX - len(found)
        found.extend(range(first, min(last, first + room - 1) + 1))
        if len(found) == SKIPPED_LIST_MAX:
            break
    return found


def held(redis: Redis, destination: str, source: str, session_id: str) -> list[int]:
    """The sequences of this session waiting for `destination`, ascending."""
    names = cast(list[bytes], redis.hkeys(keys.order_key(destination, source, session_id)))
    return sorted(int(name[2:]) for name in names if name.startswith(b"h:"))


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """Ranges as the script writes them, "3,5-7", as [(3, 3), (5, 7)]."""
    ranges = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        ranges.append((int(first), int(last or first)))
    return ranges


def format_ranges(ranges: list[tuple[int, int]]) -> str:
    """Ranges as people read them: "3, 5-7"."""
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _keys(destination: str, source: str, session_id: str) -> list[str]:
    return [
        keys.order_key(destination, source, session_id),
        keys.session_key(source, session_id),
        keys.queue_key(destination),
        keys.DUE,
    ]


def _args(
    mode: str,
    destination: str,
    source: str,
    session_id: str,
    now: float,
    gap_timeout: float,
    grace: float,
    state_ttl: int,
    sequence: int | None,
) -> list:
    head, tail = member_parts(source, session_id, destination)
    prefix = event_id(source, session_id, 0)[:-1]  # '<source>:<sessionId>:'
    return [
        mode,
        destination,
        keys.delivery_key(prefix),
        keys.event_key(prefix),
        head,
        tail,
        int(now * 1000),
        int(gap_timeout * 1000),
        int(grace * 1000),
        state_ttl,
        timer(destination, source, session_id),
        "" if sequence is None else sequence,
        int(RECHECK_MIN * 1000),
        int(RECHECK_MAX * 1000),
        time.time(),  # what is released is due at once, whatever clock `now` is read on
    ]


def member_parts(source: str, session_id: str, destination: str) -> tuple[str, str]:
    """A first attempt's queue member (queues.member) for this session and destination, cut where
    its sequence goes: the script builds each member from them, spelled as Python spells it."""
    zero = event_id(source, session_id, 0)
    text = queues.member(zero, destination, 1, 0)
    quoted = json.dumps(zero)
    at = text.index(quoted) + len(quoted) - 2  # the id's last character, its sequence, before its quote
    return text[:at], text[at + 1 :]
