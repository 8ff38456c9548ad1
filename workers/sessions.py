"""Sessions on the worker side: each accepted event is tracked as the fan-out reads it
(workers/fanout.py; ingest stays as lean as it was), and each session's timer decides its outcome and emits the derived
event that says it (SESSION_COMPLETED, SESSION_FAILED or SESSION_ABANDONED), once.

The derived event goes through the same fan-out as WMS's events (rules, queues, retries, dead
letters), with its own stable id '<source>:<sessionId>:session': a timer that runs twice (its
taker presumed dead) queues nothing twice, because each delivery is queued once per id
(lua/enqueue.lua), and the record's final mark (lua/session_final.lua) stops later runs.
"""

import json
import logging
import time

from relay.domain.event import parse_event
from relay.domain.session import SESSION_SUFFIX, Session, Verdict, derived_body, final_record, step
from relay.store import inbox, keys, metrics, replies, sessions
from relay.store.inbox import envelope_of
from workers.fanout import fan_out_batch
from workers.runtime import Runtime

log = logging.getLogger(__name__)

BACKLOG_RECHECK = 5.0  # seconds: how soon a session waiting for the inbox's backlog is looked at again


def run_timer(rt: Runtime, source: str, session_id: str, *, now: float | None = None) -> float | None:
    """A session's timer: emit its outcome once it is settled; return when to look again (unix
    s), or None when there is nothing more to do."""
    session = sessions.read(rt.redis, source, session_id)
    if session is None or session.final is not None or not session.events:
        return None  # expired, or its outcome was emitted (a late event set the timer again)
    now = time.time() if now is None else now
    config = rt.config.sessions
    result = step(session, now, config.settle, config.idle_timeout)
    if not isinstance(result, Verdict):
        return result
    if _backlog_may_hold_events(rt, session, now):
        return now + BACKLOG_RECHECK
    emit(rt, session, result, now)
    return None


def _backlog_may_hold_events(rt: Runtime, session: Session, now: float) -> bool:
    """Whether the inbox still holds events accepted before this session's outcome would settle:
    after a restart, an outage, or while a dead reader's entries wait to be taken over, the
    session's later events may be among them. Its outcome waits for them, but not for an entry
    stuck longer than a dead reader's entries can take to be taken over (it is logged by the
    reader, and it must not hold every outcome)."""
    oldest = inbox.oldest_at(rt.redis)
    if oldest is None or oldest > session.last_received + rt.config.sessions.settle:
        return False
    operations = rt.config.operations
    stuck_after = operations.lease_grace + operations.sweep_every + rt.config.sessions.settle + BACKLOG_RECHECK
    return now - oldest < stuck_after


def emit(rt: Runtime, session: Session, verdict: Verdict, now: float) -> str:
    """Fan out the derived event of `verdict`, then mark the session's outcome as emitted;
    return the derived event's id."""
    event_id = f"{session.key}:{SESSION_SUFFIX}"
    stored = replies.optional_bytes(rt.redis.get(keys.event_key(event_id)))
    if stored is not None:
        # Fanned out by a run that died before marking it: that outcome stands and is not sent
        # again, even if an event tracked since would decide another.
        body = json.loads(json.loads(stored)["body"])
        code = body["event"]
    else:
        body = derived_body(session, verdict, rt.config.sessions.idle_timeout)
        raw = json.dumps(body, separators=(",", ":")).encode("utf-8")
        event = parse_event(session.source, raw, derived=True)  # the check every reader of it makes
        # Queued before it is marked: a crash between the two finds it stored (above), and the
        # fan-out queues each of its deliveries once anyway.
        fan_out_batch(rt, [(None, envelope_of(event, raw))])
        code = event.code
    record = final_record(body, event_id, now)
    if sessions.mark_final(rt.redis, session, record, rt.config.sessions.retention):
        log.info(
            "session %s: %s%s after %d events; %s emitted",
            session.key,
            record["outcome"],
            f" ({record['reason']})" if record["reason"] else "",
            len(session.events),
            code,
            extra={"event_id": event_id, "source": session.source, "outcome": record["outcome"]},
        )
        metrics.record_session(rt.redis, record["outcome"])  # once: only the run that marked it counts
    return event_id
