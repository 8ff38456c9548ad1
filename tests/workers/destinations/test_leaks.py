"""No secret fragment leaks at any log level: a real relay delivering to receivers that echo our
credentials back, at LOG_LEVEL=DEBUG with every logger captured, and then everything it logged
and everything it keeps in Redis (attempts, dead letters) searched for each fragment.
Alertmanager's AssertNotifyLeaksNoSecret is the model, taken to the whole process."""

import logging
import zlib

import pytest

from config.secret import REDACTED
from relay import logs
from relay.domain.samples import sample_session, to_body
from relay.store.keys import DEAD_LETTERS
from tests.conftest import SECRET, signed_post
from tests.peers import Reply, SmtpPeer

SLACK_PATH = "/services/T0LEAKTEAM/B0LEAKBOT/leakSlackT0ken"
CALLBACK_PATH = "/cb/leakPathT0ken?token=leakQueryT0ken"
SMTP_PASSWORD = "smtpPassLEAK"
# Every fragment of each destination's secrets (as its receiver knows them), and the relay's MAC secret.
SLACK_FRAGMENTS = ["T0LEAKTEAM", "B0LEAKBOT", "leakSlackT0ken"]
CALLBACK_FRAGMENTS = [
    "leakPathT0ken",
    "leakQueryT0ken",
    "cbuserLEAK",
    "cbpassLEAK",
    "crmApiKeyLEAK",
    "signingSecretLEAK",
]
FRAGMENTS = [*SLACK_FRAGMENTS, *CALLBACK_FRAGMENTS, SMTP_PASSWORD, SECRET]
CONFIG = """
sources:
  wms: {mac_secrets: ["%(secret)s"]}
destinations:
  ops-slack: {type: slack, webhook_url: "%(http)sSLACK_PATH"}
  ops-email: {type: email, to: [ops@example.com]}
  crm:
    type: http
    url: "CALLBACK_URL"
    signing_secret: signingSecretLEAK
    headers: {X-Api-Key: "Key crmApiKeyLEAK"}
rules:
  - {name: all, match: {}, to: [ops-slack, ops-email, crm]}
"""


@pytest.fixture
def smtp_peer():
    """The relay's SMTP server requires a login: the password is in play (SMTP_URL carries it)."""
    peer = SmtpPeer(credentials=("relay", SMTP_PASSWORD)).start()
    peer.url = f"smtp://relay:{SMTP_PASSWORD}@127.0.0.1:{peer.port}"
    yield peer
    peer.stop()


@pytest.fixture
def debug_logs(caplog):
    """Logging as a worker at LOG_LEVEL=DEBUG sets it up, with every record of every logger captured."""
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    saved = {name: (lg.level, lg.filters[:]) for name, lg in _loggers()}
    logs.configure("DEBUG")
    root.addHandler(caplog.handler)  # configure() replaces the root's handlers, as the worker's start does
    caplog.set_level(logging.DEBUG)
    yield caplog
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        if handler is not caplog.handler:
            handler.close()
    for handler in saved_handlers:
        root.addHandler(handler)
    for name, lg in _loggers():
        level, filters = saved.get(name, (logging.NOTSET, []))
        lg.setLevel(level)
        lg.filters[:] = filters


def _loggers():
    return [(name, lg) for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)]


def everything_in(redis) -> str:
    """Every key and value the relay keeps in Redis, as text (RQ's compressed job data unpacked)."""
    found: list[bytes] = []
    for key in redis.scan_iter():
        kind = redis.type(key).decode()
        found.append(key)
        if kind == "string":
            found.append(redis.get(key))
        elif kind == "hash":
            for name, value in redis.hgetall(key).items():
                found += [name, _unpacked(value) if name == b"data" else value]
        elif kind == "list":
            found += redis.lrange(key, 0, -1)
        elif kind == "set":
            found += redis.smembers(key)
        elif kind == "zset":
            found += redis.zrange(key, 0, -1)
        elif kind == "stream":
            found += [b"%s=%s" % item for _, fields in redis.xrange(key) for item in fields.items()]
    return b"\n".join(found).decode("utf-8", "replace")


def _unpacked(value: bytes) -> bytes:
    try:
        return zlib.decompress(value)
    except zlib.error:
        return value


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # fine on loopback
def test_no_secret_fragment_reaches_any_log_record_attempt_or_dead_letter(relay_factory, http_peer, debug_logs):
    callback_url = http_peer.url.replace("http://", "http://cbuserLEAK:cbpassLEAK@") + CALLBACK_PATH
    relay = relay_factory(CONFIG.replace("SLACK_PATH", SLACK_PATH).replace("CALLBACK_URL", callback_url))
    # Receivers that quote their every credential back, whole and each part on its own, in a
    # permanent refusal.
    slack_echo = " ".join([*SLACK_FRAGMENTS, http_peer.url + SLACK_PATH, SLACK_PATH]).encode()
    http_peer.script(SLACK_PATH, Reply(400, b"invalid_token " + slack_echo))
    callback_echo = " ".join([*CALLBACK_FRAGMENTS, "Key crmApiKeyLEAK", callback_url, CALLBACK_PATH]).encode()
    http_peer.script(CALLBACK_PATH, Reply(404, b"no such hook " + callback_echo))
    relay.smtp.data_reply = f"554 5.7.1 relay:{SMTP_PASSWORD} may not send"

    (event,) = sample_session(("CONSTRAINT_VIOLATION",))
    assert signed_post(relay.client, to_body(event)).status_code == 202
    relay.drain()

    # Everything happened: all three were tried, refused, and dead-lettered with a scrubbed detail.
    assert len(http_peer.to(SLACK_PATH)) == len(http_peer.to(CALLBACK_PATH)) == 1
    assert relay.redis.zcard(DEAD_LETTERS) == 3
    kept = everything_in(relay.redis)
    assert kept.count(REDACTED) >= 3 and "invalid_token" in kept and "no such hook" in kept
    records = debug_logs.records
    assert any(r.name == "workers.delivery" and "dead-lettered" in r.getMessage() for r in records)
    assert any(r.levelno == logging.DEBUG for r in records)  # DEBUG records were captured

    # aiosmtpd's 'mail.log' is the stand-in mail server's log, not the relay's: it quotes its own replies.
    ours = [r for r in records if r.name != "mail.log"]
    assert {r.name.split(".")[0] for r in ours} >= {"workers", "relay"}
    shown = "\n".join(logging.Formatter("%(name)s %(message)s").format(r) for r in ours)
    shown += "\n".join(logs.JsonFormatter().format(r) for r in ours)  # with the fields passed as extra=
    for fragment in FRAGMENTS:
        assert fragment not in shown, [r.getMessage() for r in ours if fragment in r.getMessage()]
        assert fragment not in kept, fragment


def test_urllib3_keeps_quiet_at_debug_and_its_warnings_name_no_path_or_query(debug_logs):
    assert logging.getLogger("urllib3.connectionpool").getEffectiveLevel() == logging.WARNING
    url = "http://cbuserLEAK:cbpassLEAK@127.0.0.1:8080/cb/leakPathT0ken?token=leakQueryT0ken"
    # The warnings urllib3 does log at WARNING quote the URL, or its path, of the request.
    logging.getLogger("urllib3.connection").warning("Failed to parse headers (url=%s): %s", url, "[MissingHeaderBody]")
    logging.getLogger("urllib3.connectionpool").warning(
        "Retrying (%r) after connection broken by '%r': %s", "Retry(total=0)", "reset", "/cb/leakPathT0ken?t=x"
    )
    assert [r.getMessage() for r in debug_logs.records] == [
        "Failed to parse headers (url=http://<redacted>@127.0.0.1:8080/<redacted>): [MissingHeaderBody]",
        "Retrying ('Retry(total=0)') after connection broken by ''reset'': /<redacted>",
    ]


def test_the_log_level_still_applies_to_urllib3_above_warning(debug_logs):
    logs.configure("ERROR")
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger().getEffectiveLevel() == logging.ERROR
