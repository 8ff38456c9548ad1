"""The X-WMS-Content-MAC header, computed byte for byte as the vendor's Node.js snippet does.

The vendor computes `createHmac('sha256', macSecret).update(requestBody.toString(), 'ascii')`:
the body is decoded as UTF-8 (each invalid sequence becomes U+FFFD), then every UTF-16 code unit
is written as its low 8 bits, and the string secret is used as its UTF-8 bytes. For ASCII bodies
that is a plain HMAC of the raw bytes; for anything else it is not, and it is lossy: 'A' (0x41)
and 'Ł' (U+0141) sign alike. tests/relay/domain/vectors holds Node-made known answers.
"""

import hashlib
import hmac
import re

from config.secret import Secret

HEADER = "X-WMS-Content-MAC"
_PREFIX = "hmac-sha256="
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class SignatureError(Exception):
    """The header is missing, malformed or matches no secret; the message is for the log only."""


def signed_bytes(body: bytes) -> bytes:
    """The bytes the vendor's HMAC covers for this body."""
    if body.isascii():
        return body
    # utf-16-le puts each code unit's low byte first, so every other byte is Node's 'ascii' write.
    return body.decode("utf-8", "replace").encode("utf-16-le")[::2]


def compute(secret: str, body: bytes) -> str:
    """The header value WMS sends for `body` signed with `secret`."""
    digest = hmac.new(secret.encode("utf-8"), signed_bytes(body), hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify(header: str | None, body: bytes, secrets: list[Secret]) -> int:
    """Return the index of the secret that signed `body`; raise SignatureError otherwise."""
    if header is None:
        raise SignatureError(f"missing {HEADER} header")
    value = header.strip()
    if not value.startswith(_PREFIX) or not _HEX64.fullmatch(value[len(_PREFIX) :]):
        raise SignatureError(f"malformed {HEADER} header: expected hmac-sha256=<64 hex digits>")
    given = value[len(_PREFIX) :].lower().encode("ascii")
    data = signed_bytes(body)
    matched = -1
    # Compare against every secret, without stopping early, so timing says nothing about which matched.
    for i, secret in enumerate(secrets):
        expected = hmac.new(secret.reveal().encode("utf-8"), data, hashlib.sha256).hexdigest().encode("ascii")
        if hmac.compare_digest(expected, given) and matched < 0:
            matched = i
    if matched < 0:
        raise SignatureError(f"{HEADER} matches none of the {len(secrets)} configured secret(s)")
    return matched
