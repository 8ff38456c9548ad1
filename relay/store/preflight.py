"""Whether a Redis can hold the relay's data: reachable with these credentials and TLS settings,
new enough, and not evicting keys. Run by `relay check-config --connect` (the release phase) and
by every worker at start.
"""

from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError, ResponseError

from relay.store.connection import Target, explain

# XAUTOCLAIM (workers/drain.py takes over a stopped reader's inbox entries) came with Redis 6.2;
# the scripts use nothing newer.
MIN_VERSION = (6, 2, 0)
SAFE_POLICY = "noeviction"

ERROR, WARNING, NOTE = "error", "warning", "note"


@dataclass(frozen=True)
class Finding:
    """One thing to say about the Redis: an error refuses it, a warning or a note does not."""

    level: str  # ERROR, WARNING or NOTE
    message: str


@dataclass
class Report:
    """What was found, and what was learnt on the way."""

    where: str
    findings: list[Finding] = field(default_factory=list)
    version: str | None = None
    policy: str | None = None

    @property
    def ok(self) -> bool:
        """No error: the relay can use this Redis."""
        return not any(f.level == ERROR for f in self.findings)


def eviction_message(where: str, policy: str) -> str:
    """Why an evicting maxmemory-policy is refused, and how to change it on each platform."""
    return (
        f"redis at {where} evicts keys when its memory is full (maxmemory-policy {policy}): an evicted key is "
        "a lost event, dedup mark or delivery state. Set maxmemory-policy to noeviction: "
        "Heroku: heroku redis:maxmemory <addon> --policy noeviction; "
        'Render Key Value: set its "Maxmemory Policy" to noeviction in its settings; '
        "Fly or Upstash: turn eviction off for the database (fly redis update <name>, or the Upstash console); "
        "self-hosted: maxmemory-policy noeviction in redis.conf (or CONFIG SET maxmemory-policy noeviction). "
        "RELAY_ALLOW_EVICTION=1 accepts the risk"
    )


def check(redis: Redis, allow_eviction: bool = False) -> Report:
    """Connect and check the server's version and maxmemory-policy.

    An evicting policy is an error unless `allow_eviction`, then a warning; a check the server
    does not allow (INFO or CONFIG disabled on managed Redis) is a note, not a failure.
    """
    target = Target.of(redis)
    report = Report(target.where)
    at = f"redis at {target.where}"
    try:
        redis.ping()
    except RedisError as exc:
        report.findings.append(Finding(ERROR, explain(exc, redis)))
        return report
    try:
        info = redis.info()
    except ResponseError as exc:
        info = {}
        report.findings.append(
            Finding(NOTE, f"could not check the version of {at} (INFO: {exc}); the relay needs 6.2 or newer")
        )
    except RedisError as exc:
        report.findings.append(Finding(ERROR, explain(exc, redis)))
        return report
    if "redis_version" in info:
        report.version = str(info["redis_version"])
        if _version(report.version) < MIN_VERSION:
            report.findings.append(
                Finding(
                    ERROR,
                    f"{at} is Redis {report.version}; the relay needs 6.2 or newer (XAUTOCLAIM on its inbox "
                    "stream): upgrade the Redis server or plan",
                )
            )
    policy = info.get("maxmemory_policy")
    if policy is None:
        policy = _configured_policy(redis, report)
    if policy is not None:
        report.policy = str(policy)
        if report.policy != SAFE_POLICY:
            report.findings.append(
                Finding(WARNING if allow_eviction else ERROR, eviction_message(target.where, report.policy))
            )
    return report


def _configured_policy(redis: Redis, report: Report) -> str | None:
    """maxmemory-policy from CONFIG GET, when INFO did not say; None (and a note) when not allowed."""
    try:
        reply = redis.config_get("maxmemory-policy")
    except ResponseError as exc:
        reason = f"CONFIG GET is not allowed: {exc}"
    except RedisError as exc:
        reason = explain(exc, redis)
    else:
        value = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")  # type: ignore[call-overload]
        if value is not None:
            return value.decode() if isinstance(value, bytes) else str(value)
        reason = "CONFIG GET gave no value"
    report.findings.append(
        Finding(
            NOTE,
            f"could not check the maxmemory-policy of redis at {report.where} ({reason}); make sure it is noeviction",
        )
    )
    return None


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
