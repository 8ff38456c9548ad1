"""Private redis-servers the way production Redis differs from a laptop's: TLS with a certificate
made here with openssl (a CA and a server certificate for 127.0.0.1 and localhost, and a second,
unrelated CA), a password, an evicting maxmemory-policy, an ACL user without INFO or CONFIG."""

import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.local_redis import free_port, redis_server_binary


@dataclass(frozen=True)
class Certs:
    """PEM files: `ca` signed `server_cert`; `other_ca` signed nothing the server shows."""

    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path


def make_certs(directory: Path) -> Certs:
    """A test CA, a server certificate it signs for 127.0.0.1 and localhost, and another CA."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Relay Test CA")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.cnf",
    )  # fmt: skip
    openssl("req", "-x509", *ec, "-keyout", "other.key", "-out", "other.pem", "-days", "2", "-subj", "/CN=Other CA")
    return Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "other.pem")


class Server:
    """One redis-server on 127.0.0.1 with extra arguments, nothing kept on disk."""

    def __init__(self, *args: str, tls: Certs | None = None):
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="relay-redis-")
        listen = ["--port", str(self.port)]
        if tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(tls.server_cert)]
            listen += ["--tls-key-file", str(tls.server_key), "--tls-ca-cert-file", str(tls.ca)]
            listen += ["--tls-auth-clients", "no"]
        self.args = [
            redis_server_binary(), *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", self._dir.name, "--loglevel", "warning", *args,
        ]  # fmt: skip
        self._process: subprocess.Popen | None = None

    def url(self, scheme: str = "redis", password: str | None = None, user: str = "") -> str:
        """A URL of this server."""
        auth = f"{user}:{password}@" if password is not None else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "Server":
        """Start it and wait until its port takes connections."""
        self._process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self._process.poll() is not None:
                    assert self._process.stderr is not None
                    raise RuntimeError(f"redis-server exited: {self._process.stderr.read().decode()}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not listen on {self.port} within {timeout}s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop it and remove its directory."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                self._process.wait(timeout=10)
            if self._process.stderr:
                self._process.stderr.close()
            self._process = None
        self._dir.cleanup()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
