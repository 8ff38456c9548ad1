"""Logging set-up shared by every process: one line per record, level from LOG_LEVEL."""

import logging
import re

import urllib3  # noqa: F401 - imported for its loggers, which exist once it is

from config.secret import REDACTED

# A URL that urllib3 quotes whole ('http://host:port/path?q', userinfo too in a redirect's), or
# the path and query it quotes alone ('"POST /path?q HTTP/1.1"', ': /path').
_URL = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/\s\"'@]*@)?(?P<host>[^/\s\"')]*)(?P<path>/[^\s\"')]*)?"
    r"|(?<=[\s\"'(=:])/[^\s\"')]*",
    re.IGNORECASE,
)


def configure(level: str) -> None:
    """Log to stderr at `level`; secrets never reach a record (config.secret.Secret prints '<redacted>')."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # Why urllib3 is held at WARNING and filtered: its DEBUG lines quote every request's path and
    # query ('"POST /services/T000/B000/XXXX HTTP/1.1" 200'), which are the credential of a Slack
    # webhook and often of a callback; our own log already has a line per attempt, scrubbed. Its
    # few warnings quote URLs too (a receiver's malformed headers), so those are redacted rather
    # than lost: they are about the connection, which the host and port still name.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name == "urllib3" or name.startswith("urllib3.")):
            # A logger's filter sees the records of that logger only, not its children's: each one.
            # (One that urllib3 creates later still inherits the level.)
            logger.addFilter(redact_urls)


def redact_urls(record: logging.LogRecord) -> bool:
    """Rewrite `record`'s message with every URL path, query and userinfo in it redacted."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        message = str(record.msg)
    message = _URL.sub(_redacted_url, message)
    record.msg, record.args = message, None
    return True


def _redacted_url(match: re.Match[str]) -> str:
    if not match["scheme"]:
        return "/" + REDACTED
    userinfo = REDACTED + "@" if match["userinfo"] else ""
    return match["scheme"] + userinfo + match["host"] + ("/" + REDACTED if match["path"] else "")
