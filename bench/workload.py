"""What the benchmarks send: unique, signed WMS events, and the relay config they run under."""

import json
from pathlib import Path

from relay.domain import signature
from relay.domain.samples import COMPLETED_SESSION, FAILED_SESSION, sample_event, to_body

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


def session_bodies(count: int, tag: str, timestamp: int) -> list[tuple[str, dict, str, bytes]]:
    """`count` events of whole WMS sessions, alternately one that completes (11 INFO events) and
    one that fails (a WARN and an ERROR among its 8): (event id, event, MAC, body) each. `tag`
    makes the session ids of one run its own."""
    out: list[tuple[str, dict, str, bytes]] = []
    session = 0
    while len(out) < count:
        codes = COMPLETED_SESSION if session % 2 == 0 else FAILED_SESSION
        session_id = f"{tag}-{session:07d}"
        for sequence, code in enumerate(codes[: count - len(out)]):
            event = sample_event(code, session_id, sequence, timestamp=timestamp)
            body = to_body(event)
            out.append((f"{SOURCE}:{session_id}:{sequence}", event, signature.compute(SECRET, body), body))
        session += 1
    return out
