"""What pausing needs from the workers (relay/store/destination_state.py): probing a paused
destination with its oldest waiting delivery, and announcing pauses and resumptions to
operations.announce_to.
"""

import json
import logging
import time

from relay.store import destination_state, due, keys
from relay.store.destination_state import Parked
from workers import runtime
from workers.delivery import Attempt, read_envelope, send_and_record
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def probe_once(rt: Runtime, name: str) -> bool:
    """Send the oldest waiting delivery of paused `name`, although it is paused; True if a probe
    was started. The delivery stays parked while it is tried: a success takes it off and resumes the
    destination, a failure leaves it first in line (relay/domain/next_state.py)."""
    config = rt.config.destinations.get(name)
    entry = rt.redis.lindex(keys.parked_key(name), 0)
    if config is None or not isinstance(entry, bytes):
        return False
    parked = Parked.from_json(entry)
    try:
        envelope = json.loads(parked.envelope_json)
        event = read_envelope(envelope)
    except (TypeError, ValueError, KeyError) as exc:
        # Parked without its event (it had expired): nothing to send, ever. Not a silent loss.
        rt.redis.lrem(keys.parked_key(name), 1, entry)  # type: ignore[arg-type]  # Redis compares bytes
        rt.redis.hset(keys.delivery_key(parked.event_id), name, "dead")
        rt.redis.expire(keys.delivery_key(parked.event_id), rt.config.state_ttl)
        log.error(
            "%s -> %s attempt %d: parked without a readable event (%s); dropped",
            parked.event_id,
            name,
            parked.number,
            exc.__class__.__name__,
            extra={"event_id": parked.event_id, "destination": name, "attempt": parked.number, "outcome": "dropped"},
        )
        return False
    attempt = Attempt(envelope, event, name, parked.number, parked.deferrals, probe_entry=entry)
    lease = config.timeout + rt.config.operations.lease_grace

    # Routine, at DEBUG: a destination paused for a day is probed all day. The probe's attempt
    # itself has its line, as every attempt does (workers/delivery.py).
    def claim_and_send() -> None:
        # Claimed on the thread that sends it, so its lease starts when its send can start.
        claim = attempt.claim
        claimed = claim.claim_probe(rt.redis, lease, rt.config.state_ttl, parked.envelope_json, entry)
        if claimed != 1:
            why = "in flight already" if claimed == 0 else "a stale copy, removed"
            log.debug("%s: %s; not probing with it", attempt, why)
            return
        log.debug("probing paused destination %s with %s (attempt %d)", name, parked.event_id, parked.number)
        rt.hold(claim)
        try:
            send_and_record(rt, attempt)
        finally:
            rt.let_go(claim)

    if not rt.lane(name).start_probe(claim_and_send):
        log.debug("probing %s: the previous probe is still in hand; not starting another", name)
        return False
    return True


def probe_due(rt: Runtime, name: str) -> float | None:
    """The probe timer of `name` (workers/timers.py): probe while it is paused automatically;
    return when to probe next, None once it is not paused by us any more."""
    config = rt.config.destinations.get(name)
    state = destination_state.get(rt.redis, name)
    if config is None or state.paused_by != "auto" or not config.pause.probe_every:
        return None
    probe_once(rt, name)
    return time.time() + config.pause.probe_every


def probe(name: str) -> None:
    """RQ entry point (jobs.PROBE) of earlier versions, whose probes were scheduled jobs: the probe
    becomes the destination's timer, due now."""
    rt = runtime.current()
    due.schedule(rt.redis, destination_state.probe_timer(name), time.time())


def announce_to_operations(rt: Runtime, text: str) -> None:
    """Tell operations.announce_to (a Slack or email destination), once; a failure is only logged."""
    target = rt.config.operations.announce_to
    if target is None or target not in rt.adapters:
        return
    outcome = rt.adapters[target].notify(text)
    if not outcome.ok:
        log.error(
            "could not announce to %s: %s %s",
            target,
            outcome.status,
            outcome.detail,
            extra={"destination": target, "outcome": outcome.kind, "status": outcome.status},
        )


def announce(text: str) -> None:
    """RQ entry point (jobs.ANNOUNCE): announce_to_operations with this process's runtime."""
    announce_to_operations(runtime.current(), text)
