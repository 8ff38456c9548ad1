"""What several `relay` commands share: the connection their `load` leads to, and the parsing of
a duration option."""

from collections.abc import Callable

import click
from redis import Redis

from config.durations import parse_duration
from config.model import RelayConfig
from config.settings import Settings
from relay.store.connection import connect


def redis_and_config(load: Callable[[], tuple[Settings, RelayConfig]]) -> tuple[Redis, RelayConfig]:
    """Redis (REDIS_URL, with REDIS_TLS_VERIFY) and the config, both read by `load`."""
    settings, config = load()
    return connect(settings.require_redis_url(), settings.redis_tls_verify), config


def duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback: '2h', '30m', '7d' as seconds; a bad one is the option's error."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
