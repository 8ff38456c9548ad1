"""How attempts move a destination's health (relay/store/destination_state.py): paused after
`pause.after_failures` consecutive transient failures or a 410, resumed by a success.
"""

from config.destinations import Destination
from relay.domain.outcome import Outcome
from relay.store import destination_state
from workers.runtime import Runtime


def resume_if_auto(rt: Runtime, destination: str, paused_by: str | None) -> None:
    """After a success: lift a pause of our own; an operator's pause waits for the operator."""
    if paused_by == "auto":
        destination_state.resume(rt.redis, destination, "a delivery succeeded", rt.config.state_ttl)


def after_attempt(rt: Runtime, destination: str, config: Destination | None, outcome: Outcome) -> None:
    """Pause or resume `destination` after an attempt that was not a plain success."""
    state = destination_state.get(rt.redis, destination)
    if outcome.ok:
        resume_if_auto(rt, destination, state.paused_by if state.paused is not None else None)
    elif config and outcome.kind == "gone":
        destination_state.pause(
            rt.redis, destination, f"it answered {outcome.status} (gone)", "auto", config.pause.probe_every
        )
    elif config and outcome.kind == "transient" and 0 < config.pause.after_failures <= state.failures:
        reason = f"{state.failures} consecutive failed attempts, the last {outcome.status} {outcome.detail!r}"
        destination_state.pause(rt.redis, destination, reason, "auto", config.pause.probe_every)
