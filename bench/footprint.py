"""Where Redis memory goes: bytes per key kind (MEMORY USAGE of every key), per accepted event."""

import re
from collections import defaultdict

from redis import Redis

# The variable part of a key (an event id, a job id) is dropped to name its kind.
_KINDS = [
    (re.compile(r"^relay:(dedup|event|delivery|attempts|dead-letter):"), None),
    (re.compile(r"^rq:job:"), "rq:job:*"),
    (re.compile(r"^rq:(results|execution|executions):"), "rq:results/executions:*"),
    (re.compile(r"^rq:worker"), "rq:workers"),
]


def kind_of(key: str) -> str:
    for pattern, name in _KINDS:
        match = pattern.match(key)
        if match:
            return name or match.group(0) + "*"
    return key


def usage_by_kind(redis: Redis) -> dict[str, int]:
    """Bytes held by each kind of key, as MEMORY USAGE reports them (exact: SAMPLES 0)."""
    totals: dict[str, int] = defaultdict(int)
    batch: list[str] = []

    def flush():
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(batch, pipe.execute(), strict=False):
            totals[kind_of(key)] += size or 0
        batch.clear()

    for key in redis.scan_iter(count=1000):
        batch.append(key.decode())
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    return dict(sorted(totals.items()))


def per_event(usage: dict[str, int], events: int) -> dict[str, float]:
    return {kind: round(size / events, 1) for kind, size in usage.items() if not kind.startswith("rq:worker")}
