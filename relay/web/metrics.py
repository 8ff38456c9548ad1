"""GET /metrics: Prometheus's text format, for the whole relay, from the web process.

Two sources, summed by whoever is scraped (docs/metrics.md says why):
- the web process's own counters (requests by source and result, ingest latency), kept in memory
  by each gunicorn worker with prometheus-client's multiprocess mode: each worker writes its
  figures to an mmap'ed file of PROMETHEUS_MULTIPROC_DIR (a few microseconds a request, no
  Redis), and a scrape, answered by any one worker, sums every file;
- the workers' counters and the gauges, read from Redis at scrape time (relay/store/metrics.py).

Off (404, as the admin API) unless METRICS_TOKEN or RELAY_ADMIN_TOKEN is set; METRICS_TOKEN=public
serves it without a token.
"""

import atexit
import hmac
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from relay.store import metrics as store_metrics
from relay.web.errors import ApiError

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
INGEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UNKNOWN_SOURCE = "-"  # the source label of a request to an unconfigured source: no label from the URL


def use_multiprocess_dir() -> str:
    """Make this process's metrics, and those of the processes it forks, shared through files.

    Called once in gunicorn's master (the Procfile preloads the app) before any metric exists:
    PROMETHEUS_MULTIPROC_DIR, or a new temporary directory, is emptied, so a restart starts from 0
    as any process's counters do. Returns the directory.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for leftover in Path(path).glob("*.db"):
            leftover.unlink()
    else:
        path = tempfile.mkdtemp(prefix="relay-metrics-")
        os.environ[MULTIPROC_ENV] = path
        # Removed when this process exits, not when one of its forked workers does.
        atexit.register(_remove_if_exiting, path, os.getpid())
    values.ValueClass = values.MultiProcessValue()
    return path


def process_exited(pid: int) -> None:
    """A web worker exits: its live gauges go (its counters stay, summed with the others)."""
    if os.environ.get(MULTIPROC_ENV):
        mark_process_dead(pid)


def _remove_if_exiting(path: str, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


class IngestMetrics:
    """The web process's counters: one per app, made after use_multiprocess_dir() when it is used."""

    def __init__(self) -> None:
        # registry=None: a scrape builds its own registry (these, or the multiprocess files).
        self.requests = Counter(
            "relay_ingest_requests",
            "POST /hooks/<source> requests by source and result",
            ["source", "result"],
            registry=None,
        )
        self.latency = Histogram(
            "relay_ingest_duration_seconds",
            "time from the route's start to its answer, of every POST /hooks/<source> request",
            buckets=INGEST_BUCKETS,
            registry=None,
        )
        self._children: dict[tuple[str, str], Counter] = {}

    def observe(self, source: str, result: str, seconds: float) -> None:
        """Count one request and its time (the hot path: a dict lookup and two increments)."""
        child = self._children.get((source, result))
        if child is None:
            child = self._children[(source, result)] = self.requests.labels(source, result)
        child.inc()
        self.latency.observe(seconds)

    def register(self, registry: CollectorRegistry) -> None:
        """Put this process's counters in a scrape's registry: the files of every web worker when
        they are shared, else these objects."""
        if values.ValueClass is not values.MutexValue and os.environ.get(MULTIPROC_ENV):
            MultiProcessCollector(registry)
        else:
            registry.register(self.requests)
            registry.register(self.latency)


class RedisCollector(Collector):
    """The workers' counters and the gauges, read from Redis at each scrape."""

    def __init__(self, snapshot: store_metrics.Snapshot):
        self.snap = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        attempts = CounterMetricFamily(
            "relay_delivery_attempts", "delivery attempts by destination and outcome", labels=["destination", "outcome"]
        )
        for (destination, outcome), count in sorted(snap.attempts.items()):
            attempts.add_metric([destination, outcome], count)
        yield attempts
        send = HistogramMetricFamily(
            "relay_delivery_send_duration_seconds", "time each attempt's send took", labels=["destination"]
        )
        for destination, histogram in sorted(snap.send.items()):
            send.add_metric([destination], [(b, float(c)) for b, c in histogram.buckets], histogram.total)
        yield send
        gauges = {
            "waiting": ("relay_destination_waiting", "deliveries due now and not yet taken"),
            "oldest_wait": (
                "relay_destination_oldest_wait_seconds",
                "how long the oldest delivery due now has waited (0: none)",
            ),
            "scheduled": ("relay_destination_scheduled", "deliveries due later (retries, rate-capped replays)"),
            "in_flight": ("relay_destination_in_flight", "deliveries being sent"),
            "parked": ("relay_destination_parked", "deliveries waiting for the paused destination"),
            "paused": ("relay_destination_paused", "1 while the destination is paused, else 0"),
            "dead_letters": ("relay_destination_dead_letters", "dead letters kept for the destination"),
        }
        for attr, (name, text) in gauges.items():
            family = GaugeMetricFamily(name, text, labels=["destination"])
            for destination, state in sorted(snap.destinations.items()):
                family.add_metric([destination], float(getattr(state, attr)))
            yield family
        sessions = CounterMetricFamily("relay_sessions", "sessions whose outcome was emitted", labels=["outcome"])
        for outcome, count in sorted(snap.sessions.items()):
            sessions.add_metric([outcome], count)
        yield sessions
        yield GaugeMetricFamily("relay_inbox_entries", "accepted events not yet fanned out", value=snap.inbox_entries)
        yield GaugeMetricFamily(
            "relay_inbox_oldest_age_seconds", "how long the oldest of them has waited (0: none)", snap.inbox_oldest_age
        )
        yield GaugeMetricFamily(
            "relay_workers_running", "worker processes whose heartbeat is current", value=snap.workers_running
        )
        yield GaugeMetricFamily(
            "relay_workers_seen", "worker processes seen in the last day, running or not", value=snap.workers_seen
        )
        if snap.last_heartbeat_age is not None:
            yield GaugeMetricFamily(
                "relay_workers_last_heartbeat_age_seconds",
                "seconds since the latest heartbeat of any worker process",
                value=snap.last_heartbeat_age,
            )


@bp.before_request
def _authorize() -> None:
    settings = current_app.config["RELAY_SETTINGS"]
    if settings.metrics_public:
        return
    token = settings.metrics_token or settings.admin_token
    if token is None:
        raise ApiError(404, "not_found", "no such endpoint; webhooks are received at POST /hooks/<source>")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
        log.warning("metrics: refused a scrape from %s: missing or invalid bearer token", request.remote_addr)
        raise ApiError(401, "unauthorized", "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})


@bp.get("/metrics")
def scrape() -> Response:
    """Every metric of the relay, in Prometheus's text format."""
    config = current_app.config["RELAY"]
    settings = current_app.config["RELAY_SETTINGS"]
    snapshot = store_metrics.read(
        current_app.extensions["relay.redis"], sorted(config.destinations), settings.worker_absent_after
    )
    registry = CollectorRegistry(auto_describe=False)
    current_app.extensions["relay.metrics"].register(registry)
    registry.register(RedisCollector(snapshot))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
