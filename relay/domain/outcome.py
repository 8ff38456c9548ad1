"""What one delivery attempt came to: the one result type of every destination adapter."""

from dataclasses import dataclass
from typing import Literal

# ok: delivered. transient: worth retrying. permanent: retrying cannot help. gone: the receiver
# says it no longer exists (HTTP 410): permanent for this event, and a reason to stop sending.
Kind = Literal["ok", "transient", "permanent", "gone"]


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery attempt."""

    kind: Kind
    status: str  # "HTTP 503", "SMTP 550", "timeout", ...
    detail: str = ""  # a short, secret-free explanation
    retry_after: float | None = None  # seconds the receiver asked us to wait

    @property
    def ok(self) -> bool:
        """Whether the attempt delivered."""
        return self.kind == "ok"
