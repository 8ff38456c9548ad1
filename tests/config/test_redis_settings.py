"""REDIS_TLS_VERIFY, RELAY_ALLOW_EVICTION, WORKER_PRESENCE_TTL and WORKER_ABSENT_AFTER: defaults,
accepted values, and the exact problem for each bad one."""

import pytest

from config.errors import ConfigError
from config.settings import Settings

REDIS = {"REDIS_URL": "rediss://:pw@redis.example.com:6380/0"}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_defaults():
    settings = Settings.from_env(REDIS)
    assert (settings.redis_tls_verify, settings.allow_eviction) == ("required", False)
    assert (settings.worker_presence_ttl, settings.worker_absent_after) == (15, 60)


@pytest.mark.parametrize("value, expected", [("required", "required"), ("NONE", "none"), (" none ", "none")])
def test_tls_verify_keywords(value, expected):
    assert Settings.from_env({**REDIS, "REDIS_TLS_VERIFY": value}).redis_tls_verify == expected


def test_tls_verify_takes_a_ca_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    assert Settings.from_env({**REDIS, "REDIS_TLS_VERIFY": str(ca)}).redis_tls_verify == str(ca)


def test_tls_verify_refuses_what_is_no_ca_file(tmp_path):
    not_pem = tmp_path / "key.txt"
    not_pem.write_text("hello")
    environ = {**REDIS, "REDIS_TLS_VERIFY": str(tmp_path / "missing.pem")}
    cases = {str(tmp_path / "missing.pem"): "no such file", str(tmp_path): "a directory, not a file"}
    cases[str(not_pem)] = "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    for value, why in cases.items():
        environ["REDIS_TLS_VERIFY"] = value
        with pytest.raises(ConfigError) as exc:
            Settings.from_env(environ)
        assert exc.value.problems == [
            (
                f"REDIS_TLS_VERIFY: must be 'required', 'none' or the path of a CA certificate file (PEM), "
                f"got {value!r}: {why}"
            )
        ]


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)])
def test_allow_eviction(value, expected):
    assert Settings.from_env({**REDIS, "RELAY_ALLOW_EVICTION": value}).allow_eviction is expected


@pytest.mark.parametrize(
    "environ, problem",
    [
        ({"RELAY_ALLOW_EVICTION": "maybe"}, "RELAY_ALLOW_EVICTION: must be 1 or 0 (or true, false), got 'maybe'"),
        ({"WORKER_PRESENCE_TTL": "0"}, "WORKER_PRESENCE_TTL: must be a number of seconds (1-3600), got '0'"),
        ({"WORKER_PRESENCE_TTL": "5s"}, "WORKER_PRESENCE_TTL: must be a number of seconds (1-3600), got '5s'"),
        ({"WORKER_ABSENT_AFTER": "86401"}, "WORKER_ABSENT_AFTER: must be a number of seconds (1-86400), got '86401'"),
    ],
)
def test_bad_values(environ, problem):
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({**REDIS, **environ})
    assert exc.value.problems == [problem]


def test_presence_settings_are_read():
    settings = Settings.from_env({**REDIS, "WORKER_PRESENCE_TTL": "2", "WORKER_ABSENT_AFTER": "45"})
    assert (settings.worker_presence_ttl, settings.worker_absent_after) == (2, 45)
