"""Logging set-up shared by every process: one line per record, as text or JSON (LOG_FORMAT), at
LOG_LEVEL, gunicorn's error and access logs included (GunicornLogger).

Why one line per record: a log drain (Heroku's Logplex, Fly's NATS stream, a syslog forwarder)
cuts at newlines, so a traceback written over twenty lines arrives as twenty records, out of order
with other processes' lines. In JSON the traceback is a field of its record; in text its lines are
joined with ' | '. A newline in a message (a receiver's reply, a request's field) is folded the
same way, so no line can pass for a record of its own.

The JSON fields: time (UTC, ISO 8601), level, logger, message, then what the call passed as
`extra=` (event_id, source, destination, attempt, outcome, status, duration_ms, ...), then
exception and traceback when there is one. The text format is the message alone: the call sites
write those values into their message too.
"""

import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from types import TracebackType
from typing import TYPE_CHECKING, Any

import urllib3  # noqa: F401 - imported for its loggers, which exist once it is

from config.secret import REDACTED
from config.settings import LOG_FORMATS, LOG_LEVELS

TEXT, JSON = LOG_FORMATS  # ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NEWLINES = re.compile(r"\r\n|\r|\n")
# What every record has; anything else on a record was passed as extra= and becomes a JSON field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# A URL that urllib3 quotes whole ('http://host:port/path?q', userinfo too in a redirect's), or
# the path and query it quotes alone ('"POST /path?q HTTP/1.1"', ': /path').
_URL = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/\s\"'@]*@)?(?P<host>[^/\s\"')]*)(?P<path>/[^\s\"')]*)?"
    r"|(?<=[\s\"'(=:])/[^\s\"')]*",
    re.IGNORECASE,
)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, a traceback and any newline folded into the line with ' | '."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return _NEWLINES.sub(" | ", super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record (ASCII only: any stream can carry it), its extra= values as fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in fields:
                fields[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            fields["exception"] = f"{error.__class__.__name__}: {error}"
            fields["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["traceback"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return json.dumps(fields, default=str, separators=(",", ":"))


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for a LOG_FORMAT value."""
    return JsonFormatter() if fmt == JSON else TextFormatter()


def configure(level: str, fmt: str | None = None) -> None:
    """Log to stderr at `level` in format `fmt` (LOG_FORMAT; None: as the environment says, which
    the process's settings have checked); secrets never reach a record (config.secret.Secret
    prints '<redacted>')."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt or from_environment(os.environ)[1]))
    logging.basicConfig(level=level, handlers=[handler], force=True)
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


def from_environment(environ: Mapping[str, str]) -> tuple[str | None, str]:
    """(LOG_LEVEL, LOG_FORMAT) for a process that logs before it reads its settings (gunicorn's
    master): LOG_LEVEL None when unset or invalid, LOG_FORMAT text then. An invalid value is
    reported with the other settings' problems when they are read."""
    level = environ.get("LOG_LEVEL", "").strip().upper()
    fmt = environ.get("LOG_FORMAT", "").strip().lower()
    return (level if level in LOG_LEVELS else None), (fmt if fmt in LOG_FORMATS else TEXT)


def route_uncaught() -> None:
    """Log an exception nothing caught, in any thread, as one record (Python's own hooks print
    the traceback over many lines), and a warning as one record too: for a process's entry
    point, since it replaces process-wide hooks."""
    log = logging.getLogger("relay.uncaught")

    def on_main(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, tb)
            return
        log.critical("uncaught exception; exiting", exc_info=(kind, error, tb))

    def on_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        # Worded as Python's own hook starts ("Exception in thread <name>:"), which bench/chaos.py counts.
        log.error(
            "Exception in thread %s: %s: %s; the thread ended",
            args.thread.name if args.thread is not None else "?",
            args.exc_type.__name__,
            args.exc_value,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = on_main
    threading.excepthook = on_thread
    logging.captureWarnings(True)  # a warning is otherwise printed over two lines, source quoted


def demote_to_debug(logger_name: str, templates: Iterable[str]) -> None:
    """Log the records of `logger_name` whose message template is one of `templates` at DEBUG,
    not at the level the library chose: routine lines that would fill a log buffer while idle."""
    logging.getLogger(logger_name).addFilter(_Demote(logging.getLogger(logger_name), frozenset(templates)))


class _Demote(logging.Filter):
    def __init__(self, logger: logging.Logger, templates: frozenset[str]):
        super().__init__()
        self.logger = logger
        self.templates = templates

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg in self.templates) or record.levelno <= logging.DEBUG:
            return True
        if not self.logger.isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


def printable(text: str) -> str:
    """`text` with anything unprintable (a newline, a control or formatting character) written as
    its escape: a path or name a client chose cannot pose as a line of its own, or rearrange one."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def rejected(
    logger: logging.Logger,
    status: int,
    error: str,
    reason: str,
    *,
    method: str,
    path: str,
    remote: str | None,
    source: str | None = None,
) -> None:
    """One line for a request answered with a 4xx: at INFO, and a signature failure (401) at
    WARNING. `reason` is what the log may say (for a 401, the precise cause the client is not told)."""
    logger.log(
        logging.WARNING if status == 401 else logging.INFO,
        "rejected %s %s from %s: %d %s: %s",
        method,
        printable(path),
        remote or "-",
        status,
        error,
        reason,
        extra={
            "outcome": "rejected",
            "status": status,
            "error": error,
            "reason": reason,
            "method": method,
            "path": path,
            "remote_addr": remote,
            "source": source,
        },
    )


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


if not TYPE_CHECKING:  # a module __getattr__ would let mypy accept any name of this module

    def __getattr__(name: str) -> Any:
        # gunicorn loads its logger class by name (--logger-class relay.logs.GunicornLogger); made
        # on first use, so that the worker and the `relay` command never import gunicorn.
        if name == "GunicornLogger":
            return _gunicorn_logger()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _gunicorn_logger() -> type:
    from gunicorn.glogging import Logger  # type: ignore[import-untyped]

    class GunicornLogger(Logger):
        """gunicorn's logger, its error log (gunicorn.error) and access log (gunicorn.access, when
        turned on with --access-logfile) written by the relay's formatter at LOG_LEVEL."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            level, fmt = from_environment(os.environ)
            # The app's own loggers too, from the start: with --preload, create_app() configures
            # them again once the settings are read, the same way.
            configure(level or "INFO", fmt)
            route_uncaught()
            if level is not None:
                self.error_log.setLevel(level)
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(formatter(fmt))

        def access(self, resp: Any, req: Any, environ: dict, request_time: Any) -> None:
            """gunicorn's access line, with the request's method, path, status and duration as fields."""
            if not self.access_log_enabled:
                return
            atoms = self.atoms(resp, req, environ, request_time)
            status = str(atoms["s"])
            extra = {
                "method": atoms["m"],
                "path": atoms["U"],
                "status": int(status) if status.isdigit() else status,
                "duration_ms": round(request_time.total_seconds() * 1000, 1),
                "remote_addr": atoms["h"],
            }
            try:
                self.access_log.info(self.cfg.access_log_format, self.atoms_wrapper_class(atoms), extra=extra)
            except Exception:  # noqa: BLE001 - gunicorn's own way: a bad access format must not fail the request
                self.error(traceback.format_exc())

    GunicornLogger.__qualname__ = "GunicornLogger"  # as gunicorn names it: relay.logs.GunicornLogger
    return GunicornLogger
