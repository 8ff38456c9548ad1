"""The Redis client every process uses, built from REDIS_URL with bounded timeouts."""

from redis import Redis

from config.secret import Secret


def connect(url: Secret) -> Redis:
    """A client for `url`; it connects lazily, so a down Redis surfaces per request, not here."""
    # Short timeouts: a webhook sender waits on us, and a 503 it can retry beats a hung request.
    return Redis.from_url(url.reveal(), socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)
