"""Process settings from environment variables: one table, read once at start-up."""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from redis.connection import parse_url

from config.errors import ConfigError
from config.secret import Secret
from config.smtp import parse_smtp_url
from config.values import email_problem, url_problem

# Beside this module, not relative to the working directory: `relay check-config` run from
# anywhere (or a process started elsewhere by a supervisor) reads the same file.
DEFAULT_CONFIG_PATH = str(Path(__file__).resolve().parent / "relay.yaml")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")  # json: one object a line, for log drains; text: for people
MIN_ADMIN_TOKEN = 24
# METRICS_TOKEN's keyword: GET /metrics served without a token (docs/metrics.md).
METRICS_PUBLIC = "public"
# REDIS_TLS_VERIFY's keywords; any other value is the path of a CA file.
TLS_VERIFY_REQUIRED = "required"  # the system's CAs, and the host name
TLS_VERIFY_NONE = "none"  # no verification: platforms whose Redis has a self-signed certificate
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")
WORKER_PRESENCE_TTL = 15  # seconds: a worker heartbeats every third of it
WORKER_ABSENT_AFTER = 60  # seconds: a restart's stop (30 s on Heroku) and start, with a margin
# Seconds a worker's warm shutdown waits for its sends in flight before it gives their leases back
# and exits: within Heroku's 30 s between SIGTERM and SIGKILL, with room for the giving back.
SHUTDOWN_TIMEOUT = 25


@dataclass(frozen=True)
class Settings:
    """Everything the processes read from the environment. See docs/configuration.md."""

    redis_url: Secret | None  # may hold a password
    config_path: str
    port: int
    log_level: str
    smtp_url: Secret | None  # holds the SMTP password
    email_from: str | None
    web_concurrency: int  # read by the Procfile's gunicorn; checked here with the rest
    admin_token: Secret | None = None  # enables the admin API when set
    redis_tls_verify: str = TLS_VERIFY_REQUIRED  # 'required', 'none' or a CA file; for rediss:// only
    allow_eviction: bool = False  # `relay check-config --connect` accepts an evicting maxmemory-policy
    worker_presence_ttl: int = WORKER_PRESENCE_TTL  # a worker unseen this long is presumed gone
    worker_absent_after: int = WORKER_ABSENT_AFTER  # events waiting and no worker this long: a problem
    log_format: str = "text"  # LOG_FORMATS
    shutdown_timeout: int = SHUTDOWN_TIMEOUT  # a worker's warm shutdown ends this long after SIGTERM
    # GET /metrics: its own bearer token; None: the admin token's (off when neither is set)
    metrics_token: Secret | None = None
    metrics_public: bool = False  # METRICS_TOKEN=public: served without a token

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, require_redis: bool = True) -> "Settings":
        """Read and validate the environment; raise ConfigError listing every problem."""
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        redis_url = get("REDIS_URL")
        if redis_url is None:
            if require_redis:
                problems.append("REDIS_URL: required, e.g. redis://localhost:6379/0")
        elif url_problem(redis_url, ("redis", "rediss", "unix")) or not _redis_py_accepts(redis_url):
            problems.append("REDIS_URL: must be a redis://, rediss:// or unix:// URL")

        tls_verify = get("REDIS_TLS_VERIFY") or TLS_VERIFY_REQUIRED
        if tls_verify.lower() in (TLS_VERIFY_REQUIRED, TLS_VERIFY_NONE):
            tls_verify = tls_verify.lower()
        elif problem := _ca_file_problem(tls_verify):
            problems.append(
                f"REDIS_TLS_VERIFY: must be 'required', 'none' or the path of a CA certificate file (PEM), "
                f"got {tls_verify!r}: {problem}"
            )

        allow_text = (get("RELAY_ALLOW_EVICTION") or "0").lower()
        if allow_text not in _TRUE + _FALSE:
            problems.append(
                f"RELAY_ALLOW_EVICTION: must be 1 or 0 (or true, false), got {get('RELAY_ALLOW_EVICTION')!r}"
            )

        presence_ttl = _seconds_setting("WORKER_PRESENCE_TTL", get, WORKER_PRESENCE_TTL, 1, 3600, problems)
        absent_after = _seconds_setting("WORKER_ABSENT_AFTER", get, WORKER_ABSENT_AFTER, 1, 86400, problems)
        shutdown_timeout = _seconds_setting("SHUTDOWN_TIMEOUT", get, SHUTDOWN_TIMEOUT, 0, 3600, problems)

        port_text = get("PORT") or "8000"
        port = int(port_text) if port_text.isdigit() else 0
        if not 1 <= port <= 65535:
            problems.append(f"PORT: must be a TCP port number (1-65535), got {port_text!r}")

        log_level = _one_of("LOG_LEVEL", (get("LOG_LEVEL") or "INFO").upper(), get, LOG_LEVELS, problems)
        log_format = _one_of("LOG_FORMAT", (get("LOG_FORMAT") or "text").lower(), get, LOG_FORMATS, problems)

        concurrency_text = get("WEB_CONCURRENCY") or "2"
        web_concurrency = int(concurrency_text) if concurrency_text.isdigit() else 0
        if not 1 <= web_concurrency <= 64:
            problems.append(f"WEB_CONCURRENCY: must be a number of processes (1-64), got {concurrency_text!r}")

        admin_token = get("RELAY_ADMIN_TOKEN")
        if admin_token is not None and len(admin_token) < MIN_ADMIN_TOKEN:
            problems.append(f"RELAY_ADMIN_TOKEN: must be at least {MIN_ADMIN_TOKEN} characters (a random token)")

        metrics_token = get("METRICS_TOKEN")
        metrics_public = metrics_token is not None and metrics_token.lower() == METRICS_PUBLIC
        if metrics_token is not None and not metrics_public and len(metrics_token) < MIN_ADMIN_TOKEN:
            problems.append(
                f"METRICS_TOKEN: must be {METRICS_PUBLIC!r} (no token) or at least {MIN_ADMIN_TOKEN} characters "
                "(a random token)"
            )

        smtp_url = get("SMTP_URL")
        if smtp_url is not None:
            try:
                parse_smtp_url(smtp_url)
            except ValueError as exc:
                problems.append(f"SMTP_URL: {exc}")

        email_from = get("EMAIL_FROM")
        if email_from is not None and (problem := email_problem(email_from)):
            problems.append(f"EMAIL_FROM: {problem}")

        if problems:
            raise ConfigError(problems)
        return cls(
            redis_url=Secret(redis_url) if redis_url else None,
            config_path=get("RELAY_CONFIG") or DEFAULT_CONFIG_PATH,
            port=port,
            log_level=log_level,
            smtp_url=Secret(smtp_url) if smtp_url else None,
            email_from=email_from,
            web_concurrency=web_concurrency,
            admin_token=Secret(admin_token) if admin_token else None,
            redis_tls_verify=tls_verify,
            allow_eviction=allow_text in _TRUE,
            worker_presence_ttl=presence_ttl,
            worker_absent_after=absent_after,
            log_format=log_format,
            shutdown_timeout=shutdown_timeout,
            metrics_token=Secret(metrics_token) if metrics_token and not metrics_public else None,
            metrics_public=metrics_public,
        )

    def require_redis_url(self) -> Secret:
        """REDIS_URL, for a process that uses Redis; from_env() requires it unless told otherwise
        (require_redis=False, for the tool commands), so it is missing only by a mistake of ours."""
        if self.redis_url is None:
            raise ConfigError(["REDIS_URL: required, e.g. redis://localhost:6379/0"])
        return self.redis_url


def _redis_py_accepts(url: str) -> bool:
    """True when redis-py can build a client from `url` (its query options are checked too)."""
    try:
        parse_url(url)
    except ValueError:
        return False
    return True


def _ca_file_problem(path: str) -> str | None:
    """What is wrong with REDIS_TLS_VERIFY's CA file, or None: it must be a readable PEM file."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "a directory, not a file"
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if b"-----BEGIN CERTIFICATE-----" not in head:
        return "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    return None


def _one_of(
    name: str, value: str, get: Callable[[str], str | None], allowed: tuple[str, ...], problems: list[str]
) -> str:
    """`value` (variable `name`, normalised) if it is one of `allowed`; else a problem is added."""
    if value not in allowed:
        problems.append(f"{name}: must be one of {', '.join(map(repr, allowed))}, got {get(name)!r}")
    return value


def _seconds_setting(
    name: str, get: Callable[[str], str | None], default: int, low: int, high: int, problems: list[str]
) -> int:
    """Variable `name` as a whole number of seconds within [low, high]; `default` when unset, or
    when invalid (and a problem is added)."""
    value = _seconds(get(name), default, low, high)
    if value is None:
        problems.append(f"{name}: must be a number of seconds ({low}-{high}), got {get(name)!r}")
        return default
    return value


def _seconds(text: str | None, default: int, low: int, high: int) -> int | None:
    """A whole number of seconds within [low, high], the default when unset, None when invalid."""
    if text is None:
        return default
    return int(text) if text.isdigit() and low <= int(text) <= high else None
