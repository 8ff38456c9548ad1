"""Fixtures on real parts: a private redis-server, the real app factory, signed requests."""

import textwrap
import time
from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from config.loader import load_config
from config.settings import Settings
from devtools.local_redis import LocalRedis
from relay.domain.signature import compute
from relay.store import due, keys, queues
from relay.store.connection import connect
from relay.store.jobs import QUEUE_NAME
from relay.web.app import create_app
from tests.peers import HttpPeer, SmtpPeer
from tests.redis_servers import Server, make_certs
from workers import runtime, timers
from workers.drain import Drain
from workers.runtime import Runtime

SECRET = "test-mac-secret"
PREVIOUS_SECRET = "test-previous-secret"
CONFIG_YAML = """
sources:
  wms:
    mac_secrets: ["${WMS_MAC_SECRET}", "${WMS_MAC_SECRET_PREVIOUS}"]
"""
CONFIG_ENV = {"WMS_MAC_SECRET": SECRET, "WMS_MAC_SECRET_PREVIOUS": PREVIOUS_SECRET}


@pytest.fixture(scope="session")
def redis_server():
    """One private redis-server for the whole run: nothing else on the machine is touched."""
    with LocalRedis() as server:
        yield server


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A test CA, a server certificate for 127.0.0.1/localhost signed by it, and an unrelated CA."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def tls_server(certs):
    """A redis-server that speaks only TLS, with the test certificate."""
    with Server(tls=certs) as server:
        yield server


@pytest.fixture
def redis(redis_server):
    """A client of the private server, flushed before and after each test."""
    client = connect(Settings.from_env({"REDIS_URL": redis_server.url}).redis_url)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def config_path(tmp_path):
    """The test config file: one source, 'wms', with a current and a previous MAC secret."""
    path = tmp_path / "relay.yaml"
    path.write_text(textwrap.dedent(CONFIG_YAML))
    return path


@pytest.fixture
def settings(redis_server, config_path):
    """Settings as the processes would read them from the environment."""
    return Settings.from_env({"REDIS_URL": redis_server.url, "RELAY_CONFIG": str(config_path)})


@pytest.fixture
def relay_config(settings):
    """The loaded test config."""
    return load_config(settings.config_path, CONFIG_ENV, settings)


@pytest.fixture
def app(settings, relay_config, redis):
    """The real app on the private Redis."""
    return create_app(settings, relay_config, redis)


@pytest.fixture
def client(app):
    """Flask's test client for `app`."""
    return app.test_client()


def signed_post(client, body: bytes, secret: str = SECRET, source: str = "wms", headers: dict | None = None):
    """POST `body` to /hooks/<source> with the X-WMS-Content-MAC that WMS would send."""
    all_headers = {"Content-Type": "application/json", "X-WMS-Content-MAC": compute(secret, body)}
    all_headers.update(headers or {})
    return client.post(f"/hooks/{source}", data=body, headers=all_headers)


@pytest.fixture
def http_peer():
    """A recording HTTP server on 127.0.0.1 standing in for Slack and for callbacks."""
    peer = HttpPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def smtp_peer():
    """A real SMTP server (aiosmtpd) on 127.0.0.1."""
    peer = SmtpPeer().start()
    yield peer
    peer.stop()


# A whole relay on real parts: the app, a worker run in-process, Slack/callback and SMTP peers.
CRM_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
FANOUT_YAML = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  ops-slack: {type: slack, webhook_url: "%(http)s/slack/T000/B000/XXXX"}
  ops-email: {type: email, to: [ops@example.com], cc: [qa@example.com]}
  crm:
    type: http
    url: "%(http)s/crm?token=crm-token"
    signing_secret: "%(crm_secret)s"
    headers: {X-Tenant: acme, Authorization: "Bearer crm-api-key"}
    timeout: 2s
rules:
  - name: failed-measurements
    match: {severity: ">=WARN"}
    to: [ops-slack, ops-email]
  - name: everything-downstream
    match: {}
    to: [crm]
"""


@dataclass
class Relay:
    """The pieces a fan-out test drives and inspects."""

    client: FlaskClient
    rt: Runtime  # the worker side, as `python -m workers` builds it
    http: HttpPeer
    smtp: SmtpPeer
    queue: Queue
    worker: SimpleWorker  # one for the whole test: building one per drain cost a third of the suite

    @property
    def redis(self) -> Redis:
        """The relay's Redis client."""
        return self.rt.redis

    def drain(self) -> None:
        """Fan out every event in the inbox, send everything due and run every queued RQ job in
        this process, as the Procfile's worker would, until nothing is left to do now."""
        while True:
            self.rt.find_lanes()  # as the worker's timers do, for destinations no longer configured
            busy = any(lane.in_flight for lane in list(self.rt.lanes.values()))  # their ends may free more
            fanned_out = Drain(self.rt, name="tests").drain_all()
            sent = sum(lane.start_due() for lane in list(self.rt.lanes.values()))
            ran = self.run_queued_jobs()
            assert self.rt.wait_idle(timeout=30), "deliveries still in flight after 30 s"
            if not (busy or fanned_out or sent or ran or self.queue.count):
                return

    def run_queued_jobs(self) -> int:
        """Run every RQ job queued now (and those they queue) with the one worker; return how many."""
        ran = 0
        while found := Queue.dequeue_any([self.queue], None, connection=self.redis, serializer=JSONSerializer):
            job, queue = found
            self.worker.execute_job(job, queue)
            ran += 1
        return ran

    def scheduled(self) -> list[tuple[str, str, int, int, float]]:
        """Deliveries due later (retries, rate-capped replays): (event id, destination, attempt,
        deferrals, due time), soonest first."""
        now = time.time()
        found = []
        for key in self.redis.scan_iter(match=keys.queue_key("*")):
            for member, when in self.redis.zrangebyscore(key, f"({now}", "+inf", withscores=True):
                found.append((*queues.parse_member(member), when))
        return sorted(found, key=lambda item: item[-1])

    def run_due_retries(self) -> int:
        """Make every delivery due later due now, as if its time had come; return how many."""
        now = time.time()
        moved = 0
        for key in self.redis.scan_iter(match=keys.queue_key("*")):
            later = self.redis.zrangebyscore(key, f"({now}", "+inf")
            if later:
                self.redis.zadd(key, dict.fromkeys(later, now))
                moved += len(later)
        return moved

    def timers(self) -> dict[str, float]:
        """The timers set in relay:due and when each is due (unix s)."""
        return {m.decode(): score / 1000 for m, score in self.redis.zrange(keys.DUE, 0, -1, withscores=True)}

    def run_due_timers(self, kinds: tuple[str, ...] = (due.PROBE, due.EXPIRE_DEAD_LETTERS)) -> int:
        """Run every timer of these kinds now, as if its time had come (by default probes and
        dead-letter expiry, not the sessions' timers: see settle_sessions); return how many."""
        members = [m for m in self.redis.zrange(keys.DUE, 0, -1) if due.parse_timer(m)[0] in kinds]
        if members:
            self.redis.zadd(keys.DUE, dict.fromkeys(members, 0))
        return timers.tick(self.rt)

    def run_timers_at(self, kind: str, now: float) -> int:
        """Run every timer of `kind` (due.SESSION, due.ORDER, due.GROUP) as its worker would at
        `now`, due or not, and set or remove it as the run says; return how many ran."""
        ran = 0
        for member in self.redis.zrange(keys.DUE, 0, -1):
            if due.parse_timer(member)[0] == kind:
                following = timers.run(self.rt, member.decode(), now=now)
                if following is None:
                    due.cancel(self.redis, member.decode())
                else:
                    due.schedule(self.redis, member.decode(), following, replace=True)
                ran += 1
        return ran

    def settle_sessions(self, after: float = 86400) -> int:
        """Run every session's timer as if `after` seconds had passed (outcomes settled, idle
        sessions abandoned); return how many ran. Drain afterwards to send what they emitted."""
        return self.run_timers_at(due.SESSION, time.time() + after)

    def expire_leases(self) -> int:
        """Make every lease run out now, as when a worker died mid-send; return how many."""
        expired = 0
        for key in self.redis.scan_iter(match=keys.inflight_key("*")):
            members = self.redis.zrange(key, 0, -1)
            if members:
                self.redis.zadd(key, dict.fromkeys(members, 0))
                expired += len(members)
        return expired


@pytest.fixture
def relay_factory(tmp_path, redis_server, redis, http_peer, smtp_peer):
    """Build the relay from a config template (%(http)s, %(secret)s, %(crm_secret)s are filled in)."""

    def make(template: str = FANOUT_YAML) -> Relay:
        path = tmp_path / "relay.yaml"
        path.write_text(textwrap.dedent(template % {"secret": SECRET, "http": http_peer.url, "crm_secret": CRM_SECRET}))
        settings = Settings.from_env(
            {
                "REDIS_URL": redis_server.url,
                "RELAY_CONFIG": str(path),
                "SMTP_URL": smtp_peer.url,
                "EMAIL_FROM": "relay@wms.example.com",
                "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            }
        )
        config = load_config(str(path), {}, settings)
        rt = Runtime.build(settings, config, redis)
        runtime.install(rt)  # for the RQ entry points the jobs run through
        queue = Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer)
        worker = SimpleWorker([queue], connection=redis, serializer=JSONSerializer)
        return Relay(create_app(settings, config, redis).test_client(), rt, http_peer, smtp_peer, queue, worker)

    yield make
    runtime.install(None)


@pytest.fixture
def relay(relay_factory):
    """The relay with all three destination types pointed at local peers, and its worker runtime."""
    return relay_factory()
