"""Ordered delivery to HTTP destinations with `ordered: true`: each session's events reach them
in `sequence` order, event N+1 once N is delivered or dead-lettered.

Three moments move a session along, each one script run (relay/store/ordering.py,
lua/order_settle.lua), so that any number of workers may fan out, finish and time one session
at once:
- the fan-out holds each event (`hold`): it is queued at once when everything before it is done,
  else it waits in Redis, and the session's timer is set;
- the end of a delivery (`delivery_ended`, from workers/delivery.py) releases the next event at
  once;
- the session's timer (`run_timer`) gives up on a missing sequence `gap_timeout` after the
  earliest waiting event arrived (skipped, logged, and recorded for `relay sessions show`), and
  looks again every few seconds to a minute while an event waits, so a worker that died between
  a delivery's end and the release of the next one delays the session, never stalls it.
A sequence that arrives after later ones were sent is sent at once, out of order, and logged
when its delivery ends. A session waits only for itself: others, and unordered destinations,
never wait for it. Derived events (SESSION_FAILED, ...) are never held.
"""

import logging
import time

from redis.client import Pipeline
from redis.exceptions import RedisError

from config.destinations import HttpDestination
from relay.domain.event import Event
from relay.store import ordering
from relay.store.ordering import Settled, format_ranges
from workers.runtime import Runtime

log = logging.getLogger(__name__)

# How long an event waits for a lower sequence that the session record has but that has no
# delivery to this destination: none, since an event is tracked in the transaction that holds
# its deliveries (workers/fanout.py), so such a sequence is one not routed here.
ROUTE_GRACE = 0.0


def _ordered(rt: Runtime, destination: str) -> HttpDestination | None:
    config = rt.config.destinations.get(destination)
    return config if isinstance(config, HttpDestination) and config.ordered else None


def _grace(config: HttpDestination) -> float:
    return min(ROUTE_GRACE, config.gap_timeout)


def hold(pipe: Pipeline, rt: Runtime, event: Event, destination: str) -> None:
    """Queue on `pipe` exactly one command: hold the event's delivery to `destination` until the
    session's earlier events are done; its answer is 1 (held or queued now) or 0 (fanned out before)."""
    config = _ordered(rt, destination)
    if config is None:  # the fan-out holds only for ordered HTTP destinations
        raise ValueError(f"destination {destination!r} is not an ordered HTTP destination")
    ordering.hold(
        pipe,
        destination,
        event.source,
        event.session_id,
        event.sequence,
        now=time.time(),
        gap_timeout=config.gap_timeout,
        grace=_grace(config),
        state_ttl=rt.config.state_ttl,
    )


def run_timer(rt: Runtime, destination: str, source: str, session_id: str, *, now: float | None = None) -> float | None:
    """An ordered session's timer (gaps, and a check that nothing stays held); when next, or None."""
    now = time.time() if now is None else now
    config = _ordered(rt, destination)
    if config is None:
        # Removed from the config, or no longer ordered: what waited goes now, as any delivery.
        settled = ordering.settle(
            rt.redis,
            destination,
            source,
            session_id,
            ordering.FLUSH,
            now=now,
            gap_timeout=0,
            grace=0,
            state_ttl=rt.config.state_ttl,
        )
        if settled.released:
            log.info(
                "%s is no longer an ordered destination: %d events of session %s:%s that waited are queued",
                destination,
                len(settled.released),
                source,
                session_id,
                extra={"source": source, "destination": destination},
            )
            rt.wake([destination])
        return None
    settled = ordering.settle(
        rt.redis,
        destination,
        source,
        session_id,
        ordering.TIMER,
        now=now,
        gap_timeout=config.gap_timeout,
        grace=_grace(config),
        state_ttl=rt.config.state_ttl,
    )
    _report(rt, destination, source, session_id, config, settled, by_timer=True)
    return settled.next_at


def delivery_ended(rt: Runtime, destination: str, event: Event, *, delivered: bool, now: float | None = None) -> None:
    """The delivery of `event` to `destination` ended (`delivered`, or dead-lettered): release the
    session's next event now. A failure is logged; the session's timer releases it later."""
    config = _ordered(rt, destination)
    if config is None or event.derived:
        return
    try:
        settled = ordering.settle(
            rt.redis,
            destination,
            event.source,
            event.session_id,
            ordering.END,
            now=time.time() if now is None else now,
            gap_timeout=config.gap_timeout,
            grace=_grace(config),
            state_ttl=rt.config.state_ttl,
            ended=event.sequence,
        )
    except Exception as exc:
        what = "%s -> %s: releasing the session's next event failed (%s); its timer releases it within %g s"
        fields = {"event_id": event.id, "source": event.source, "destination": destination}
        if isinstance(exc, RedisError):
            log.warning(what, event.id, destination, exc, ordering.RECHECK_MAX, extra=fields)
        else:
            log.exception(what, event.id, destination, exc, ordering.RECHECK_MAX, extra=fields)
        return
    if settled.late_after is not None:
        log.warning(
            "%s -> %s: %s out of order: it arrived after sequence %d had been sent",
            event.id,
            destination,
            "delivered" if delivered else "dead-lettered",
            settled.late_after,
            extra={"event_id": event.id, "source": event.source, "destination": destination, "outcome": "late"},
        )
    _report(rt, destination, event.source, event.session_id, config, settled, by_timer=False)


def _report(
    rt: Runtime,
    destination: str,
    source: str,
    session_id: str,
    config: HttpDestination,
    settled: Settled,
    *,
    by_timer: bool,
) -> None:
    """Log what a settle gave up on or released, and wake the lane for what it queued."""
    if not settled.released:
        return
    sequence = settled.released[-1]  # one at a time: each waits for the one before it
    session = f"{source}:{session_id}"
    fields = {"event_id": f"{session}:{sequence}", "source": source, "destination": destination}
    if settled.skipped:
        count = sum(last - first + 1 for first, last in settled.skipped)
        log.warning(
            "%s: session %s: %s %s not received within gap_timeout (%gs); skipped, sending %d",
            destination,
            session,
            "sequence" if count == 1 else "sequences",
            format_ranges(settled.skipped),
            config.gap_timeout,
            sequence,
            extra={**fields, "outcome": "skipped"},
        )
    if settled.passed:
        log.debug(
            "%s: session %s: sequence %s not routed here; sending %d",
            destination,
            session,
            format_ranges(settled.passed),
            sequence,
            extra=fields,
        )
    if by_timer and not settled.skipped and not settled.passed:
        # The delivery before it ended without releasing it (its worker died, or it ended by
        # another path than an attempt's record): the timer took that up.
        log.info(
            "%s: session %s: sequence %d released by the session's timer", destination, session, sequence, extra=fields
        )
    rt.wake([destination])
