"""X-WMS-Content-MAC: Node-made known answers, header parsing, rotation."""

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.secret import Secret
from relay.domain import signature

VECTORS_DIR = Path(__file__).parent / "vectors"
VECTORS = json.loads((VECTORS_DIR / "wms_mac_vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_compute_matches_node_known_answers(vector):
    body = base64.b64decode(vector["body_b64"])
    assert signature.compute(vector["secret"], body) == vector["mac"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_verify_accepts_node_known_answers(vector):
    body = base64.b64decode(vector["body_b64"])
    assert signature.verify(vector["mac"], body, [Secret(vector["secret"])]) == 0


@pytest.mark.slow  # runs node
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_committed_vectors_are_what_node_makes_today():
    made = subprocess.run(
        ["node", str(VECTORS_DIR / "make_wms_mac_vectors.js")], capture_output=True, check=True, text=True
    ).stdout
    assert json.loads(made)["vectors"] == VECTORS


def test_vectors_cover_the_hard_cases():
    names = " ".join(v["name"] for v in VECTORS)
    for needed in ("latin-1", "CJK", "astral", "order mark", "non-ascii secret", "invalid utf-8"):
        assert needed in names


def test_lossy_mapping_signs_different_bodies_alike():
    # Why non-ASCII content is not authenticated byte for byte: U+0141 and 'A' share a low byte.
    assert signature.compute("s", b'{"a":"A"}') == signature.compute("s", '{"a":"\u0141"}'.encode())


def test_hex_digits_are_case_insensitive_and_whitespace_is_ignored():
    body = b'{"a":1}'
    mac = signature.compute("s", body)
    upper = "hmac-sha256=" + mac.removeprefix("hmac-sha256=").upper()
    assert signature.verify(f" {upper} ", body, [Secret("s")]) == 0


def test_rotation_returns_the_index_of_the_matching_secret():
    body = b'{"a":1}'
    secrets = [Secret("new"), Secret("old")]
    assert signature.verify(signature.compute("new", body), body, secrets) == 0
    assert signature.verify(signature.compute("old", body), body, secrets) == 1


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing X-WMS-Content-MAC header"),
        ("", "malformed X-WMS-Content-MAC header: expected hmac-sha256=<64 hex digits>"),
        ("sha256=" + "0" * 64, "malformed X-WMS-Content-MAC header: expected hmac-sha256=<64 hex digits>"),
        ("hmac-sha256=" + "0" * 63, "malformed X-WMS-Content-MAC header: expected hmac-sha256=<64 hex digits>"),
        ("hmac-sha256=" + "g" * 64, "malformed X-WMS-Content-MAC header: expected hmac-sha256=<64 hex digits>"),
        ("hmac-sha256=" + "0" * 64, "X-WMS-Content-MAC matches none of the 2 configured secret(s)"),
    ],
)
def test_rejections_say_why(header, message):
    with pytest.raises(signature.SignatureError) as exc:
        signature.verify(header, b"{}", [Secret("a"), Secret("b")])
    assert str(exc.value) == message


# Property tests (hypothesis): verify() accepts exactly the pairs the vendor's MAC allows.
SECRETS = st.text(min_size=1, max_size=40)
BODIES = st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))


def _accepts(header: str, body: bytes, secrets: list[str]) -> bool:
    try:
        signature.verify(header, body, [Secret(s) for s in secrets])
    except signature.SignatureError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(body=BODIES, secret=SECRETS, others=st.lists(SECRETS, max_size=2), position=st.integers(0, 2))
def test_a_body_signed_with_any_configured_secret_verifies_at_its_index(body, secret, others, position):
    secrets = [s for s in others if s != secret]
    secrets.insert(min(position, len(secrets)), secret)
    header = signature.compute(secret, body)
    assert signature.verify(header, body, [Secret(s) for s in secrets]) == secrets.index(secret)
    assert _accepts(header.upper().replace("HMAC-SHA256=", "hmac-sha256="), body, secrets)  # hex in any case


@settings(max_examples=300, deadline=None)
@given(body=BODIES, other=BODIES, secret=SECRETS, wrong=SECRETS, header=st.text(max_size=80))
def test_no_header_verifies_unless_it_is_the_mac_of_what_the_vendor_signs(body, other, secret, wrong, header):
    # Another body verifies only when the vendor's MAC cannot tell them apart (the lossy mapping
    # of characters above U+00FF; docs/security.md); another secret never does, nor does noise.
    assert _accepts(signature.compute(secret, other), body, [secret]) == (
        signature.signed_bytes(other) == signature.signed_bytes(body)
    )
    if wrong != secret:
        assert not _accepts(signature.compute(wrong, body), body, [secret])
    value = header.strip()
    expected = signature.compute(secret, body)
    assert _accepts(header, body, [secret]) == (
        value.startswith("hmac-sha256=") and value.lower() == expected  # the prefix as sent, the hex in any case
    )


def test_the_lossy_mac_is_what_the_vendor_computes_a_look_alike_verifies():
    # Issue 11: documented in docs/security.md. 'A' is 0x41 and 'Ł' is U+0141: the same low byte.
    genuine, forged = b'{"payload":{"note":"A"}}', '{"payload":{"note":"Ł"}}'.encode()
    assert _accepts(signature.compute("s", genuine), forged, ["s"])
