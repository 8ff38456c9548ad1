"""Where one HTTP/1.1 request ends, found in bytes that arrive piecemeal, without parsing it.

The web worker (relay.web.server) reads each request whole on its event loop before a thread
serves it, so that a client sending slowly holds no thread. This scanner only tells when to stop
reading: gunicorn's parser still parses every byte. So it never refuses anything itself: what it
finds odd (a bare LF, two Content-Lengths, a chunk size that is not hex, a head or body over the
limits) it hands over at once, and gunicorn's parser gives the error; what is merely incomplete it
waits for, up to the worker's read deadline.
"""

import enum

CRLF = b"\r\n"


class Verdict(enum.Enum):
    MORE = "more"  # the request has not all arrived yet
    COMPLETE = "complete"  # the whole request is buffered: the parser will not read the socket
    HAND_OVER = "hand over"  # stop buffering: gunicorn's parser decides (an error, or a body over the limit)


class _State(enum.Enum):
    HEAD = 1
    LENGTH = 2  # a Content-Length body
    CHUNK_SIZE = 3
    CHUNK_DATA = 4
    TRAILERS = 5


class RequestScanner:
    """Feed it bytes as they arrive; feed() says whether the request they start is complete.

    Args:
        head_limit: bytes of request line and headers beyond which gunicorn refuses a head.
        line_limit: bytes of request line (or chunk-size line) beyond which gunicorn refuses it.
        body_limit: bytes of body beyond which the app refuses it (413): no need to wait for more.
        chunk_slack: what chunked framing may add to body_limit before the rest is not waited for.
    """

    def __init__(self, head_limit: int, line_limit: int, body_limit: int, chunk_slack: int = 0):
        self.head_limit = head_limit
        self.line_limit = line_limit
        self.body_limit = body_limit
        self.chunked_limit = body_limit + chunk_slack
        self.buffer = bytearray()
        self.expects_continue = False  # HTTP/1.1 "Expect: 100-continue" with a body still to come
        self._state = _State.HEAD
        self._pos = 0  # where scanning resumes
        self._body_start = 0
        self._needed = 0  # LENGTH: the end of the body; CHUNK_DATA: the end of the chunk and its CRLF

    @property
    def started(self) -> bool:
        """Some byte of a request has arrived."""
        return bool(self.buffer)

    def feed(self, data: bytes) -> Verdict:
        """Append `data`; say whether the request is complete, incomplete, or to be handed over."""
        self.buffer += data
        if self._state is _State.HEAD:
            verdict = self._head(len(self.buffer) - len(data))
            if verdict is not Verdict.MORE or self._state is _State.HEAD:
                return verdict
        if self._state is _State.LENGTH:
            return Verdict.COMPLETE if len(self.buffer) >= self._needed else Verdict.MORE
        return self._chunks()

    def _head(self, fresh: int) -> Verdict:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n", max(0, self._pos - 3))
        head_end = end + 4 if end >= 0 else len(buffer)
        # RFC 9112 section 2.2: the head's lines end with CRLF. A bare LF is gunicorn's to refuse, now.
        newline = buffer.find(b"\n", fresh, head_end)
        while newline >= 0:
            if newline == 0 or buffer[newline - 1] != 0x0D:
                return Verdict.HAND_OVER
            newline = buffer.find(b"\n", newline + 1, head_end)
        if end < 0:
            self._pos = len(buffer)
            first_line = buffer.find(CRLF, 2)  # one CRLF may come before the request line
            too_long_line = first_line < 0 and len(buffer) > self.line_limit + 2
            return Verdict.HAND_OVER if too_long_line or len(buffer) > self.head_limit else Verdict.MORE
        self._body_start = self._pos = head_end
        head = bytes(buffer[:end])
        return self._framing(head.removeprefix(CRLF).split(CRLF))

    def _framing(self, lines: list[bytes]) -> Verdict:
        """Read the body's framing from the head's lines; anything unusual is handed over."""
        lengths, codings, expect = [], [], b""
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                return Verdict.HAND_OVER
            name = name.lower()
            if name == b"content-length":
                lengths.append(value.strip(b" \t"))
            elif name == b"transfer-encoding":
                codings.append(value.strip(b" \t").lower())
            elif name == b"expect":
                expect = value.strip(b" \t").lower()
        http11 = lines[0].endswith(b" HTTP/1.1")
        if codings:
            if lengths or codings != [b"chunked"] or not http11:
                return Verdict.HAND_OVER
            self._state = _State.CHUNK_SIZE
        elif lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                return Verdict.HAND_OVER
            length = int(lengths[0])
            if length > self.body_limit:
                return Verdict.HAND_OVER  # the app answers 413 without reading it
            self._state = _State.LENGTH
            self._needed = self._body_start + length
        else:
            return Verdict.COMPLETE
        self.expects_continue = http11 and expect == b"100-continue"
        return Verdict.MORE

    def _chunks(self) -> Verdict:
        buffer = self.buffer
        while True:
            if self._pos - self._body_start > self.chunked_limit:
                return Verdict.HAND_OVER  # over the limit: the app reads no further than its 413
            if self._state is _State.CHUNK_SIZE:
                end = buffer.find(CRLF, self._pos)
                if end < 0:
                    return Verdict.HAND_OVER if len(buffer) - self._pos > self.line_limit else Verdict.MORE
                size_text = bytes(buffer[self._pos : end]).split(b";", 1)[0].rstrip(b" \t")
                if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
                    return Verdict.HAND_OVER
                size = int(size_text, 16)
                if size > self.chunked_limit:
                    return Verdict.HAND_OVER
                self._pos = end + 2
                if size == 0:
                    self._state = _State.TRAILERS
                else:
                    self._state = _State.CHUNK_DATA
                    self._needed = self._pos + size + 2
            elif self._state is _State.CHUNK_DATA:
                if len(buffer) < self._needed:
                    return Verdict.MORE
                if buffer[self._needed - 2 : self._needed] != CRLF:
                    return Verdict.HAND_OVER
                self._pos = self._needed
                self._state = _State.CHUNK_SIZE
            else:  # TRAILERS: an empty line, or trailer fields up to an empty line
                if buffer[self._pos : self._pos + 2] == CRLF or buffer.find(b"\r\n\r\n", self._pos) >= 0:
                    return Verdict.COMPLETE
                return Verdict.HAND_OVER if len(buffer) - self._pos > self.head_limit else Verdict.MORE
