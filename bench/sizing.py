"""Sizing Redis (`./dev bench sizing`): what WMS sessions leave in Redis once every delivery is
done, and the memory that makes at steady state, each structure kept as long as its setting says
(docs/operations.md "Sizing Redis").

The workload is whole sessions, with bodies as WMS sends them: 15 events when the measurement
completes, 12 when it ends with a constraint violation (one session in four). They are accepted by
the ingest script itself and delivered by the Procfile's worker processes under a deployment's
rules: every event to an HTTP callback, WARN and ERROR to Slack and to email. The receivers run in
this process and fail some deliveries on purpose: a share fails once and succeeds on its retry, a
smaller share fails every attempt and ends as a dead letter. The retry delays are shortened so
that a run ends; their number is not, so a dead letter has the attempt records the defaults give.

What remains is measured with Redis's own MEMORY USAGE, structure by structure, and checked
against INFO's used_memory: the difference (the key tables' buckets, the entry of a key's TTL) is
added per key. Steady state is then each structure's daily inflow times how long it is kept, read
off the relay's own config model.
"""

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from redis import Redis
from rq.suspension import resume

from bench.delivery import Workers
from bench.footprint import census, memory
from bench.workload import SECRET, SOURCE
from config.destinations import RetryPolicy
from config.model import RelayConfig
from devtools.local_redis import free_port
from relay.domain.event import parse_event
from relay.domain.samples import COMPLETED_SESSION, FAILED_SESSION, sample_event, to_body
from relay.store import keys
from relay.store.inbox import Inbox

DAY = 86400.0
MB = 1_000_000
SESSIONS_PER_DAY = (1_000, 10_000, 100_000)
PLANS_MB = (25, 50)
HEADROOM = 1.5  # fragmentation, replication and AOF-rewrite buffers, a backlog's envelopes
# A measurement takes about six intermediate results: 15 events; a failed one stops after four.
COMPLETED = (*COMPLETED_SESSION[:6], *["INTERMEDIATE_RESULTS"] * 6, *COMPLETED_SESSION[-3:])
FAILED = (*FAILED_SESSION[:6], *["INTERMEDIATE_RESULTS"] * 4, *FAILED_SESSION[-2:])
FAILED_EVERY = 4
RULES: list[dict[str, Any]] = [
    {"name": "everything-downstream", "match": {}, "to": ["crm"]},
    {"name": "failed-measurements", "match": {"severity": ["WARN", "ERROR"]}, "to": ["ops-slack", "ops-email"]},
]


def workload(sessions: int, tag: str, timestamp: int, first: int = 0) -> list[tuple[str, dict, bytes]]:
    """The events of whole sessions `first` to `first + sessions - 1`, in order: (event id, event,
    body) each."""
    out = []
    for n in range(first, first + sessions):
        session_id = hashlib.sha256(f"{tag}-{n}".encode()).hexdigest()[:25]  # as long as WMS's
        for sequence, code in enumerate(FAILED if n % FAILED_EVERY == FAILED_EVERY - 1 else COMPLETED):
            event = sample_event(code, session_id, sequence, timestamp=timestamp + sequence)
            out.append((f"{SOURCE}:{session_id}:{sequence}", event, to_body(event)))
    return out


def routed_to(event: dict) -> list[str]:
    """The destinations RULES name for `event`."""
    return [d for r in RULES if all(event[f] in v for f, v in r["match"].items()) for d in r["to"]]


def fate_of(destination: str, event_id: str, fail_rate: float, dead_rate: float) -> str:
    """'dead' (every attempt fails), 'once' (the first fails) or 'ok': drawn from the delivery
    itself, so every attempt of it, in any worker, meets the same fate."""
    draw = int.from_bytes(hashlib.sha256(f"{destination} {event_id}".encode()).digest()[:8], "big") / 2**64
    return "dead" if draw < dead_rate else "once" if draw < dead_rate + fail_rate else "ok"


class Receivers:
    """The callback, Slack and SMTP receivers, in this process: each attempt's answer follows its
    delivery's fate; what they accepted is kept."""

    def __init__(self, fail_rate: float, dead_rate: float):
        self.fail_rate, self.dead_rate = fail_rate, dead_rate
        self.delivered: set[tuple[str, str]] = set()
        self.refused = 0
        self._failed: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Http)
        self._http.daemon_threads = True
        self._http.receivers = self  # type: ignore[attr-defined]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._smtp = Controller(_Mailbox(self), hostname="127.0.0.1", port=free_port())
        self._smtp.start()
        self.smtp_url = f"smtp://127.0.0.1:{self._smtp.port}"

    def answer(self, destination: str, event_id: str) -> bool:
        """Whether this attempt succeeds."""
        fate = fate_of(destination, event_id, self.fail_rate, self.dead_rate)
        with self._lock:
            if fate == "dead" or (fate == "once" and (destination, event_id) not in self._failed):
                self._failed.add((destination, event_id))
                self.refused += 1
                return False
            self.delivered.add((destination, event_id))
            return True

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._smtp.stop()


class _Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the workers' connection pool expects

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/slack"):
            event_id = body.split(b"event `", 1)[-1].split(b"`", 1)[0].decode()
            ok = self.server.receivers.answer("ops-slack", event_id)  # type: ignore[attr-defined]
        else:
            ok = self.server.receivers.answer("crm", self.headers.get("webhook-id", ""))  # type: ignore[attr-defined]
        text = b"ok" if ok else b"Service Unavailable"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args: Any) -> None:
        pass


class _Mailbox:
    """aiosmtpd's handler: a mail's event id is on its text's last line."""

    def __init__(self, receivers: Receivers):
        self.receivers = receivers

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        text = message.get_body(("plain",)) if isinstance(message, EmailMessage) else None
        event_id = text.get_content().rsplit("event id: ", 1)[-1].strip() if text is not None else ""
        ok = self.receivers.answer("ops-email", event_id)
        return "250 Message accepted for delivery" if ok else "451 4.3.0 Try again later"


def relay_config(path: Path, receivers: Receivers) -> Path:
    """RULES over the receivers, retries as many as the default schedule's but 100 ms apart, no
    pausing (a run of failures at the end would park the rest)."""
    timers = {"retry": {"delays": ["100ms"] * len(RetryPolicy().delays)}, "pause": {"after_failures": 0}}
    config = {
        "sources": {SOURCE: {"mac_secrets": [SECRET]}},
        "destinations": {
            "crm": {"type": "http", "url": f"{receivers.url}/callback", "signing_secret": "sizing-secret", **timers},
            "ops-slack": {"type": "slack", "webhook_url": f"{receivers.url}/slack/T000/B000/XXXX", **timers},
            "ops-email": {"type": "email", "to": ["ops@example.com"], **timers},
        },
        "rules": RULES,
        # Outcomes decided as soon as the events are in, so that the records measured are final.
        "sessions": {"settle": "10ms"},
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def _snapshot(redis: Redis) -> dict:
    # Memory first: the census's own replies pass through this client's buffers.
    return {**memory(redis), "keys": redis.dbsize(), "census": census(redis)}


def _settled(redis: Redis, receivers: Receivers, ok: int, dead: int) -> bool:
    if len(receivers.delivered) < ok or redis.zcard(keys.DEAD_LETTERS) < dead or redis.xlen(keys.INBOX):
        return False
    busy = [*redis.scan_iter(match="relay:queue:*"), *redis.scan_iter(match="relay:inflight:*")]
    if any(redis.zcard(key) for key in busy):
        return False
    # Every session's outcome decided: its timer gone, its record final.
    return not any(m.startswith(b'["session"') for m in redis.zrange(keys.DUE, 0, -1))


def measure(
    redis: Redis, redis_url: str, workdir: Path, *, sessions: int, workers: int, fail_rate: float, dead_rate: float
) -> dict:
    """Deliver `sessions` sessions: what Redis holds before, after a tenth of them (the warm-up:
    connections opened, scripts loaded, Redis's first allocations made) and after all of them."""
    redis.flushall()
    receivers = Receivers(fail_rate, dead_rate)
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CONFIG": str(relay_config(workdir / "relay-sizing.yaml", receivers)),
        "SMTP_URL": receivers.smtp_url,
        "EMAIL_FROM": "relay@example.com",
    }
    tag, now, warmup = f"sizing{time.time_ns()}", int(time.time()), max(1, sessions // 10)
    batches = [workload(warmup, tag, now), workload(sessions - warmup, tag, now, first=warmup)]
    events = [e for batch in batches for e in batch]
    deliveries = [(d, event_id) for event_id, event, _ in events for d in routed_to(event)]
    inbox = Inbox(redis, dedup_window_seconds=SCENARIOS[0].dedup_window)
    started = time.monotonic()
    pool = Workers(redis, env, workdir, workers)  # suspended: resumed once the warm-up is queued
    snapshots, ok, dead = [], 0, 0
    try:
        snapshots.append(_snapshot(redis))
        for batch in batches:
            for event_id, event, body in batch:
                inbox.accept(parse_event(SOURCE, body), body)
                fates = [fate_of(d, event_id, fail_rate, dead_rate) for d in routed_to(event)]
                ok, dead = ok + sum(f != "dead" for f in fates), dead + fates.count("dead")
            resume(redis)
            deadline = time.monotonic() + max(120.0, len(deliveries) / 20)
            while not _settled(redis, receivers, ok, dead):
                for process in pool.processes:
                    process.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(receivers.delivered)} of {ok} deliveries done in time")
                time.sleep(0.1)
            time.sleep(0.5)  # the last envelopes forgotten, Redis's key tables rehashed
            snapshots.append(_snapshot(redis))
        dead_letters = redis.zcard(keys.DEAD_LETTERS)
    finally:
        pool.stop()
        receivers.stop()
    return {
        "sessions": sessions,
        "events": len(events),
        "deliveries": {d: sum(1 for x, _ in deliveries if x == d) for d in ("crm", "ops-slack", "ops-email")},
        "body_bytes": sum(len(b) for _, _, b in events) / len(events),
        "fail_rate": fail_rate,
        "dead_rate": dead_rate,
        "refused_attempts": receivers.refused,
        "workers": workers,
        "seconds": round(time.monotonic() - started, 1),
        **dict(zip(("before", "warm", "after"), snapshots, strict=True)),
        "dead_letters": dead_letters,
    }


@dataclass(frozen=True)
class Structure:
    """One kind of data that outlives delivery: how much a session leaves, and how long it stays."""

    name: str
    kept: str  # the Retention field that says how long
    items_per_session: float
    bytes_per_item: float  # MEMORY USAGE, plus the per-key overhead for each key

    @property
    def bytes_per_session(self) -> float:
        """What one session adds."""
        return self.items_per_session * self.bytes_per_item


# name, the key kinds it is made of (the first counts its items), how long it is kept
STRUCTURES = (
    ("dedup marks", ("relay:dedup:*",), "dedup_window"),
    ("delivery states", ("relay:delivery:*", "relay:event:*"), "state_ttl"),
    ("dead letters", ("relay:dead-letter:*", keys.DEAD_LETTERS), "dead_letters"),
    ("session records", ("relay:session:*", keys.SESSIONS), "sessions"),
    ("event log", ("relay:event-log:*", keys.EVENT_LOG), "event_log"),
)


def _usage(snapshot: dict) -> int:
    return sum(size for _, size in snapshot["census"].values())


def per_key_overhead(m: dict) -> float:
    """Bytes per key that the data in used_memory grew by beyond what MEMORY USAGE shows, after
    the warm-up: the key tables' buckets, a TTL's entry."""
    warm, after = m["warm"], m["after"]
    grew = after["data"] - warm["data"] - (_usage(after) - _usage(warm))
    return max(0.0, grew / max(after["keys"] - warm["keys"], 1))


def footprint(m: dict) -> tuple[list[Structure], dict[str, float]]:
    """Each structure per session, and what does not grow with traffic, from a measurement: the
    other keys (the empty inbox, presence, destinations' health, timers, RQ's), the connections'
    buffers (the workers' and this bench's), and Redis itself (an empty server's allocations, the
    scripts, what it allocates on first use). All of it adds up to used_memory at the end."""
    overhead, found = per_key_overhead(m), dict(m["after"]["census"])
    items = {"relay:dead-letter:*": m["dead_letters"]}
    structures = []
    for name, kinds, kept in STRUCTURES:
        parts = [found.pop(kind, (0, 0)) for kind in kinds]
        count = items.get(kinds[0], parts[0][0])
        size = sum(b + (overhead * n if kind.endswith("*") else 0) for kind, (n, b) in zip(kinds, parts, strict=True))
        structures.append(Structure(name, kept, count / m["sessions"], size / count if count else 0.0))
    other = sum(b + overhead * n for n, b in found.values())
    clients = float(m["after"]["clients"])
    variable = sum(s.bytes_per_session for s in structures) * m["sessions"]
    itself = m["after"]["used_memory"] - variable - other - clients
    return structures, {"other keys": other, "connections": clients, "Redis itself": itself}


@dataclass(frozen=True)
class Retention:
    """How long each structure is kept under one set of settings (seconds; the log: entries)."""

    name: str
    dedup_window: float  # ingest.dedup_window
    state_ttl: float  # the longest retry horizon + 1 day
    dead_letters: float  # dead_letters.retention, after up to a retry horizon of retries
    sessions: float  # sessions.retention
    event_log: float  # event_log.retention


def retention(name: str, settings: dict) -> Retention:
    """What `settings` (config file keys) keep, read off the relay's own config model."""
    config = RelayConfig.model_validate({"sources": {SOURCE: {"mac_secrets": [SECRET]}}, **settings})
    horizon = max([d.retry.horizon for d in config.destinations.values()] or [RetryPolicy().horizon])
    kept = config.dead_letters.retention
    return Retention(
        name,
        config.ingest.dedup_window,
        config.state_ttl,
        kept + horizon,
        config.sessions.retention,
        config.event_log.retention,
    )


SHRUNK = {
    "ingest": {"dedup_window": "1d"},
    "dead_letters": {"retention": "3d"},
    "sessions": {"retention": "1d"},
    "event_log": {"retention": "1d"},
}
SCENARIOS = (
    retention("defaults", {}),
    retention("dedup 1d, dead letters 3d, sessions 1d, event log 1d", SHRUNK),
)


def steady_state(
    structures: list[Structure], fixed: dict[str, float], kept: Retention, sessions_per_day: float
) -> dict[str, float]:
    """Bytes each structure holds once traffic has run longer than its retention, and the bytes
    that do not grow with traffic."""
    out = {s.name: sessions_per_day * s.bytes_per_session * getattr(kept, s.kept) / DAY for s in structures}
    return {**out, **fixed}


def capacity(structures: list[Structure], fixed: dict[str, float], kept: Retention, plan_bytes: float) -> int:
    """The most sessions a day whose steady state, times HEADROOM, fits in `plan_bytes`."""
    base = sum(steady_state(structures, fixed, kept, 0).values())
    per_session = sum(steady_state(structures, fixed, kept, 1).values()) - base
    return max(0, int((plan_bytes / HEADROOM - base) / per_session))


def run(redis: Redis, redis_url: str, workdir: Path, **options: Any) -> dict:
    """Measure (see measure()), then the steady state of every scenario at every traffic level."""
    m = measure(redis, redis_url, workdir, **options)
    structures, fixed = footprint(m)
    return {"measurement": m, **tables(structures, fixed)}


def tables(structures: list[Structure], fixed: dict[str, float]) -> dict:
    """The sizing tables of every scenario from a footprint: JSON-ready."""
    return {
        "structures": [{**asdict(s), "bytes_per_session": s.bytes_per_session} for s in structures],
        "fixed": fixed,
        "headroom": HEADROOM,
        "scenarios": [
            {
                "retention": asdict(kept),
                "steady_state": {n: steady_state(structures, fixed, kept, n) for n in SESSIONS_PER_DAY},
                "capacity": {mb: capacity(structures, fixed, kept, mb * MB) for mb in PLANS_MB},
            }
            for kept in SCENARIOS
        ],
    }


KEPT = {
    "dedup_window": "ingest.dedup_window",
    "state_ttl": "state TTL: longest retry horizon + 1 d",
    "dead_letters": "dead_letters.retention + retry horizon",
    "sessions": "sessions.retention",
    "event_log": "event_log.retention",
}


def report_lines(result: dict) -> list[str]:
    """The sizing part of `./dev bench`'s report."""
    m, structures = result["measurement"], result["structures"]
    warm, after = m["warm"], m["after"]
    lines = [
        (
            f"\n## Sizing Redis ({m['sessions']} sessions, {m['events']} events of {m['body_bytes']:.0f} B on average,"
            f" deliveries {m['deliveries']}, {m['workers']} Procfile workers; {m['fail_rate']:.1%} of deliveries"
            f" failed once, {m['dead_rate']:.1%} every time: {m['dead_letters']} dead letters; {m['seconds']} s)"
        ),
        (
            f"  after the warm-up ({m['sessions'] // 10 or 1} sessions), the data in used_memory grew"
            f" {(after['data'] - warm['data']) / MB:.2f} MB for {(_usage(after) - _usage(warm)) / MB:.2f} MB of"
            f" MEMORY USAGE and {after['keys'] - warm['keys']} keys: {per_key_overhead(m):.0f} B per key beyond"
            f" MEMORY USAGE, counted below; used_memory {after['used_memory'] / MB:.2f} MB at the end,"
            f" {after['connections']} connections"
        ),
        "  left per session once delivered:",
    ]
    for s in structures:
        lines.append(
            f"    {s['name']:16s} {s['items_per_session']:7.3f} x {s['bytes_per_item']:6.0f} B = "
            f"{s['bytes_per_session']:7.0f} B   kept: {KEPT[s['kept']]}"
        )
    for name, size in result["fixed"].items():
        lines.append(f"    {name:16s} {size:27.0f} B   whatever the traffic")
    plans = " / ".join(f"{mb} MB" for mb in PLANS_MB)
    header = "".join(f"{f'{n // 1000}k/day':>16s}" for n in SESSIONS_PER_DAY)
    lines.append(f"  steady state, MB (x{HEADROOM} headroom)    {header}   sessions/day a {plans} plan holds")
    for scenario in result["scenarios"]:
        totals = [sum(rows.values()) / MB for rows in scenario["steady_state"].values()]
        cells = "".join(f"{t:8.1f} ({t * HEADROOM:5.1f})" for t in totals)
        fits = " / ".join(f"{n:,}" for n in scenario["capacity"].values())
        lines.append(f"    {scenario['retention']['name']:34s}{cells}   {fits}")
    lines.append("  by structure, MB:")
    for scenario in result["scenarios"]:
        lines.append(f"    {scenario['retention']['name']}")
        names = next(iter(scenario["steady_state"].values()))
        for name in names:
            cells = "".join(f"{rows[name] / MB:16.2f}" for rows in scenario["steady_state"].values())
            lines.append(f"      {name:32s}{cells}")
    return lines
