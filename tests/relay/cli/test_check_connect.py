"""`relay check-config --connect` (the release phase) against real redis-servers: what it says, on
which stream, and its exit code, for each way a Redis can be unusable; and the sentence every
other command prints when Redis fails."""

import pytest
from click.testing import CliRunner
from redis import Redis

from devtools.local_redis import free_port
from relay.cli.main import main
from relay.store.preflight import eviction_message
from tests.conftest import CONFIG_ENV
from tests.redis_servers import Server

PASSWORD = "release-check-pass"


@pytest.fixture
def env(config_path):
    return {"RELAY_CONFIG": str(config_path), **CONFIG_ENV}


def check(env, *args):
    return CliRunner().invoke(main, ["check-config", "--connect", *args], env=env, catch_exceptions=False)


def version_of(url: str) -> str:
    with Redis.from_url(url) as client:
        return client.info("server")["redis_version"]


def config_ok(config_path) -> str:
    return f"{config_path}: OK (1 source(s), 0 destination(s), 0 rule(s))\n"


def test_a_good_redis(env, config_path, redis_server):
    result = check(dict(env, REDIS_URL=redis_server.url))
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == config_ok(config_path) + (
        f"redis at 127.0.0.1:{redis_server.port}: OK (Redis {version_of(redis_server.url)}, "
        "maxmemory-policy noeviction)\n"
    )


def test_without_connect_nothing_is_contacted(env, config_path):
    result = CliRunner().invoke(main, ["check-config"], env=dict(env, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    assert (result.exit_code, result.stdout) == (0, config_ok(config_path))


def test_unreachable(env, config_path):
    port = free_port()
    result = check(dict(env, REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0"))
    assert (result.exit_code, result.stdout) == (3, config_ok(config_path))
    assert result.stderr == f"error: redis at 127.0.0.1:{port} is unreachable (connection refused)\n"


def test_wrong_password(env):
    with Server("--requirepass", PASSWORD) as server:
        result = check(dict(env, REDIS_URL=server.url(password="wrong-" + PASSWORD)))
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: redis at 127.0.0.1:{server.port} refused the password (AUTH failed: invalid username-password "
        "pair or user is disabled): check the user and password in REDIS_URL\n"
    )


def test_plain_url_to_a_tls_port(env, tls_server):
    result = check(dict(env, REDIS_URL=tls_server.url("redis")))
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: redis at 127.0.0.1:{tls_server.port} expects TLS: REDIS_URL must start with rediss://, not redis://\n"
    )


def test_tls_url_to_a_plain_port(env, redis_server):
    result = check(dict(env, REDIS_URL=redis_server.url.replace("redis://", "rediss://"), REDIS_TLS_VERIFY="none"))
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: redis at 127.0.0.1:{redis_server.port} does not speak TLS: REDIS_URL must start with redis://, "
        "not rediss://\n"
    )


def test_certificate_verification_failed_names_redis_tls_verify(env, tls_server, certs):
    result = check(dict(env, REDIS_URL=tls_server.url("rediss"), REDIS_TLS_VERIFY=str(certs.other_ca)))
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: TLS certificate verification failed for redis at 127.0.0.1:{tls_server.port} "
        f"(self-signed certificate in certificate chain; checked against the CA file {certs.other_ca}): "
        "set REDIS_TLS_VERIFY to the path of the CA file that signed the server's certificate, "
        "or to none for a Redis with a self-signed certificate (Heroku Redis)\n"
    )


@pytest.mark.parametrize(
    "verify, said",
    [("ca", "TLS, certificate verified with {ca}"), ("none", "TLS, certificate not verified (REDIS_TLS_VERIFY=none)")],
)
def test_tls_ok(env, config_path, tls_server, certs, verify, said):
    value = str(certs.ca) if verify == "ca" else verify
    result = check(dict(env, REDIS_URL=tls_server.url("rediss"), REDIS_TLS_VERIFY=value))
    assert (result.exit_code, result.stderr) == (0, "")
    version = version_of(tls_server.url("rediss") + "?ssl_cert_reqs=none")
    assert result.stdout == config_ok(config_path) + (
        f"redis at 127.0.0.1:{tls_server.port}: OK (Redis {version}, {said.format(ca=certs.ca)}, "
        "maxmemory-policy noeviction)\n"
    )


def test_an_evicting_policy_is_refused_unless_allowed(env, config_path):
    with Server() as server:
        with Redis.from_url(server.url()) as client:
            client.config_set("maxmemory-policy", "allkeys-lru")
        refused = check(dict(env, REDIS_URL=server.url()))
        allowed = check(dict(env, REDIS_URL=server.url(), RELAY_ALLOW_EVICTION="1"))
    message = eviction_message(f"127.0.0.1:{server.port}", "allkeys-lru")
    assert message == (
        f"redis at 127.0.0.1:{server.port} evicts keys when its memory is full (maxmemory-policy allkeys-lru): "
        "an evicted key is a lost event, dedup mark or delivery state. Set maxmemory-policy to noeviction: "
        "Heroku: heroku redis:maxmemory <addon> --policy noeviction; "
        'Render Key Value: set its "Maxmemory Policy" to noeviction in its settings; '
        "Fly or Upstash: turn eviction off for the database (fly redis update <name>, or the Upstash console); "
        "self-hosted: maxmemory-policy noeviction in redis.conf (or CONFIG SET maxmemory-policy noeviction). "
        "RELAY_ALLOW_EVICTION=1 accepts the risk"
    )
    assert (refused.exit_code, refused.stdout, refused.stderr) == (3, config_ok(config_path), f"error: {message}\n")
    assert (allowed.exit_code, allowed.stderr) == (0, f"warning: {message}\n")
    assert allowed.stdout.endswith("maxmemory-policy allkeys-lru)\n")


def test_what_the_server_does_not_let_us_check_is_a_note_not_a_failure(env, config_path):
    with Server() as server:
        with Redis.from_url(server.url()) as client:
            client.acl_setuser("relay", enabled=True, passwords=["+relay-pass"], keys="*", channels="*",
                               commands=["+@all", "-info", "-config"])  # fmt: skip
        result = check(dict(env, REDIS_URL=server.url(password="relay-pass", user="relay")))
    assert result.exit_code == 0
    where = f"127.0.0.1:{server.port}"
    assert result.stderr == (
        f"note: could not check the version of redis at {where} (INFO: this user has no permissions to run the "
        "'info' command); the relay needs 6.2 or newer\n"
        f"note: could not check the maxmemory-policy of redis at {where} (CONFIG GET is not allowed: this user has "
        "no permissions to run the 'config|get' command); make sure it is noeviction\n"
    )
    assert result.stdout == config_ok(config_path) + (
        f"redis at {where}: OK (version not checked, maxmemory-policy not checked)\n"
    )


def test_the_policy_is_read_with_config_get_when_info_is_not_allowed(env):
    with Server() as server:
        with Redis.from_url(server.url()) as client:
            client.config_set("maxmemory-policy", "volatile-lru")
            client.acl_setuser("relay", enabled=True, passwords=["+relay-pass"], keys="*", channels="*",
                               commands=["+@all", "-info"])  # fmt: skip
        result = check(dict(env, REDIS_URL=server.url(password="relay-pass", user="relay")))
    where = f"127.0.0.1:{server.port}"
    assert result.exit_code == 3
    assert result.stderr == (
        f"note: could not check the version of redis at {where} (INFO: this user has no permissions to run the "
        "'info' command); the relay needs 6.2 or newer\n"
        f"error: {eviction_message(where, 'volatile-lru')}\n"
    )


def test_a_redis_older_than_6_2_is_refused(env, redis_server, monkeypatch):
    real_info = Redis.info
    monkeypatch.setattr(Redis, "info", lambda self, *a, **k: {**real_info(self, *a, **k), "redis_version": "6.0.16"})
    result = check(dict(env, REDIS_URL=redis_server.url))
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: redis at 127.0.0.1:{redis_server.port} is Redis 6.0.16; the relay needs 6.2 or newer (XAUTOCLAIM "
        "on its inbox stream): upgrade the Redis server or plan\n"
    )


def test_other_commands_say_what_is_wrong_with_redis(env):
    port = free_port()
    result = CliRunner().invoke(
        main, ["destinations"], env=dict(env, REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    )
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: redis at 127.0.0.1:{port} is unreachable (connection refused)\n",
    )


def test_config_problems_exit_1_before_redis_is_contacted(env, config_path):
    config_path.write_text("sources: {}\n")
    port = free_port()
    result = check(dict(env, REDIS_URL=f"redis://127.0.0.1:{port}/0"))
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"{config_path}: sources: must not be empty\n")
