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
from relay.domain.session import Session, Verdict, derived_body, final_record, step
from relay.store import sessions
from relay.store.inbox import envelope_of
from workers.fanout import fan_out_batch
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def run_timer(rt: Runtime, source: str, session_id: str, now: float | None = None) -> float | None:
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
    emit(rt, session, result, now)
    return None


def emit(rt: Runtime, session: Session, verdict: Verdict, now: float) -> str:
    """Fan out the derived event of `verdict`, then mark the session's outcome as emitted;
    return the derived event's id."""
    payload = derived_body(session, verdict, rt.config.sessions.idle_timeout)
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    event = parse_event(session.source, body, derived=True)  # the check every reader of it makes
    # Queued before it is marked: a crash between the two sends it again, and the fan-out
    # queues each of its deliveries once.
    fan_out_batch(rt, [(None, envelope_of(event, body))])
    if sessions.mark_final(
        rt.redis, session.source, session.session_id, final_record(verdict, event.id, now), rt.config.sessions.retention
    ):
        log.info(
            "session %s: %s%s after %d events; %s emitted",
            session.key,
            verdict.outcome,
            f" ({verdict.reason})" if verdict.reason else "",
            len(session.events),
            event.code,
            extra={"event_id": event.id, "source": session.source, "outcome": verdict.outcome},
        )
    return event.id
