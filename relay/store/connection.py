"""The Redis client every process uses, built from REDIS_URL and REDIS_TLS_VERIFY with bounded
timeouts, and the one sentence an operator reads when it fails (explain): /readyz, the `relay`
command and the worker all say it the same way, and never with the password.
"""

import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis import Redis
from redis.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.secret import REDACTED, Secret
from config.settings import TLS_VERIFY_NONE, TLS_VERIFY_REQUIRED

CONNECT_TIMEOUT = 2  # seconds: a webhook sender waits on us, and a 503 it can retry beats a hung request
READ_TIMEOUT = 5
PROBE_TIMEOUT = 1.0  # seconds for the one look explain() takes at a port, to tell a TLS mismatch


def connect(url: Secret, tls_verify: str = TLS_VERIFY_REQUIRED) -> Redis:
    """A client for `url`; it connects lazily, so a down Redis surfaces per request, not here.

    For a rediss:// URL, `tls_verify` (REDIS_TLS_VERIFY) is 'required' (the system's CAs and the
    host name), 'none' (no verification: Redis add-ons with a self-signed certificate), or the
    path of a CA file the server's certificate must chain to. Options in the URL's query win.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": READ_TIMEOUT,
        "health_check_interval": 30,
    }
    if urlsplit(url.reveal()).scheme == "rediss":
        options.update(tls_options(tls_verify))
    return Redis.from_url(url.reveal(), **options)


def tls_options(tls_verify: str) -> dict[str, Any]:
    """redis-py's SSL options for a REDIS_TLS_VERIFY value."""
    if tls_verify == TLS_VERIFY_NONE:
        return {"ssl_cert_reqs": "none"}  # redis-py then skips the host name check too
    if tls_verify == TLS_VERIFY_REQUIRED:
        return {"ssl_cert_reqs": "required"}
    return {"ssl_cert_reqs": "required", "ssl_ca_certs": tls_verify}


@dataclass(frozen=True)
class Target:
    """Where a client connects, as an operator names it: never with its password."""

    where: str  # host:port, or the socket's path
    host: str | None
    port: int | None
    tls: bool
    verify: str  # 'required', 'none' or a CA file (only meaningful with tls)
    has_password: bool
    password: str | None  # only to scrub it from messages

    @classmethod
    def of(cls, redis: Redis) -> "Target":
        """The target of `redis`, read from its connection pool."""
        pool = redis.connection_pool
        kwargs = pool.connection_kwargs
        password = kwargs.get("password")
        if issubclass(pool.connection_class, UnixDomainSocketConnection):
            path = str(kwargs.get("path"))
            return cls(path, None, None, False, TLS_VERIFY_REQUIRED, bool(password), password)
        host, port = str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379))
        tls = issubclass(pool.connection_class, SSLConnection)
        reqs = kwargs.get("ssl_cert_reqs", "required")
        if reqs in ("none", None, ssl.CERT_NONE):
            verify = TLS_VERIFY_NONE
        else:
            verify = kwargs.get("ssl_ca_certs") or TLS_VERIFY_REQUIRED
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return cls(where, host, port, tls, verify, bool(password), password)

    @property
    def scheme(self) -> str:
        """The URL scheme this target is reached by."""
        return "unix" if self.host is None else ("rediss" if self.tls else "redis")


def explain(exc: BaseException, redis: Redis) -> str:
    """What went wrong with `redis`, in words an operator can act on, e.g. "redis at h:6379 is
    unreachable (connection refused)". A connection that failed in a way a TLS mismatch explains
    (reset at once, or a handshake that did not complete) costs one look at the port to tell."""
    target = Target.of(redis)
    message = _explain(exc, target)
    if target.password:
        message = message.replace(target.password, REDACTED)
    return message


def _explain(exc: BaseException, target: Target) -> str:
    at = f"redis at {target.where}"
    text = _text(exc)
    if isinstance(exc, AuthenticationError) or text.startswith("NOAUTH"):
        if not target.has_password:
            return f"{at} requires a password, and REDIS_URL has none ({target.scheme}://:<password>@{target.where})"
        return f"{at} refused the password (AUTH failed: {text}): check the user and password in REDIS_URL"
    if isinstance(exc, NoPermissionError):
        return f"{at}: the user of REDIS_URL is not allowed to do this ({text})"
    if isinstance(exc, BusyLoadingError):
        return f"{at} is loading its data set into memory; it answers once that is done"
    if isinstance(exc, ReadOnlyError):
        return f"{at} is a read-only replica: REDIS_URL must name the primary"
    if isinstance(exc, ResponseError):
        if text.startswith("OOM"):
            return f"{at} is out of memory (its maxmemory is reached): {text}"
        return f"{at}: {text}"
    causes = _causes(exc)
    verification = next((c for c in causes if isinstance(c, ssl.SSLCertVerificationError)), None)
    if verification is not None:
        return _verification_failed(target, verification)
    if target.port is not None and _looks_like_tls_mismatch(exc, causes, target):
        if not target.tls and _speaks_tls(target):
            return f"{at} expects TLS: REDIS_URL must start with rediss://, not redis://"
        if target.tls and _speaks_plain_redis(target):
            return f"{at} does not speak TLS: REDIS_URL must start with redis://, not rediss://"
    if isinstance(exc, RedisTimeoutError):
        if "connecting" in str(exc) or _mentions(causes, "handshake"):
            return f"{at} is unreachable (no answer within {CONNECT_TIMEOUT} s)"
        return f"{at} did not answer within {READ_TIMEOUT} s"
    os_error = next((c for c in causes if isinstance(c, OSError)), None)
    if os_error is not None and "connecting" in str(exc):
        return f"{at} is unreachable ({_os_reason(os_error, target)})"
    if os_error is not None:
        return f"{at} closed the connection ({_os_reason(os_error, target)})"
    return f"{at}: {exc.__class__.__name__}: {text}"


def _verification_failed(target: Target, error: ssl.SSLCertVerificationError) -> str:
    against = "the system's CA certificates" if target.verify == TLS_VERIFY_REQUIRED else f"the CA file {target.verify}"
    reason = error.verify_message or error.reason or "certificate verify failed"
    return (
        f"TLS certificate verification failed for redis at {target.where} ({reason}; checked against {against}): "
        "set REDIS_TLS_VERIFY to the path of the CA file that signed the server's certificate, "
        "or to none for a Redis with a self-signed certificate (Heroku Redis)"
    )


def _looks_like_tls_mismatch(exc: BaseException, causes: list[BaseException], target: Target) -> bool:
    """A plain connection the server dropped at once, or a TLS handshake that went nowhere."""
    if target.tls:
        return any(isinstance(c, ssl.SSLError) for c in causes) or _mentions(causes, "handshake")
    return any(isinstance(c, ConnectionResetError | BrokenPipeError) for c in causes) or (
        "Connection closed by server" in str(exc)
    )


def _speaks_tls(target: Target) -> bool:
    """Whether the port completes a TLS handshake (the certificate is not checked here)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((target.host, target.port), timeout=PROBE_TIMEOUT) as sock,
            context.wrap_socket(sock, server_hostname=target.host),
        ):
            return True
    except OSError:
        return False


def _speaks_plain_redis(target: Target) -> bool:
    """Whether the port answers a plain-text PING as Redis does (+PONG, or an error such as NOAUTH)."""
    try:
        with socket.create_connection((target.host, target.port), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)[:1] in (b"+", b"-")
    except OSError:
        return False


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from, innermost last."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _mentions(causes: list[BaseException], word: str) -> bool:
    return any(word in str(c) for c in causes)


def _os_reason(error: OSError, target: Target) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name {target.host!r}"
    if isinstance(error, FileNotFoundError):
        return "no such socket"
    if isinstance(error, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT} s"
    return (error.strerror or str(error) or error.__class__.__name__).lower()


def _text(exc: BaseException) -> str:
    return str(exc).strip().rstrip(".")
