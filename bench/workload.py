"""What the benchmarks send: unique, signed WMS events, and the relay config they run under."""

import json
from pathlib import Path

from relay.domain import signature
from relay.domain.samples import sample_event, to_body

SECRET = "bench-only-secret"
SOURCE = "wms"
# An INFO event in the middle of every session: the bulk of what WMS sends.
CODE = "INTERMEDIATE_RESULTS"


def signed_bodies(count: int, offset: int = 0) -> list[tuple[str, bytes]]:
    """`count` distinct events (no duplicates: each is new work), each with its MAC header value."""
    out = []
    for i in range(offset, offset + count):
        # 1,000 events per session, as sequence numbers of one long session would be.
        body = to_body(sample_event(CODE, f"bench{i // 1000:020d}", i % 1000, timestamp=1_790_000_000))
        out.append((signature.compute(SECRET, body), body))
    return out


def write_wrk_input(path: Path, bodies: list[tuple[str, bytes]]) -> None:
    """One request per line, MAC and body separated by a tab, for bench/post.lua."""
    with path.open("wb") as f:
        for mac, body in bodies:
            f.write(mac.encode() + b"\t" + body + b"\n")


def relay_config(path: Path, sink_url: str, destinations: int) -> Path:
    """A config routing every event to `destinations` HTTP callbacks on the sink."""
    names = [f"sink-{i}" for i in range(1, destinations + 1)]
    config = {
        "sources": {SOURCE: {"mac_secrets": [SECRET]}},
        "destinations": {
            name: {"type": "http", "url": f"{sink_url}/{name}", "signing_secret": "bench-signing-secret"}
            for name in names
        },
        "rules": [{"name": "everything", "match": {}, "to": names}],
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path
