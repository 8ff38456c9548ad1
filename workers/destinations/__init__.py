"""Destination adapters, one module each, registered in one place: REGISTRY."""

from collections.abc import Callable

import requests

from config.destinations import EmailDestination, HttpDestination, SlackDestination
from config.settings import Settings
from config.smtp import parse_smtp_url
from workers.destinations.base import Adapter
from workers.destinations.email import EmailAdapter
from workers.destinations.http import HttpAdapter
from workers.destinations.slack import SlackAdapter

# destination type -> how to build its adapter from its name, config, the settings and the shared session
REGISTRY: dict[str, Callable[..., Adapter]] = {
    "slack": lambda name, config, settings, session: SlackAdapter(config, session),
    "email": lambda name, config, settings, session: EmailAdapter(
        config, parse_smtp_url(settings.smtp_url.reveal()), settings.email_from, name
    ),
    "http": lambda name, config, settings, session: HttpAdapter(config, session),
}


def build_adapter(
    name: str,
    config: SlackDestination | EmailDestination | HttpDestination,
    settings: Settings,
    session: requests.Session,
) -> Adapter:
    """The adapter for one configured destination."""
    return REGISTRY[config.type](name, config, settings, session)
