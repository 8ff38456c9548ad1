"""A whole relay on real parts: the app, a worker run in-process, Slack/callback and SMTP peers."""

import textwrap
from dataclasses import dataclass

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from config.loader import load_config
from config.settings import Settings
from relay.app import create_app
from relay.jobs import QUEUE_NAME
from tests.conftest import SECRET
from tests.peers import HttpPeer, SmtpPeer
from workers import runtime
from relay.jobs import RETRY as RETRY_JOB

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

    client: object
    redis: Redis
    http: HttpPeer
    smtp: SmtpPeer
    queue: Queue

    def drain(self) -> None:
        """Run every queued job in this process, as the Procfile's worker would, and wait for the
        deliveries they hand to the delivery threads."""
        while True:
            SimpleWorker([self.queue], connection=self.redis, serializer=JSONSerializer).work(burst=True)
            assert runtime.current().wait_idle(timeout=30), "deliveries still in flight after 30 s"
            if self.queue.count == 0:
                return

    def run_due_retries(self, funcs: tuple[str, ...] = (RETRY_JOB,)) -> int:
        """Queue every scheduled job of `funcs` now, as if its time had come; return how many."""
        registry = ScheduledJobRegistry(queue=self.queue)
        jobs = [job for job, _ in self.scheduled(funcs)]
        for job in jobs:
            registry.remove(job.id)
            self.queue.enqueue_job(job)
        return len(jobs)

    def scheduled(self, funcs: tuple[str, ...] = (RETRY_JOB,)) -> list:
        """The scheduled jobs of `funcs` (by default retries, not the sweeper), with their due times."""
        registry = ScheduledJobRegistry(queue=self.queue)
        jobs = [(self.queue.fetch_job(i), registry.get_scheduled_time(i)) for i in registry.get_job_ids()]
        return [(job, due) for job, due in jobs if job.func_name in funcs]


@pytest.fixture
def relay_factory(tmp_path, redis_server, redis, http_peer, smtp_peer):
    """Build the relay from a config template (%(http)s, %(secret)s, %(crm_secret)s are filled in)."""
    def make(template: str = FANOUT_YAML) -> Relay:
        path = tmp_path / "relay.yaml"
        path.write_text(textwrap.dedent(template % {"secret": SECRET, "http": http_peer.url, "crm_secret": CRM_SECRET}))
        settings = Settings.from_env({
            "REDIS_URL": redis_server.url, "RELAY_CONFIG": str(path),
            "SMTP_URL": smtp_peer.url, "EMAIL_FROM": "relay@wms.example.com",
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
        })
        config = load_config(str(path), {}, settings)
        runtime.install(runtime.Runtime.build(settings, config))
        return Relay(create_app(settings, config, redis).test_client(), redis, http_peer, smtp_peer,
                     Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer))

    yield make
    runtime.install(None)


@pytest.fixture
def relay(relay_factory):
    """The relay with all three destination types pointed at local peers, and its worker runtime."""
    return relay_factory()
