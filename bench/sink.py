"""A callback receiver cheap enough not to be what a delivery benchmark measures: asyncio, raw
HTTP/1.1 with keep-alive, answers every POST 200 and counts it; GET /count tells the count.

Two paths behave otherwise, for the isolation benchmark (bench/isolation.py): a path starting
with /slow answers after SLOW_SECONDS (a receiver that processes synchronously), and one starting
with /fail-once answers 503 to the first request of each webhook-id. GET /log returns every POST
as JSON lines [path, webhook-id, unix time of arrival, status].

Run as `python -m bench.sink PORT`; it shares the machine's cores with the workers under test.
"""

import asyncio
import json
import sys
import time

SLOW_SECONDS = 2.0
_count = 0
_log: list[tuple[str, str, float, int]] = []
_seen: set[str] = set()


def _answer(status: int, body: bytes) -> bytes:
    reason = {200: b"OK", 503: b"Service Unavailable"}[status]
    return b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        reason,
        len(body),
        body,
    )


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
            if length:
                await reader.readexactly(length)
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
                if path != "/" and not path.startswith("/sink-"):  # the delivery runs: count only
                    _log.append((path, hook_id, arrived, status))
                writer.write(_answer(status, b"ok" if status == 200 else b"busy"))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
