"""Redis replies as the relay's clients receive them: bytes, in RESP2's shapes.

redis-py types a reply as `bytes | str` (str for a client with decode_responses) and a stream
read as RESP2 lists or RESP3 dicts. No client of ours sets decode_responses or turns off
legacy_responses (relay/store/connection.py; RQ needs bytes replies too), so replies are bytes
and keep RESP2's shapes. These functions say so where a reply is read, one per kind of reply;
they only inform the type checker (typing.cast) and change nothing at run time.
"""

from typing import Any, cast

from redis.typing import StreamRangeResponse, XReadGroupResponse, ZSetRangeResponse

# A stream entry as XRANGE and XREVRANGE give it: its id and its fields (never None there).
StreamEntry = tuple[bytes, dict[bytes, bytes]]


def optional_bytes(reply: bytes | str | None) -> bytes | None:
    """A string reply (GET, HGET, LINDEX), or None for a missing key."""
    return cast(bytes | None, reply)


def members(reply: ZSetRangeResponse) -> list[bytes]:
    """The members of a sorted-set range read without scores (ZRANGEBYSCORE)."""
    return cast(list[bytes], reply)


def stream_entries(reply: StreamRangeResponse | None) -> list[StreamEntry]:
    """The entries of an XRANGE or XREVRANGE, which answer a list (empty, never nil)."""
    return cast(list[StreamEntry], reply)


def read_group_streams(reply: XReadGroupResponse) -> list[list[Any]]:
    """An XREADGROUP's answer: [[stream, entries]] per stream read (RESP2's shape), [] for none.

    An entry this reader holds whose data was deleted meanwhile comes as (id, None).
    """
    return cast(list[list[Any]], reply)
