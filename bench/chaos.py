"""The chaos soak: signed events at a steady rate through the Procfile's processes while a worker
is killed, the callback receiver restarts and Redis stops; then what every receiver got, against
what the relay accepted and what its rules say each destination must get.

Everything is real and on loopback: gunicorn (the Procfile's web line), `python -m workers` (at
least 2), a redis-server of its own that it can stop and start again on the same port and data,
and receivers (`python -m bench.sink`): an HTTP callback, a Slack-shaped endpoint and an SMTP
server, each journalling what arrives (bench/sink.py; the parts it breaks: bench/rig.py). The
sender (bench/sender.py) behaves as WMS or any careful sender would: it retries a 503 after its
Retry-After, and counts every answer.

Redis is the deployment's (README "Deploy"): AOF with `appendfsync everysec`, Redis's default
and what managed Redis offers, and `noeviction`. It is stopped as a planned restart or failover
stops it (SIGTERM: Redis writes and fsyncs its AOF before it exits), or with --redis-kill as a
crashed process (SIGKILL: what Redis wrote is in the page cache, so it is kept too). Neither is a
power loss: under `everysec` that can lose the last second of acknowledged writes, 202s included;
only `appendfsync always` closes that gap, at a cost in ingest latency.

The relay's timers are shortened so that a run is bounded (retries after 1, 2, 4... s, probes of
a paused destination every 2 s, leases of timeout + 2 s): what it proves is that nothing accepted
is lost and how long recovery takes with these timers, not the production schedule's durations.
"""

import asyncio
import itertools
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from redis import Redis
from rq import Worker

from bench.processes import Process, wait_http, web_command
from bench.rig import Receiver, RestartableRedis, Workers, cpu_seconds, stop_all
from bench.sender import Answer, Sender
from bench.workload import SECRET, SOURCE, session_bodies
from devtools.local_redis import free_port
from relay.store import event_log, keys

Event = tuple[str, dict, str, bytes]  # id, the event, its MAC, its body (bench.workload.session_bodies)

# Who gets what: every event a callback, WARN and ERROR a Slack message, ERROR a mail too.
RULES: list[dict[str, Any]] = [
    {"name": "everything", "match": {}, "to": ["callback"]},
    {"name": "warnings", "match": {"severity": ["WARN", "ERROR"]}, "to": ["slack"]},
    {"name": "errors", "match": {"severity": ["ERROR"]}, "to": ["email"]},
]
DESTINATIONS = ("callback", "slack", "email")
SIGNING = "chaos-signing-secret-0123456789"  # long: the relay redacts it from every error text
RESEND_EVERY = 50  # one event in 50 is sent again after its 202, as WMS may: it must answer 200
SETTLE_TIMEOUT = 15.0  # after the drain: how long to wait for what is still queued, leased or parked
RATE = 100.0  # events/s: about 0.9 of this machine's 2 cores for the whole rig, so the rate holds
# The suite's run: short outages, and a sender that does not wait the whole Retry-After.
QUICK_DURATION, QUICK_RATE = 8.0, 100.0
QUICK: dict[str, float] = {
    "receiver_down_for": 1.5,
    "redis_stop_for": 2.0,
    "sender_retry_cap": 1.0,
    "give_up_after": 30.0,
    "drain_timeout": 30.0,
}


def routed_to(event: dict) -> set[str]:
    """The destinations RULES name for `event` (their matches are on whole field values)."""
    return {
        name for rule in RULES if all(event[f] in values for f, values in rule["match"].items()) for name in rule["to"]
    }


@dataclass(frozen=True)
class Plan:
    """When each fault happens, in seconds from the first event sent."""

    duration: float
    rate: float
    workers: int = 2
    kill_at: float = 0.0
    receiver_down_at: float = 0.0
    receiver_down_for: float = 3.0
    redis_stop_at: float = 0.0
    redis_stop_for: float = 5.0
    redis_kill: bool = False
    restart_delay: float = 1.0  # a supervisor's pause before it replaces a dead worker
    sender_retry_cap: float | None = None  # the sender waits Retry-After, at most this long
    give_up_after: float = 60.0  # the sender stops retrying an event after this long
    drain_timeout: float = 120.0


def plan(
    duration: float | None = None, rate: float | None = None, workers: int = 2, *, quick: bool = False, **extra: Any
) -> Plan:
    """The faults spread over the run, one at a time: a worker at 10%, the receiver at 30%,
    Redis at 60% (or later: once the replacement worker has started, since a worker starting
    while Redis is down exits, as RQ's own does, and is another fault)."""
    duration = duration or (QUICK_DURATION if quick else 60.0)
    rate = rate or (QUICK_RATE if quick else RATE)
    if quick:
        extra = {**QUICK, **extra}
    return Plan(
        duration=duration,
        rate=rate,
        workers=max(2, workers),
        kill_at=0.1 * duration,
        receiver_down_at=0.3 * duration,
        redis_stop_at=0.6 * duration,
        **extra,
    )


@dataclass
class Timeline:
    """When each fault happened (unix s), filled in as the run goes."""

    start: float = 0.0
    sending_done: float = 0.0
    kill: dict = field(default_factory=dict)
    receiver_down: float = 0.0
    receiver_up: float = 0.0
    redis_stopped: float = 0.0  # the server had exited
    redis_starting: float = 0.0  # a new one was being started
    redis_started: float = 0.0  # it answered


async def _timeline(
    sender: Sender,
    events: list[tuple[str, str, bytes]],
    plan: Plan,
    redis: RestartableRedis,
    client: Redis,
    receiver: Receiver,
    workers: Workers,
) -> Timeline:
    """Send everything while the faults happen on their schedule; return when the sender is done."""
    when = Timeline(start=time.time())
    begin = time.monotonic()

    async def at(offset: float) -> None:
        await asyncio.sleep(max(0.0, begin + offset - time.monotonic()))

    async def kill() -> None:
        await at(plan.kill_at)
        when.kill = await asyncio.to_thread(workers.kill_one)
        started = await asyncio.to_thread(workers.wait_started, client, when.kill["replacement"], 30)
        when.kill["replacement_started"] = started

    async def restart_receiver() -> None:
        await at(plan.receiver_down_at)
        when.receiver_down = time.time()
        await asyncio.to_thread(receiver.stop)
        await asyncio.sleep(plan.receiver_down_for)
        await asyncio.to_thread(receiver.start)
        when.receiver_up = time.time()

    async def stop_redis(after: asyncio.Task) -> None:
        await at(plan.redis_stop_at)
        await after  # the replacement worker has started (or 30 s have passed)
        await asyncio.to_thread(redis.stop, plan.redis_kill)
        when.redis_stopped = time.time()
        await asyncio.sleep(plan.redis_stop_for)
        when.redis_starting = time.time()
        await asyncio.to_thread(redis.start)
        when.redis_started = time.time()

    killing = asyncio.create_task(kill())
    faults = asyncio.gather(killing, restart_receiver(), stop_redis(killing))
    sending = asyncio.create_task(sender.send(events))

    async def supervise() -> None:
        while not sending.done():
            await asyncio.to_thread(workers.supervise)
            await asyncio.sleep(0.5)

    await asyncio.gather(faults, sending, supervise())
    when.sending_done = time.time()
    return when


def run(workdir: Path, plan: Plan) -> dict:
    """Start everything, run the timeline, wait (bounded) for the backlog to drain; the report.
    The raw material stays in `workdir`: every answer, every receiver's journal, every log."""
    workdir.mkdir(parents=True, exist_ok=True)
    redis = RestartableRedis(workdir)
    smtp_port = free_port()
    callback = Receiver("callback", workdir)
    slack = Receiver("slack", workdir, smtp_port=smtp_port)  # the mail server runs beside it
    env = {
        "REDIS_URL": redis.url,
        "RELAY_CONFIG": str(_config(workdir / "relay-chaos.yaml", callback.url, slack.url)),
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "EMAIL_FROM": "relay@example.com",
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    events = session_bodies(int(plan.rate * plan.duration), f"chaos{time.time_ns()}", int(time.time()))
    sender = Sender(
        port,
        plan.rate,
        retry_cap=plan.sender_retry_cap,
        give_up_after=plan.give_up_after,
        resend_every=RESEND_EVERY,
    )
    phases = {"begin": time.monotonic()}
    redis.start()
    client = Redis.from_url(redis.url, socket_connect_timeout=1, socket_timeout=5)
    web: Process | None = None
    workers: Workers | None = None
    try:
        callback.start(wait=False)
        slack.start(wait=False)
        web = Process(web_command(), {**env, "PORT": str(port), "BIND_HOST": "127.0.0.1"}, workdir / "web.log")
        workers = Workers(env, workdir, plan.workers, plan.restart_delay)
        callback.wait()
        slack.wait()
        wait_http(f"http://127.0.0.1:{port}/healthz", web)
        _wait(lambda: Worker.count(connection=client) >= plan.workers, 30, "the workers to register")
        phases["started"] = time.monotonic()
        when = asyncio.run(
            _timeline(sender, [(i, mac, body) for i, _, mac, body in events], plan, redis, client, callback, workers)
        )
        phases["sent"] = time.monotonic()
        accepted = {a.event_id for a in sender.answers if a.status in (200, 202)}
        expected = {(name, i) for i, event, _, _ in events if i in accepted for name in routed_to(event)}
        deadline = time.monotonic() + plan.drain_timeout
        while time.monotonic() < deadline and not expected <= _received(callback, slack):
            workers.supervise()
            time.sleep(0.25)
        phases["drained"] = time.monotonic()
        # Then until nothing is left that could send again, so that every duplicate is counted
        # (not worth waiting for when something never arrived).
        settle = time.monotonic() + (SETTLE_TIMEOUT if expected <= _received(callback, slack) else 0)
        while time.monotonic() < settle and not _nothing_left(client):
            time.sleep(0.25)
        phases["settled"] = time.monotonic()
        web.check_alive()
        cpu = {
            "web": cpu_seconds(web.pid),
            "workers": round(sum(cpu_seconds(p.pid) for p in workers.processes), 1),
            "receivers": round(sum(cpu_seconds(r.process.pid) for r in (callback, slack) if r.process), 1),
            "redis": cpu_seconds(redis.pid),
            "sender and harness": round(time.process_time(), 1),
        }
        left = not _nothing_left(client)
        attempts = event_log.every_attempt(client)
        dead = Counter(
            str(m, "utf-8").split(":", 1)[0] for m in cast(list[bytes], client.zrange(keys.DEAD_LETTERS, 0, -1))
        )
    finally:
        running = [*(workers.processes if workers else []), web, callback.process, slack.process]
        stop_all([p for p in running if p is not None])
        client.close()
        redis.stop()
    phases["stopped"] = time.monotonic()
    with (workdir / "answers.jsonl").open("w") as f:
        f.writelines(json.dumps(asdict(a)) + "\n" for a in sender.answers)
    journal: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for path, event_id, at, _ in [*callback.received(), *slack.received()]:
        journal[_route(path)].append((event_id, at))
    logs = "".join(p.read_text(errors="replace") for p in sorted(workdir.glob("worker-*.log")))
    report = _report(plan, events, sender.answers, when, journal, attempts, dead, logs)
    names = list(phases)
    report["sender_behind_s"] = round(sender.behind, 3)
    report["cpu_s"] = cpu
    report["wall_s"] = {b: round(phases[b] - phases[a], 2) for a, b in itertools.pairwise(names)}
    report["backlog_left"] = left
    report["unexpected_worker_exits"] = [{**e, "at": round(e["at"] - when.start, 2)} for e in workers.unexpected_exits]
    return report


def _nothing_left(redis: Redis) -> bool:
    """No inbox entry unread and nothing queued, in flight or parked: nothing can be sent again."""
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(keys.INBOX)
    for name in DESTINATIONS:
        pipe.zcard(keys.queue_key(name))
        pipe.zcard(keys.inflight_key(name))
        pipe.llen(keys.parked_key(name))
    return not any(pipe.execute())


def _percentiles(ordered: list[float]) -> dict[str, float]:
    """p50, p99 and the maximum of sorted seconds, in milliseconds."""
    if not ordered:
        return {}
    return {f"p{p}": round(ordered[min(len(ordered) - 1, len(ordered) * p // 100)] * 1000, 1) for p in (50, 99, 100)}


def _route(path: str) -> str:
    """The destination a journalled request came from, by its URL's path ("smtp" for a mail)."""
    return "email" if path == "smtp" else path.strip("/").split("/")[0]


def _received(*receivers: Receiver) -> set[tuple[str, str]]:
    """(destination, event id) of everything the receivers have journalled."""
    return {(_route(path), event_id) for r in receivers for path, event_id, _, _ in r.received()}


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _config(path: Path, callback_url: str, slack_url: str) -> Path:
    """The relay's config: RULES over the three receivers, with the run's short timers."""
    timers = {
        "timeout": "2s",
        "retry": {"delays": ["1s", "2s", "4s", "8s", "15s", "30s"], "jitter": 0.2},
        "pause": {"after_failures": 10, "probe_every": "2s"},
    }
    config = {
        "sources": {SOURCE: {"mac_secrets": [SECRET]}},
        "destinations": {
            "callback": {"type": "http", "url": f"{callback_url}/callback", "signing_secret": SIGNING, **timers},
            "slack": {"type": "slack", "webhook_url": f"{slack_url}/slack/T000/B000/XXXX", **timers},
            "email": {"type": "email", "to": ["ops@example.com"], **timers},
        },
        "rules": RULES,
        "operations": {"lease_grace": "2s", "sweep_every": "2s"},
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def _report(
    plan: Plan,
    events: list[Event],
    answers: list[Answer],
    when: Timeline,
    journal: dict[str, list[tuple[str, float]]],
    attempts: list[dict],
    dead: Counter[str],
    logs: str,
) -> dict:
    """The figures: what the sender was answered, what each receiver got, what each fault did."""
    statuses = Counter(a.status for a in answers)
    first_accepted: dict[str, float] = {}
    for a in sorted(answers, key=lambda a: a.at):
        if a.status in (200, 202):
            first_accepted.setdefault(a.event_id, a.at)
    destinations: dict[str, dict[str, Any]] = {}
    for name in DESTINATIONS:
        should = {i for i, event, _, _ in events if i in first_accepted and name in routed_to(event)}
        got = Counter(i for i, _ in journal[name])
        arrived: dict[str, float] = {}
        for i, at in journal[name]:
            arrived[i] = min(at, arrived.get(i, at))
        failed = [a for a in attempts if a["destination"] == name and a["outcome"] != "ok"]
        took = sorted(max(0.0, arrived[i] - first_accepted[i]) for i in should if i in arrived)
        destinations[name] = {
            "expected": len(should),
            "delivered": len(should & got.keys()),
            "lost": len(should - got.keys()),
            "duplicate_deliveries": sum(1 for n in got.values() if n > 1),
            "unexpected": len(got.keys() - should),
            "failed_attempts": len(failed),
            "failed_then_delivered": len({a["event"] for a in failed} & got.keys()),
            "dead_letters": dead.get(name, 0),
            "last_arrival": max((arrived[i] for i in should if i in arrived), default=0.0),
            # From the sender's first 2xx to the first arrival: retries and outages included.
            "latency_ms": _percentiles(took),
        }
    # The receiver restart: attempts refused while it was down, and whether those events came later.
    outage = (when.receiver_down, when.receiver_up + 1)
    refused = {
        a["event"]
        for a in attempts
        if a["destination"] == "callback" and a["outcome"] != "ok" and outage[0] <= a["at"] <= outage[1]
    }
    later = {i for i, at in journal["callback"] if at > when.receiver_up}
    down = (when.redis_stopped, when.redis_starting)
    last_accepted = max(first_accepted.values(), default=when.start)
    last_arrival = max(d["last_arrival"] for d in destinations.values())
    lost = sum(d["lost"] for d in destinations.values())
    other_5xx = sum(n for s, n in statuses.items() if s >= 500 and s != 503)
    never = len(events) - len(first_accepted)
    # A 2xx for a request sent after Redis had exited and answered before a new one was started.
    impossible = sum(1 for a in answers if a.status in (200, 202) and down[0] < a.sent and a.at < down[1])

    waits = sorted(a.at - a.sent for a in answers if a.status in (200, 202))

    def since_start(t: float) -> float:
        return round(t - when.start, 2)

    return {
        "plan": asdict(plan),
        "events": len(events),
        "requests": len(answers),
        "answers": {str(s): n for s, n in sorted(statuses.items())},
        "accepted": len(first_accepted),
        "accepted_twice": sum(1 for n in Counter(a.event_id for a in answers if a.status == 202).values() if n > 1),
        "never_accepted": never,
        "resent": sum(1 for a in answers if a.resend and a.status in (200, 202)),
        "duplicates_answered": statuses.get(200, 0),
        "refused_503": statuses.get(503, 0),
        "refused_503_while_redis_down": sum(
            1 for a in answers if a.status == 503 and down[0] <= a.at <= when.redis_started + 1
        ),
        "accepted_while_redis_down": impossible,
        "no_answer": statuses.get(0, 0),
        "answer_ms": _percentiles(waits),
        "other_5xx": other_5xx,
        "destinations": destinations,
        "lost": lost,
        "dead_letters": sum(dead.values()),
        "drain_s": round(max(0.0, last_arrival - last_accepted), 2),
        "timeline": {
            "sending_s": since_start(when.sending_done),
            "worker_killed_at_s": since_start(when.kill["at"]),
            "receiver_down_s": [since_start(when.receiver_down), since_start(when.receiver_up)],
            "redis_down_s": [since_start(when.redis_stopped), since_start(when.redis_started)],
            "last_accepted_s": since_start(last_accepted),
            "last_arrival_s": since_start(last_arrival),
        },
        "receiver_restart": {"failed_events": len(refused), "later_delivered": len(refused & later)},
        "killed_worker": {k: v for k, v in when.kill.items() if k != "at"},
        "pauses": dict(Counter(re.findall(r"Destination (\S+) is paused", logs))),
        "resends_after_lost_lease": logs.count("was lost in flight"),
        "inbox_takeovers": logs.count("taking over"),
        # A thread of a worker that ended on an exception: what it did is no longer done.
        "crashed_threads": dict(Counter(re.findall(r"Exception in thread (\S+?):", logs))),
        "ok": lost == 0 and other_5xx == 0 and never == 0 and impossible == 0,
    }
