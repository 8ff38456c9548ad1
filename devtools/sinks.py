"""Local stand-ins for Slack, a callback receiver and an SMTP server, for `./dev up` only.

They print what the relay sends them, so a developer can see a Slack-shaped request, a signed
callback and a mail without any real account. Slack's answer 'ok' is what they reply.
"""

import json
import sys
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # aiosmtpd is a dev dependency, imported where used
    from aiosmtpd.smtp import SMTP, Envelope, Session

# One block at a time on stdout: a request's lines, or one line of ./dev up's processes.
print_lock = threading.Lock()


def _say(lines: list[str]) -> None:
    with print_lock:
        print("\n".join(f"sink     | {line}" for line in lines), file=sys.stdout, flush=True)


class _HttpHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        lines = [f"POST {self.path}"]
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "X-WMS-Content-MAC", "Idempotency-Key"):
            if self.headers.get(name):
                lines.append(f"  {name}: {self.headers[name]}")
        try:
            lines += ["  " + line for line in json.dumps(json.loads(body), indent=2, ensure_ascii=False).splitlines()]
        except ValueError:
            lines.append(f"  {body[:2000]!r}")
        _say(lines)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _MailHandler:
    async def handle_DATA(  # noqa: N802 - aiosmtpd's API
        self, server: "SMTP", session: "Session", envelope: "Envelope"
    ) -> str:
        # Bytes: the Controller below keeps aiosmtpd's decode_data=False.
        mail = message_from_bytes(cast(bytes, envelope.content), policy=policy.default)
        text = mail.get_body(("plain",))
        _say(
            [
                f"MAIL from {envelope.mail_from} to {', '.join(envelope.rcpt_tos)}",
                f"  Subject: {mail['Subject']}",
                f"  References: {mail['References']}",
            ]
            + ["  " + line for line in (text.get_content() if text else "").splitlines()]
        )
        return "250 OK"


class DevSinks:
    """An HTTP sink and an SMTP sink on loopback ports, in threads of this process."""

    def __init__(self, http_port: int, smtp_port: int):
        from aiosmtpd.controller import Controller

        self.http_url = f"http://127.0.0.1:{http_port}"
        self.smtp_url = f"smtp://127.0.0.1:{smtp_port}"
        self._http = ThreadingHTTPServer(("127.0.0.1", http_port), _HttpHandler)
        self._smtp = Controller(_MailHandler(), hostname="127.0.0.1", port=smtp_port)

    def start(self) -> "DevSinks":
        """Start both sinks."""
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self._smtp.start()
        return self

    def stop(self) -> None:
        """Stop both sinks."""
        self._http.shutdown()
        self._http.server_close()
        self._smtp.stop()
