"""A rejected request changes nothing: no inbox entry, no dedup key, no write of any kind but
its count for `relay stats` (one HINCRBY and its EXPIRE on relay:stats:<minute>)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.domain.samples import sample_event, to_body
from relay.domain.signature import compute
from relay.store import keys
from tests.conftest import SECRET, signed_post

# Every write command but the count's (relay/store/stats.py count_ingest).
WRITES = ("evalsha", "eval", "xadd", "set", "setex", "hset", "zadd", "rpush", "lpush", "del")


def _writes(redis) -> dict[str, int]:
    stats = redis.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in WRITES}


def _keys(redis) -> list[bytes]:
    """Every key but the counts per minute."""
    return sorted(k for k in redis.keys("*") if not k.startswith(b"relay:stats:"))


def _refusals(redis) -> int:
    return sum(int(n) for k in redis.keys("relay:stats:*") for n in redis.hvals(k))


def test_a_body_with_a_duplicate_key_is_refused_naming_it(client, redis):
    # Issue 11: the last key won here while a receiver parsing the forwarded bytes may take the
    # first: two deliveries of "the same" event under different ids.
    event = sample_event("WMS_LOADED", "sess-a", 0)
    body = to_body(event)[:-1] + b', "sessionId": "sess-b"}'
    response = signed_post(client, body)
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_body",
        "detail": "body has the key 'sessionId' twice in one object; each key must appear once",
    }
    assert redis.exists(keys.INBOX) == 0 and _keys(redis) == [] and _refusals(redis) == 1


# What a hostile or broken sender can vary: the body (anything, or an event with any field
# changed), the signature (right, wrong secret, garbage, none) and where it is sent.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(["timestamp", "sessionId", "sequence", "severity", "event", "payload"])


@st.composite
def requests_(draw):
    kind = draw(st.sampled_from(["bytes", "event"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=300))
    else:
        event = sample_event("CONSTRAINT_VIOLATION", "sess-p", draw(st.integers(0, 5)))
        event.update(draw(st.dictionaries(FIELDS, JSON_VALUES, min_size=1, max_size=2)))
        body = json.dumps(event).encode()
    signing = draw(st.sampled_from(["right", "wrong", "garbage", "none"]))
    headers = {"Content-Type": "application/json"}
    if signing == "right":
        headers["X-WMS-Content-MAC"] = compute(SECRET, body)
    elif signing == "wrong":
        headers["X-WMS-Content-MAC"] = compute("not-the-secret", body)
    elif signing == "garbage":
        headers["X-WMS-Content-MAC"] = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
    source = draw(st.sampled_from(["wms", "wms", "nope"]))
    return source, body, headers


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests_())
def test_no_rejected_request_writes_anything_to_redis(client, redis, request):
    source, body, headers = request
    before_keys, before_writes, refused = _keys(redis), _writes(redis), _refusals(redis)
    response = client.post(f"/hooks/{source}", data=body, headers=headers)
    if response.status_code in (200, 202):  # a valid event got through: it is stored, fine
        return
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert set(response.get_json()) == {"error", "detail"}
    assert _keys(redis) == before_keys
    assert _writes(redis) == before_writes and _refusals(redis) == refused + 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/hooks/wms", b'{"a": 1, "a": 2}'),
        ("/hooks/wms", b"\xff\xfe not utf-8"),
        ("/hooks/nope", b"{}"),
    ],
)
def test_examples_of_rejections_leave_redis_untouched(client, redis, path, body):
    before = _writes(redis)
    response = client.post(path, data=body, headers={"X-WMS-Content-MAC": compute(SECRET, body)})
    assert response.status_code in (400, 404)
    assert _keys(redis) == [] and _writes(redis) == before and _refusals(redis) == 1
