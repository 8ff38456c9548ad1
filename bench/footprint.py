"""Where Redis memory goes: bytes per key kind (MEMORY USAGE of every key), per accepted event.

MEMORY USAGE counts a key's name, its value and its entry in the key table. Redis spends a little
more per key that no key's MEMORY USAGE shows: the key table's buckets, and for a key with a TTL
its entry and buckets in the table of expiring keys. `used_memory` (INFO memory) counts all of it,
and the connections' buffers too, so the sizing bench (bench/sizing.py) reads both, sets the
connections apart, and attributes the difference to the keys.
"""

import re
from collections import defaultdict

from redis import Redis

# The variable part of a key (an event id, a job id) is dropped to name its kind.
_KINDS = [
    (re.compile(r"^relay:(dedup|event|event-log|delivery|attempts|dead-letter|session|stats):"), None),
    (re.compile(r"^rq:job:"), "rq:job:*"),
    (re.compile(r"^rq:(results|execution|executions):"), "rq:results/executions:*"),
    (re.compile(r"^rq:worker"), "rq:workers"),
]


def kind_of(key: str) -> str:
    """The key's kind: its name with the variable part replaced by '*'."""
    for pattern, name in _KINDS:
        match = pattern.match(key)
        if match:
            return name or match.group(0) + "*"
    return key


def census(redis: Redis) -> dict[str, tuple[int, int]]:
    """Each kind of key: (how many keys, the bytes MEMORY USAGE reports for them, exact: SAMPLES 0)."""
    counts: dict[str, int] = defaultdict(int)
    totals: dict[str, int] = defaultdict(int)
    batch: list[str] = []

    def flush() -> None:
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(batch, pipe.execute(), strict=True):
            kind = kind_of(key)
            counts[kind] += 1
            totals[kind] += size or 0  # None: the key expired or was deleted since the scan
        batch.clear()

    for key in redis.scan_iter(count=1000):
        batch.append(key.decode())
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    return {kind: (counts[kind], totals[kind]) for kind in sorted(totals)}


def usage_by_kind(redis: Redis) -> dict[str, int]:
    """Bytes held by each kind of key, as MEMORY USAGE reports them (exact: SAMPLES 0)."""
    return {kind: size for kind, (_, size) in census(redis).items()}


# What used_memory holds besides the data (MEMORY STATS): buffers of connections, replicas and the
# AOF, and the scripts' cache.
_NOT_DATA = ("clients.normal", "clients.slaves", "replication.backlog", "aof.buffer", "lua.caches", "functions.caches")


def memory(redis: Redis) -> dict[str, int]:
    """What Redis has allocated (`used_memory`: what a plan's limit counts), how much of it is the
    data (the keys, with their tables; not the buffers of connections, nor the scripts' cache),
    and what the connections hold (`clients`, for `connections` of them)."""
    stats = redis.memory_stats()
    used = int(redis.info("memory")["used_memory"])
    return {
        "used_memory": used,
        "data": used - sum(int(stats.get(name) or 0) for name in _NOT_DATA),
        "clients": int(stats["clients.normal"]),
        "connections": int(redis.info("clients")["connected_clients"]),
    }


def per_event(usage: dict[str, int], events: int) -> dict[str, float]:
    """Bytes per event of each kind, without the workers' own RQ keys."""
    return {kind: round(size / events, 1) for kind, size in usage.items() if not kind.startswith("rq:worker")}
