"""What follows a delivery attempt that did not simply succeed: a pure decision, written to Redis
by relay.store.deliveries.finish.

The cases, in the order they are decided:
- the attempt no longer owns its delivery (its lease ran out and the sweeper handed the delivery
  on): only its record is kept; the attempt that owns the delivery decides;
- the receiver is gone (410), or a probe of a paused destination failed transiently: the delivery
  waits first in line for its destination, without using up its schedule;
- a transient failure with schedule left: the next attempt (or deferral) is planned;
- otherwise the delivery ends: "ok" for a probe's success, "dead" (a dead letter) for the rest.
A success always clears the destination's failure count; a transient or gone answer adds one.
"""

from dataclasses import dataclass
from typing import Literal

from relay.domain.outcome import Outcome
from relay.domain.retry import Next

Failures = Literal["reset", "add", "keep"]


@dataclass(frozen=True)
class NextState:
    """What to write after one attempt."""

    owned: bool  # False: record the attempt, nothing more
    failures: Failures = "keep"  # the destination's consecutive-failure count
    waits: bool = False  # the delivery goes (back) first in line for its paused destination
    retry: Next | None = None  # the next attempt to schedule
    final: Literal["ok", "dead"] | None = None  # the delivery's end

    @property
    def retry_in(self) -> float | None:
        """Seconds to the next attempt, as the attempt's record shows it."""
        return self.retry.delay if self.retry else None


def decide(outcome: Outcome, owned: bool, probe: bool, step: Next | None) -> NextState:
    """The next state after an attempt with `outcome`; `step` is the retry plan for it
    (relay.domain.retry.plan, None when there is none or the destination is not configured)."""
    if not owned:
        return NextState(owned=False)
    failures: Failures = "reset" if outcome.ok else "add" if outcome.kind in ("transient", "gone") else "keep"
    if outcome.kind == "gone" or (probe and outcome.kind == "transient"):
        return NextState(True, failures, waits=True)
    if step is not None:
        return NextState(True, failures, retry=step)
    return NextState(True, failures, final="ok" if outcome.ok else "dead")
