"""The web side: receives WMS webhooks, verifies and validates them, and queues them in Redis."""

from relay.app import create_app

__all__ = ["create_app"]
