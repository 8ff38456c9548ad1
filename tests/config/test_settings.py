"""Settings.from_env: exact problems per variable, defaults, and load_config's check of them against the config."""

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.loader import load, load_config
from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

REDIS = {"REDIS_URL": "redis://localhost:6379/0"}


@pytest.mark.parametrize(
    "environ, problem",
    [
        ({}, "REDIS_URL: required, e.g. redis://localhost:6379/0"),
        ({"REDIS_URL": "   "}, "REDIS_URL: required, e.g. redis://localhost:6379/0"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL: must be a redis://, rediss:// or unix:// URL"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL: must be a redis://, rediss:// or unix:// URL"),
        ({"REDIS_URL": "unix://"}, "REDIS_URL: must be a redis://, rediss:// or unix:// URL"),
        # redis-py would refuse it when the web process starts: refuse it here, at the release check.
        (
            {"REDIS_URL": "redis://h:6379/0?socket_timeout=abc"},
            "REDIS_URL: must be a redis://, rediss:// or unix:// URL",
        ),
        ({**REDIS, "SMTP_URL": "smtp://"}, "SMTP_URL: must be an smtp:// or smtps:// URL with a host"),
        ({**REDIS, "WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY: must be a number of processes (1-64), got 'abc'"),
        ({**REDIS, "WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY: must be a number of processes (1-64), got '0'"),
        ({**REDIS, "PORT": "http"}, "PORT: must be a TCP port number (1-65535), got 'http'"),
        ({**REDIS, "PORT": "0"}, "PORT: must be a TCP port number (1-65535), got '0'"),
        ({**REDIS, "PORT": "65536"}, "PORT: must be a TCP port number (1-65535), got '65536'"),
        ({**REDIS, "PORT": "-1"}, "PORT: must be a TCP port number (1-65535), got '-1'"),
        (
            {**REDIS, "LOG_LEVEL": "verbose"},
            "LOG_LEVEL: must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', got 'verbose'",
        ),
        ({**REDIS, "LOG_FORMAT": "logfmt"}, "LOG_FORMAT: must be one of 'text', 'json', got 'logfmt'"),
        ({**REDIS, "SHUTDOWN_TIMEOUT": "25s"}, "SHUTDOWN_TIMEOUT: must be a number of seconds (0-3600), got '25s'"),
        ({**REDIS, "SHUTDOWN_TIMEOUT": "3601"}, "SHUTDOWN_TIMEOUT: must be a number of seconds (0-3600), got '3601'"),
        ({**REDIS, "SMTP_URL": "mail.example.com:587"}, "SMTP_URL: must be an smtp:// or smtps:// URL with a host"),
        (
            {**REDIS, "EMAIL_FROM": "Relay <relay@example.com>"},
            "EMAIL_FROM: must be an email address like ops@example.com, got 'Relay <relay@example.com>'",
        ),
    ],
)
def test_invalid_variable(environ, problem):
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(environ)
    assert exc.value.problems == [problem]


@pytest.mark.parametrize(
    "environ",
    [
        {"REDIS_URL": "http://:hunter2@redis.example.com:6379/0"},
        {"REDIS_URL": "redis//:hunter2@redis.example.com:6379/0"},
        {**REDIS, "SMTP_URL": "smtpx://relay:hunter2@mail.example.com:587"},
    ],
)
def test_password_in_a_bad_url_is_not_echoed(environ):
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(environ)
    assert "hunter2" not in str(exc.value)


def test_every_bad_variable_is_reported_together():
    environ = {"REDIS_URL": "http://x", "PORT": "x", "LOG_LEVEL": "loud", "SMTP_URL": "mail", "EMAIL_FROM": "relay"}
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(environ)
    assert exc.value.problems == [
        "REDIS_URL: must be a redis://, rediss:// or unix:// URL",
        "PORT: must be a TCP port number (1-65535), got 'x'",
        "LOG_LEVEL: must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', got 'loud'",
        "SMTP_URL: must be an smtp:// or smtps:// URL with a host",
        "EMAIL_FROM: must be an email address like ops@example.com, got 'relay'",
    ]


def test_defaults():
    settings = Settings.from_env(REDIS)
    assert settings.redis_url.reveal() == "redis://localhost:6379/0"
    assert (settings.config_path, settings.port, settings.log_level) == (
        str(ROOT / "config" / "relay.yaml"),
        8000,
        "INFO",
    )
    assert (settings.smtp_url, settings.email_from) == (None, None)
    assert (settings.log_format, settings.shutdown_timeout) == ("text", 25)


def test_blank_variables_count_as_unset():
    settings = Settings.from_env({**REDIS, "PORT": " ", "LOG_LEVEL": "", "SMTP_URL": " ", "EMAIL_FROM": ""})
    assert (settings.port, settings.log_level, settings.smtp_url, settings.email_from) == (8000, "INFO", None, None)


def test_valid_values_are_read():
    settings = Settings.from_env(
        {
            "REDIS_URL": "rediss://:pw@redis.example.com:6380/1",
            "RELAY_CONFIG": "/etc/relay.yaml",
            "PORT": "8080",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "JSON",
            "SHUTDOWN_TIMEOUT": "0",
            "SMTP_URL": "smtps://relay:pw@mail.example.com:465",
            "EMAIL_FROM": "relay@example.com",
        }
    )
    assert (settings.log_format, settings.shutdown_timeout) == ("json", 0)
    assert settings.redis_url.reveal() == "rediss://:pw@redis.example.com:6380/1"
    assert (settings.config_path, settings.port, settings.log_level) == ("/etc/relay.yaml", 8080, "DEBUG")
    assert settings.smtp_url.reveal() == "smtps://relay:pw@mail.example.com:465"
    assert settings.email_from == "relay@example.com"


@pytest.mark.parametrize("redis_url", ["redis://localhost:6379/0", "rediss://r.example.com", "unix:///run/redis.sock"])
def test_redis_url_schemes(redis_url):
    assert Settings.from_env({"REDIS_URL": redis_url}).redis_url.reveal() == redis_url


def test_redis_is_optional_when_not_required():
    assert Settings.from_env({}, require_redis=False).redis_url is None


def test_bad_redis_url_is_reported_even_when_not_required():
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({"REDIS_URL": "localhost"}, require_redis=False)
    assert exc.value.problems == ["REDIS_URL: must be a redis://, rediss:// or unix:// URL"]


def test_repr_hides_the_redis_and_smtp_passwords():
    settings = Settings.from_env({"REDIS_URL": "redis://:hunter2@r:6379", "SMTP_URL": "smtp://u:hunter2@mail"})
    assert "hunter2" not in repr(settings)


EMAIL_CONFIG = """\
sources: {wms: {mac_secrets: [test-secret]}}
destinations:
  ops-email: {type: email, to: [ops@example.com]}
"""
SMTP = {"SMTP_URL": "smtp://mail.example.com:587"}
FROM = {"EMAIL_FROM": "relay@example.com"}


@pytest.mark.parametrize(
    "environ, missing",
    [({}, "SMTP_URL and EMAIL_FROM"), (SMTP, "EMAIL_FROM"), (FROM, "SMTP_URL")],
)
def test_email_destination_needs_smtp_settings(tmp_path, environ, missing):
    path = tmp_path / "relay.yaml"
    path.write_text(EMAIL_CONFIG, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(str(path), {}, Settings.from_env({**REDIS, **environ}))
    assert exc.value.problems == [f"{path}: destinations.ops-email: email destinations need {missing} set"]


def test_email_destination_loads_with_smtp_settings(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text(EMAIL_CONFIG, encoding="utf-8")
    loaded = load_config(str(path), {}, Settings.from_env({**REDIS, **SMTP, **FROM}))
    assert loaded.destinations["ops-email"].to == ["ops@example.com"]


def test_missing_smtp_settings_are_reported_with_the_other_problems(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text(EMAIL_CONFIG + "rules:\n  - {name: r, to: [pager]}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(str(path), {}, Settings.from_env(REDIS))
    assert exc.value.problems == [
        f"{path}: rules[0].to[0]: undefined destination 'pager' (defined: 'ops-email')",
        f"{path}: destinations.ops-email: email destinations need SMTP_URL and EMAIL_FROM set",
    ]


@pytest.mark.parametrize(
    ("config_text", "file_problem"),
    [
        ("sources: {}\n", "sources: must not be empty"),
        # What email destinations need is known even while the environment has problems.
        (EMAIL_CONFIG, "destinations.ops-email: email destinations need SMTP_URL and EMAIL_FROM set"),
    ],
)
def test_load_reports_environment_and_file_problems_together(tmp_path, config_text, file_problem):
    path = tmp_path / "relay.yaml"
    path.write_text(config_text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load({"RELAY_CONFIG": str(path), "PORT": "0"})
    assert exc.value.problems == [
        "REDIS_URL: required, e.g. redis://localhost:6379/0",
        "PORT: must be a TCP port number (1-65535), got '0'",
        f"{path}: {file_problem}",
    ]
