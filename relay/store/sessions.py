"""Each session's record (relay:session:<source>:<sessionId>) and the index of sessions
(relay:sessions), written by the workers as they fan events out.

A record is a string of lines, one per event tracked (relay/domain/session.py), each appended
by one script (lua/session_track.lua) with APPEND: no read-modify-write between workers that
track events of one session at once, and the smallest form Redis has. A measurementId is
written once per record; a record is capped (MAX_RECORD_BYTES). APPEND leaves room for more (up
to the string's size again); the final mark rewrites the record at its exact size. An event
tracked twice (an inbox entry read again) appends a second line that parse_record skips. Every
tracked event also sets the session's timer (relay:due, ["session", source, sessionId]) to
`settle` after it: the timer decides the outcome (workers/sessions.py).
"""

import time
from typing import cast

from redis import Redis
from redis.client import Pipeline

from relay.domain.event import Event
from relay.domain.session import (
    MAX_RECORD_BYTES,
    Session,
    decides,
    final_line,
    measurement_json,
    parse_record,
    record_line,
)
from relay.store import due, keys, replies, scripts


def timer(source: str, session_id: str) -> str:
    """The relay:due member of a session's timer."""
    return due.timer(due.SESSION, source, session_id)


def track(pipe: Pipeline, event: Event, received_at: float, settle: float, retention: float) -> None:
    """Queue on `pipe` the tracking of one accepted event (lua/session_track.lua): its line, the
    record's expiry, the session's place in the index and its timer; one answer, 1 when the line
    was appended, 0 when the record was full."""
    scripts.SESSION_TRACK.queue(
        pipe,
        [keys.session_key(event.source, event.session_id), keys.SESSIONS, keys.DUE],
        [
            record_line(event, received_at),
            record_line(event, received_at, measurement=False),
            measurement_json(event),
            int(retention),
            f"{event.source}:{event.session_id}",
            received_at,
            timer(event.source, event.session_id),
            int((received_at + settle) * 1000),
            MAX_RECORD_BYTES,
            "1" if decides(event.code) else "0",
        ],
    )


def read(redis: Redis, source: str, session_id: str) -> Session | None:
    """One session, or None when the relay has no record of it (never seen, or expired)."""
    text = replies.optional_bytes(redis.get(keys.session_key(source, session_id)))
    if text is None:
        return None
    return parse_record(source, session_id, text.decode("utf-8"))


def read_many(redis: Redis, names: list[tuple[str, str]]) -> list[Session]:
    """The sessions of these (source, sessionId) that still have a record, in the same order."""
    if not names:
        return []
    texts = cast(list[bytes | None], redis.mget([keys.session_key(source, sid) for source, sid in names]))
    return [
        parse_record(source, sid, text.decode("utf-8"))
        for (source, sid), text in zip(names, texts, strict=True)
        if text is not None
    ]


def mark_final(redis: Redis, session: Session, record: dict, retention: float) -> bool:
    """Record that the session's outcome was emitted, decided from `session` as read; False if
    it had been already. Lines tracked after that read count as late."""
    key = keys.session_key(session.source, session.session_id)
    return bool(scripts.SESSION_FINAL.run(redis, [key], [final_line(record), int(retention), session.size]))


def recent(
    redis: Redis, since: float | None = None, until: float | None = None, limit: int = 50, offset: int = 0
) -> list[tuple[str, str, float]]:
    """(source, sessionId, last event at) of the sessions whose last event falls between `since`
    and `until` (unix s), newest first."""
    rows = cast(
        list[tuple[bytes, float]],
        redis.zrevrangebyscore(
            keys.SESSIONS,
            "+inf" if until is None else until,
            "-inf" if since is None else since,
            start=offset,
            num=limit,
            withscores=True,
        ),
    )
    found = []
    for member, score in rows:
        source, _, session_id = member.decode("utf-8").partition(":")
        found.append((source, session_id, float(score)))
    return found


def find(redis: Redis, session_id: str, sources: list[str]) -> list[Session]:
    """The sessions with this sessionId, in each of `sources` that has one."""
    return read_many(redis, [(source, session_id) for source in sources])


def trim(redis: Redis, retention: float, now: float | None = None) -> int:
    """Drop index entries of sessions whose records have expired; return how many."""
    cutoff = (time.time() if now is None else now) - retention
    return int(redis.zremrangebyscore(keys.SESSIONS, "-inf", f"({cutoff}"))
