"""Dead letters: deliveries that will not be retried any more, kept with their event until an
operator replays or purges them, or their retention ends. The CLI and the admin API use this.
"""

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from redis.client import Pipeline

from config.durations import parse_duration
from relay.domain.outcome import Outcome
from relay.store import inbox, keys, queues, replies

log = logging.getLogger(__name__)

# The destination of an event's dead letter when it could not be routed at all (workers/fanout.py).
# No configured destination has this name: theirs begin with a letter or a digit (config/types.py).
# Replaying such a letter puts the event back in the inbox, to go through the rules again.
ROUTING = "_routing"
# Replays per second a replay may be spread at: below 0.01 the last of a few hundred would wait
# for days; above 1000 it is no spreading at all.
REPLAY_RATES = (0.01, 1000.0)


@dataclass(frozen=True)
class DeadLetter:
    """One delivery given up on: its event, where it was going, and how it last failed."""

    destination: str
    envelope: dict
    at: float  # unix time it died
    attempts: int
    outcome: str
    status: str
    detail: str
    history: tuple[dict, ...] = ()  # its delivery's attempts (relay/store/attempts.py), oldest first

    @property
    def event_id(self) -> str:
        """The event's id."""
        return self.envelope["id"]

    @property
    def source(self) -> str:
        """The source the event came in at."""
        return self.envelope["source"]

    @property
    def session_id(self) -> str:
        """The WMS session, read off the event id '<source>:<sessionId>:<sequence>'."""
        return self.event_id[len(self.source) + 1 : self.event_id.rindex(":")]

    def summary(self) -> dict:
        """Everything but the event body, for listings."""
        return {
            "destination": self.destination,
            "event_id": self.event_id,
            "source": self.source,
            "session_id": self.session_id,
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "attempts": self.attempts,
            "outcome": self.outcome,
            "status": self.status,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Filter:
    """Which dead letters an operation applies to; unset fields match everything."""

    destination: str | None = None
    source: str | None = None
    session_id: str | None = None
    since: float | None = None  # unix time
    until: float | None = None

    def matches(self, letter: DeadLetter) -> bool:
        """True when `letter` passes every given condition."""
        return (
            self.destination in (None, letter.destination)
            and self.source in (None, letter.source)
            and self.session_id in (None, letter.session_id)
        )


def parse_time(text: str, now: float | None = None) -> float:
    """'2026-11-28T09:00:00' (UTC unless it says otherwise) or a duration ago such as '2h'."""
    try:
        return (time.time() if now is None else now) - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"must be an ISO 8601 time like 2026-11-28T09:00:00 or a duration ago like 2h, got {text!r}"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def add(pipe: Pipeline, envelope: dict, destination: str, outcome: Outcome, attempts: int, history: list[dict]) -> None:
    """Queue on `pipe` the dead letter of one delivery (outcome: kind, status, detail), with the
    records of its attempts (`history`, relay/store/attempts.py): the letter may be kept longer
    than the event log keeps them."""
    now = time.time()
    letter = {
        "envelope": envelope,
        "destination": destination,
        "attempts": attempts,
        "at": round(now, 3),
        "outcome": outcome.kind,
        "status": outcome.status,
        "detail": outcome.detail,
        "history": [{k: v for k, v in record.items() if k != "event"} for record in history],
    }
    pipe.set(keys.dead_letter_key(destination, envelope["id"]), json.dumps(letter, separators=(",", ":")))
    pipe.zadd(keys.DEAD_LETTERS, {_member(destination, envelope["id"]): now})


def get(redis: Redis, destination: str, event_id: str) -> DeadLetter | None:
    """One dead letter, or None."""
    text = redis.get(keys.dead_letter_key(destination, event_id))
    return _parse(text) if text else None


def find(redis: Redis, which: Filter, limit: int | None = None) -> list[DeadLetter]:
    """The dead letters that match `which`, oldest first."""
    low = which.since if which.since is not None else "-inf"
    high = which.until if which.until is not None else "+inf"
    found = []
    for member in replies.members(redis.zrangebyscore(keys.DEAD_LETTERS, low, high)):
        destination, event_id = member.decode().split(":", 1)
        if which.destination not in (None, destination):
            continue
        letter = get(redis, destination, event_id)
        if letter is not None and which.matches(letter):
            found.append(letter)
            if limit is not None and len(found) >= limit:
                break
    return found


def count(redis: Redis, which: Filter) -> int:
    """How many dead letters match `which`: len(find(...)), without reading the letters when only
    the destination and times filter (a session or source is in the letter itself)."""
    if which.source is not None or which.session_id is not None:
        return len(find(redis, which))
    low = which.since if which.since is not None else "-inf"
    high = which.until if which.until is not None else "+inf"
    members = replies.members(redis.zrangebyscore(keys.DEAD_LETTERS, low, high))
    return sum(1 for m in members if which.destination in (None, m.decode().partition(":")[0]))


def attempts(redis: Redis, letter: DeadLetter) -> list[dict]:
    """Every recorded attempt of this letter's delivery, oldest first: kept in the letter itself;
    a letter made before the event log (which keeps no list per event) finds them in the list
    earlier versions kept, while it lasts (14 days)."""
    if letter.history:
        return [{"event": letter.event_id, **record} for record in letter.history]
    records = (json.loads(r) for r in redis.lrange(keys.attempts_key(letter.event_id), 0, -1))
    return [r for r in records if r["destination"] == letter.destination]


def purge(redis: Redis, letters: list[DeadLetter]) -> int:
    """Delete `letters`; return how many there were."""
    pipe = redis.pipeline(transaction=True)
    for letter in letters:
        pipe.delete(keys.dead_letter_key(letter.destination, letter.event_id))
        pipe.zrem(keys.DEAD_LETTERS, _member(letter.destination, letter.event_id))
    pipe.execute()
    return len(letters)


@dataclass(frozen=True)
class Replay:
    """What a replay did (or, for a dry run, would do)."""

    replayed: list[DeadLetter]
    refused: list[DeadLetter]  # already delivered to that destination, and not forced


def replay(
    redis: Redis,
    letters: list[DeadLetter],
    state_ttl: int,
    *,
    force: bool = False,
    dry_run: bool = False,
    rate: float | None = None,
) -> Replay:
    """Give `letters` a fresh delivery (attempt 1, full schedule), at most `rate` per second.

    A letter whose destination already has the event is refused unless `force`: replaying it
    would deliver the event twice.
    """
    replayed, refused = [], []
    start = time.time()  # one origin: each replay's due time must not drift with the loop's own time
    for letter in letters:
        state = (
            None
            if letter.destination == ROUTING
            else redis.hget(keys.delivery_key(letter.event_id), letter.destination)
        )
        if state == b"ok" and not force:
            refused.append(letter)
            continue
        replayed.append(letter)
        if dry_run:
            continue
        pipe = redis.pipeline(transaction=True)
        if letter.destination == ROUTING:
            inbox.requeue(pipe, letter.envelope)
        else:
            # A replay is a fresh start: its age (for max_age) counts from now.
            envelope = {**letter.envelope, "replayed_at": time.time()}
            pipe.set(keys.event_key(letter.event_id), json.dumps(envelope, separators=(",", ":")), ex=state_ttl)
            # The rate cap spreads the replays over time in the destination's queue, rather than
            # sleeping here: each is due at its own turn.
            due = start + (len(replayed) - 1) / rate if rate else start
            queues.schedule(pipe, letter.event_id, letter.destination, 1, 0, due, state_ttl)
        pipe.delete(keys.dead_letter_key(letter.destination, letter.event_id))
        pipe.zrem(keys.DEAD_LETTERS, _member(letter.destination, letter.event_id))
        pipe.execute()
        log.info("replaying %s to %s", letter.event_id, letter.destination)
    return Replay(replayed, refused)


def expire(redis: Redis, retention: float, now: float | None = None) -> int:
    """Delete dead letters older than `retention` seconds, logging each one; return how many."""
    cutoff = (time.time() if now is None else now) - retention
    old = replies.members(redis.zrangebyscore(keys.DEAD_LETTERS, "-inf", cutoff, start=0, num=1000))
    for member in old:
        destination, event_id = member.decode().split(":", 1)
        redis.delete(keys.dead_letter_key(destination, event_id))
        redis.zrem(keys.DEAD_LETTERS, member)
        log.warning(
            "dead letter %s -> %s removed: older than the %.0f-day retention", event_id, destination, retention / 86400
        )
    return len(old)


def _member(destination: str, event_id: str) -> str:
    # Destination names have no ':' (config/types.py), so the first ':' splits the member.
    return f"{destination}:{event_id}"


def _parse(text: bytes | str) -> DeadLetter:
    data = json.loads(text)
    return DeadLetter(
        data["destination"],
        data["envelope"],
        data["at"],
        data["attempts"],
        data["outcome"],
        data["status"],
        data["detail"],
        tuple(data.get("history", ())),
    )
