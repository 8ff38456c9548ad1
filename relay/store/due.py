"""Timers any worker process may run: probes of paused destinations, the expiry of old dead
letters, each session's outcome, ordered deliveries' gaps and grouped messages. relay:due holds
one member per timer, scored by when it is due (unix ms). Taking one (lua/take_due.lua) moves
its score to the end of the taker's lease, which is also the taker's token: a worker that dies
leaves the timer due again when that lease ends, for any other worker, and no lock outlives its
holder. Finishing it (lua/done_due.lua) reschedules or removes it only while the token is still
the taker's.
"""

import json
import time

from redis import Redis
from redis.client import Pipeline

from relay.store import keys, scripts

PROBE = "probe"
EXPIRE_DEAD_LETTERS = "expire-dead-letters"
SESSION = "session"  # [kind, source, sessionId]: decides a session's outcome (workers/sessions.py)
ORDER = "order"  # [kind, destination, source, sessionId]: an ordered destination's session (workers/ordering.py)
GROUP = "group"  # [kind, destination, source, sessionId]: a rule's grouped message (workers/grouping.py)


def timer(kind: str, *args: str) -> str:
    """The member naming one timer, e.g. ["probe", "crm"]."""
    return json.dumps([kind, *args])


def parse_timer(member: bytes | str) -> tuple[str, list[str]]:
    """(kind, arguments) of a relay:due member."""
    kind, *args = json.loads(member)
    return kind, args


def _ms(when: float) -> int:
    return int(when * 1000)


def schedule(client: Redis | Pipeline, member: str, when: float, *, replace: bool = False) -> None:
    """Make `member` due at `when` (unix s); unless `replace`, a timer already set is kept."""
    if replace:
        client.zadd(keys.DUE, {member: _ms(when)})
    else:
        client.zadd(keys.DUE, {member: _ms(when)}, nx=True)


def cancel(client: Redis | Pipeline, member: str) -> None:
    """Remove a timer, taken or not."""
    client.zrem(keys.DUE, member)


def take(redis: Redis, lease: float, limit: int = 10, now: float | None = None) -> tuple[list[str], str]:
    """Take up to `limit` due timers for `lease` seconds; return them and the token that finishes them."""
    reply = scripts.TAKE_DUE.run(redis, [keys.DUE], [_ms(time.time() if now is None else now), limit, _ms(lease)])
    taken, token = reply
    return [m.decode() for m in taken], token.decode()


def done(redis: Redis, member: str, token: str, next_at: float | None) -> bool:
    """Finish a taken timer: due again at `next_at` (unix s), or removed when None. False if it
    was taken over meanwhile (this taker was presumed dead)."""
    return bool(scripts.DONE_DUE.run(redis, [keys.DUE], [member, token, "" if next_at is None else _ms(next_at)]))


def when(redis: Redis, member: str) -> float | None:
    """When a timer is due (or its taker's lease ends), unix s; None if there is none."""
    score = redis.zscore(keys.DUE, member)
    return None if score is None else score / 1000
