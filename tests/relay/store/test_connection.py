"""connect() with REDIS_TLS_VERIFY, and explain(): the sentence for each way a Redis connection
fails, against real redis-servers (TLS with certificates made here, a password, a closed port)."""

import pytest
from redis.exceptions import RedisError

from config.secret import Secret
from devtools.local_redis import free_port
from relay.store.connection import connect, explain
from tests.redis_servers import Server

PASSWORD = "s3cret-pass-word"


@pytest.fixture(scope="module")
def plain_server():
    with Server() as server:
        yield server


@pytest.fixture(scope="module")
def password_server():
    with Server("--requirepass", PASSWORD) as server:
        yield server


def failure(url: str, tls_verify: str = "required") -> str:
    """explain() of what pinging `url` raises."""
    redis = connect(Secret(url), tls_verify)
    with pytest.raises(RedisError) as exc:
        redis.ping()
    return explain(exc.value, redis)


VERIFY_FIX = (
    "set REDIS_TLS_VERIFY to the path of the CA file that signed the server's certificate, "
    "or to none for a Redis with a self-signed certificate (Heroku Redis)"
)


def test_tls_verified_with_the_test_ca(tls_server, certs):
    assert connect(Secret(tls_server.url("rediss")), str(certs.ca)).ping()


def test_tls_verified_with_the_system_cas_fails_and_says_how_to_fix_it(tls_server):
    assert failure(tls_server.url("rediss")) == (
        f"TLS certificate verification failed for redis at 127.0.0.1:{tls_server.port} "
        "(self-signed certificate in certificate chain; checked against the system's CA certificates): " + VERIFY_FIX
    )


def test_tls_without_verification(tls_server):
    assert connect(Secret(tls_server.url("rediss")), "none").ping()


def test_tls_with_the_wrong_ca_fails_and_names_it(tls_server, certs):
    assert failure(tls_server.url("rediss"), str(certs.other_ca)) == (
        f"TLS certificate verification failed for redis at 127.0.0.1:{tls_server.port} "
        f"(self-signed certificate in certificate chain; checked against the CA file {certs.other_ca}): " + VERIFY_FIX
    )


def test_plain_url_to_a_tls_port(tls_server):
    assert failure(tls_server.url("redis")) == (
        f"redis at 127.0.0.1:{tls_server.port} expects TLS: REDIS_URL must start with rediss://, not redis://"
    )


def test_tls_url_to_a_plain_port(plain_server):
    assert failure(plain_server.url("rediss"), "none") == (
        f"redis at 127.0.0.1:{plain_server.port} does not speak TLS: REDIS_URL must start with redis://, not rediss://"
    )


def test_nothing_listening():
    port = free_port()
    assert failure(f"redis://:{PASSWORD}@127.0.0.1:{port}/0") == (
        f"redis at 127.0.0.1:{port} is unreachable (connection refused)"
    )


def test_a_host_name_that_does_not_resolve():
    assert failure("redis://redis.invalid:6379/0") == (
        "redis at redis.invalid:6379 is unreachable (cannot resolve the host name 'redis.invalid')"
    )


def test_wrong_password_never_shows_it(password_server):
    message = failure(password_server.url(password="not-the-" + PASSWORD))
    assert message == (
        f"redis at 127.0.0.1:{password_server.port} refused the password (AUTH failed: invalid username-password "
        "pair or user is disabled): check the user and password in REDIS_URL"
    )


def test_missing_password(password_server):
    assert failure(password_server.url()) == (
        f"redis at 127.0.0.1:{password_server.port} requires a password, and REDIS_URL has none "
        f"(redis://:<password>@127.0.0.1:{password_server.port})"
    )


def test_the_right_password(password_server):
    assert connect(Secret(password_server.url(password=PASSWORD))).ping()


def test_tls_verify_is_ignored_for_a_plain_url(plain_server, certs):
    assert connect(Secret(plain_server.url()), str(certs.other_ca)).ping()
