"""The `relay` command: check the config (and Redis), sign and send sample events, play scripted
sessions, the sessions followed, the event log and its stats, dead letters, destinations, the
workers' status."""

import json
import sys
from typing import IO, Any

import click
import requests
from redis.exceptions import RedisError

from config.errors import ConfigError
from config.loader import load
from config.model import RelayConfig
from config.rules import rule_warnings
from config.settings import Settings
from config.wms_events import CATALOGUE, DERIVED, SEVERITIES
from relay.cli import dead_letters as dead_letters_cli
from relay.cli import destinations as destinations_cli
from relay.cli import events as events_cli
from relay.cli import sessions as sessions_cli
from relay.cli import simulate as simulate_cli
from relay.cli import stats as stats_cli
from relay.cli import status as status_cli
from relay.cli.webhook import Webhook, known_source
from relay.domain import samples, signature
from relay.domain.event import Event, InvalidEvent, parse_event
from relay.domain.routing import describe_route
from relay.store import preflight
from relay.store.connection import Target, connect, explain

# `relay check-config --connect`: 0 all good (notes on stderr for what the server did not let us
# check), 1 the environment or the config file has problems, 3 Redis cannot be used as it is
# (2 is click's, for a usage error).
EXIT_CONFIG, EXIT_REDIS = 1, 3


class _Relay(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RedisError as exc:
            settings = ctx.meta.get(_SETTINGS)
            if settings is None or settings.redis_url is None:  # not ours: redis-py's names no password
                click.echo(f"error: redis: {exc.__class__.__name__}: {exc}", err=True)
            else:  # a client like the command's, to name where it connects (connecting is lazy)
                click.echo(f"error: {explain(exc, connect(settings.redis_url, settings.redis_tls_verify))}", err=True)
            sys.exit(1)


_SETTINGS = "relay.settings"  # the settings a command loaded, in its click context's meta


@click.group(cls=_Relay)
def main() -> None:
    """WMS webhook relay."""


def _load(tool: bool = False) -> tuple[Settings, RelayConfig]:
    try:
        settings, config = load(tool=tool)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    click.get_current_context().meta[_SETTINGS] = settings
    return settings, config


@main.command("check-config")
@click.option(
    "--connect",
    "connect_redis",
    is_flag=True,
    help="Also connect to Redis and check it: reachable, password, TLS, version 6.2+, maxmemory-policy noeviction",
)
@click.option("--event", "code", help="Also show where a sample event with this code would go")
@click.option("--source", help="The sample event's source [default: the first configured]")
@click.option("--severity", type=click.Choice(SEVERITIES), help="Override the code's documented severity")
@click.option(
    "--payload",
    "payload_items",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Set a payload field (VALUE is read as JSON when it parses, e.g. snr=2.5)",
)
def check_config(
    connect_redis: bool, code: str | None, source: str | None, severity: str | None, payload_items: tuple[str, ...]
) -> None:
    """Validate the environment and the config file; print every problem and exit 1 if any.

    With --connect, also connect to Redis and say precisely what stops the relay from using it
    (exit 3): unreachable, password refused, TLS mismatch or certificate, a version older than
    6.2, or a maxmemory-policy that evicts keys (unless RELAY_ALLOW_EVICTION=1). With --event,
    also print which rules fire for a realistic sample event and which destinations would
    receive it. Nothing is sent.
    """
    settings, config = _load()
    click.echo(
        f"{settings.config_path}: OK ({len(config.sources)} source(s), "
        f"{len(config.destinations)} destination(s), {len(config.rules)} rule(s))"
    )
    for warning in rule_warnings(config.rules):
        click.echo(f"warning: {settings.config_path}: {warning}", err=True)
    if code is not None:
        event = _sample_for_routing(config, code, source, severity, payload_items)
        click.echo("\n".join(describe_route(config.rules, event)))
    if connect_redis and not _check_redis(settings):
        sys.exit(EXIT_REDIS)


def _check_redis(settings: Settings) -> bool:
    """Print what `preflight.check` found; False when Redis cannot be used."""
    redis = connect(settings.require_redis_url(), settings.redis_tls_verify)
    try:
        report = preflight.check(redis, settings.allow_eviction)
    finally:
        redis.close()
    for finding in report.findings:
        click.echo(f"{finding.level}: {finding.message}", err=True)
    if not report.ok:
        return False
    target = Target.of(redis)
    facts = [f"Redis {report.version}" if report.version else "version not checked"]
    if target.tls:
        facts.append(
            {
                "required": "TLS, certificate verified",
                "none": "TLS, certificate not verified (REDIS_TLS_VERIFY=none)",
            }.get(target.verify, f"TLS, certificate verified with {target.verify}")
        )
    facts.append(f"maxmemory-policy {report.policy}" if report.policy else "maxmemory-policy not checked")
    click.echo(f"redis at {target.where}: OK ({', '.join(facts)})")
    return True


def _sample_for_routing(
    config: RelayConfig, code: str, source: str | None, severity: str | None, payload_items: tuple[str, ...]
) -> Event:
    source = known_source(config, source or next(iter(config.sources)))
    fields = samples.sample_event(code, "sample-session", 0)
    derived = code in DERIVED  # SESSION_FAILED, ...: route the relay's own event, as the workers would
    if derived:
        del fields["sequence"]
        fields.update(severity=DERIVED[code].severity, derived="session")
    fields["severity"] = severity or fields["severity"]
    for item in payload_items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected FIELD=VALUE, got {item!r}", param_hint="--payload")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        # Dots make nested objects, as in the rules' payload conditions ("api.status").
        *parents, leaf = name.split(".")
        target = fields.setdefault("payload", {})
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    try:
        return parse_event(source, samples.to_body(fields), derived=derived)
    except InvalidEvent as exc:
        raise click.BadParameter(exc.detail) from None


@main.command("send-sample")
@click.option("--url", help="Webhook URL [default: http://127.0.0.1:$PORT/hooks/<source>]")
@click.option("--source", default="wms", show_default=True, help="Source whose first MAC secret signs the event")
@click.option("--event", "code", default="CONSTRAINT_VIOLATION", show_default=True, help="Event code to send")
@click.option("--session", "session_id", help="Session id [default: a new one each time]")
@click.option("--sequence", default=0, show_default=True, type=click.IntRange(min=0))
def send_sample(url: str | None, source: str, code: str, session_id: str | None, sequence: int) -> None:
    """POST a realistic WMS event, signed exactly as WMS signs it, and print the answer."""
    settings, config = _load(tool=True)
    webhook = Webhook.of(settings, config, source, url)
    if code not in CATALOGUE:
        click.echo(f"note: {code!r} is not a documented WMS event code; the relay will mark it unknown", err=True)
    body = samples.to_body(samples.sample_event(code, session_id or samples.new_session_id(), sequence))
    click.echo(f"POST {webhook.url}\n{body.decode()}")
    try:
        response = webhook.post(body)
    except requests.RequestException as exc:
        click.echo(webhook.unreachable(exc), err=True)
        sys.exit(1)
    click.echo(f"-> {response.status_code} {response.text.strip()}")
    sys.exit(0 if response.ok else 1)


@main.command("sign")
@click.option("--source", default="wms", show_default=True, help="Source whose first MAC secret signs")
@click.argument("body_file", type=click.File("rb"), default="-")
def sign(source: str, body_file: IO[bytes]) -> None:
    """Print the X-WMS-Content-MAC header value WMS would send for BODY_FILE (default: stdin)."""
    _, config = _load(tool=True)
    known_source(config, source)
    click.echo(signature.compute(config.sources[source].mac_secrets[0].reveal(), body_file.read()))


dead_letters_cli.register(main, _load)
destinations_cli.register(main, _load)
events_cli.register(main, _load)
sessions_cli.register(main, _load)
simulate_cli.register(main, _load)
stats_cli.register(main, _load)
status_cli.register(main, _load)
