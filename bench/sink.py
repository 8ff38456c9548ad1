"""A callback receiver cheap enough not to be what a delivery benchmark measures: asyncio, raw
HTTP/1.1 with keep-alive, answers every POST 200 and counts it; GET /count tells the count.

Two paths behave otherwise, for the isolation benchmark (bench/isolation.py): a path starting
with /slow answers after SLOW_SECONDS (a receiver that processes synchronously), and one starting
with /fail-once answers 503 to the first request of each webhook-id. GET /log returns every POST
as JSON lines [path, webhook-id, unix time of arrival, status].

For the chaos soak (bench/chaos.py), which stops and restarts a receiver, `--journal FILE`
appends each POST to FILE as that same JSON line as soon as it has arrived, before it is answered:
what a receiver got survives its own restart, and a request it got but could not answer counts as
received (its resend is then a duplicate, as a real receiver would see it). The id is the
webhook-id header; a Slack-shaped body has none, and its id is the event id its context line
names. `--delay S` answers every POST S seconds late (a receiver doing a little work);
`--smtp-port P` also runs an SMTP server (aiosmtpd) whose mails are journalled with the path
"smtp" and the event id their text names.

Run as `python -m bench.sink PORT [--journal FILE] [--delay S] [--smtp-port P]`; it shares the
machine's cores with the workers under test.
"""

import argparse
import asyncio
import json
import os
import re
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

SLOW_SECONDS = 2.0
_count = 0
_log: list[tuple[str, str, float, int]] = []
_seen: set[str] = set()
_journal: int | None = None  # a file descriptor opened with O_APPEND: one write per line
_delay = 0.0
# Slack messages name their event in the context block: "event `wms:<session>:<sequence>`".
_SLACK_EVENT = re.compile(rb"event `([^`]+)`")
_MAIL_EVENT = re.compile(r"^event id: (\S+)", re.M)


def _answer(status: int, body: bytes) -> bytes:
    reason = {200: b"OK", 503: b"Service Unavailable"}[status]
    return b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        reason,
        len(body),
        body,
    )


def _record(path: str, hook_id: str, arrived: float, status: int) -> None:
    entry = (path, hook_id, arrived, status)
    if _journal is not None:
        os.write(_journal, json.dumps(entry).encode() + b"\n")
    else:
        _log.append(entry)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global _count  # noqa: PLW0603 - one counter for the whole sink process
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived = time.time()
            lines = head.split(b"\r\n")
            path = lines[0].split(b" ")[1].decode() if len(lines[0].split(b" ")) > 1 else "/"
            length, hook_id = 0, ""
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"webhook-id":
                    hook_id = value.strip().decode()
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET /count"):
                writer.write(_answer(200, str(_count).encode()))
            elif head.startswith(b"GET /log"):
                writer.write(_answer(200, "\n".join(json.dumps(entry) for entry in _log).encode()))
            else:
                status = 200
                if path.startswith("/slow"):
                    await asyncio.sleep(SLOW_SECONDS)
                elif path.startswith("/fail-once") and hook_id not in _seen:
                    _seen.add(hook_id)
                    status = 503
                _count += 1
                if not hook_id and _journal is not None:
                    found = _SLACK_EVENT.search(body)
                    hook_id = found.group(1).decode() if found else ""
                if path != "/" and not path.startswith("/sink-"):  # the delivery runs: count only
                    _record(path, hook_id, arrived, status)
                if _delay:
                    await asyncio.sleep(_delay)
                writer.write(_answer(status, b"ok" if status == 200 else b"busy"))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class _Mailbox:
    """aiosmtpd's handler: journal each mail by the event id its text names."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        arrived = time.time()
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        text = message.get_body(("plain",)) if isinstance(message, EmailMessage) else None
        found = _MAIL_EVENT.search(text.get_content()) if text is not None else None
        _record("smtp", found.group(1) if found else "", arrived, 250)
        return "250 Message accepted for delivery"


async def main(port: int, smtp_port: int | None = None) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=512)
    if smtp_port is not None:
        from aiosmtpd.smtp import SMTP  # only the soak's receiver needs it

        mailbox = _Mailbox()
        await asyncio.get_running_loop().create_server(
            lambda: SMTP(mailbox, hostname="127.0.0.1"), "127.0.0.1", smtp_port, backlog=512
        )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--journal", help="append every POST (and mail) to this file as a JSON line")
    parser.add_argument("--delay", type=float, default=0.0, help="answer every POST this many seconds late")
    parser.add_argument("--smtp-port", type=int, help="also receive mail on this port")
    args = parser.parse_args()
    if args.journal:
        _journal = os.open(args.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _delay = args.delay
    asyncio.run(main(args.port, args.smtp_port))
