"""Cut a TCP byte stream into BGP messages (RFC 4271 §4.1, §6.1; RFC 8654).

Feed it chunks split anywhere; pull `(type, body)` pairs. Header errors raise `BGPError` with the
RFC 4271 §6.1 data, and the framer stays failed: the stream cannot be re-synchronised.
"""

from __future__ import annotations

from collections.abc import Iterator

from speaker.bgp.wire.context import MAX_EXTENDED_MESSAGE, MAX_MESSAGE
from speaker.bgp.wire.errors import BGPError, ErrorCode, MessageHeaderErrorSubcode

HEADER_LEN = 19
MARKER = b"\xff" * 16

OPEN = 1
UPDATE = 2
NOTIFICATION = 3
KEEPALIVE = 4
ROUTE_REFRESH = 5

# Smallest legal length per type (RFC 4271 §4.2-4.5); KEEPALIVE is exactly 19.
_MIN_LENGTH = {OPEN: 29, UPDATE: 23, NOTIFICATION: 21, KEEPALIVE: 19, ROUTE_REFRESH: 19}


def check_header(header: bytes | bytearray | memoryview, max_size: int) -> tuple[int, int]:
    """Validate a 19-octet header; return (length, type) or raise BGPError (RFC 4271 §6.1)."""
    if bytes(header[:16]) != MARKER:
        raise BGPError(
            ErrorCode.MessageHeaderError,
            MessageHeaderErrorSubcode.ConnectionNotSynchronized,
            reason="marker is not all ones",
        )
    length = (header[16] << 8) | header[17]
    msg_type = header[18]
    length_data = bytes(header[16:18])
    if length < HEADER_LEN or length > max_size:
        raise BGPError(
            ErrorCode.MessageHeaderError,
            MessageHeaderErrorSubcode.BadMessageLength,
            length_data,
            reason=f"length {length} outside {HEADER_LEN}..{max_size}",
        )
    minimum = _MIN_LENGTH.get(msg_type)
    if minimum is None:
        raise BGPError(
            ErrorCode.MessageHeaderError,
            MessageHeaderErrorSubcode.BadMessageType,
            bytes((msg_type,)),
            reason=f"unknown message type {msg_type}",
        )
    # RFC 8654 §3: OPEN and KEEPALIVE never exceed 4096 octets.
    too_long = msg_type in (OPEN, KEEPALIVE) and length > MAX_MESSAGE
    if length < minimum or too_long or (msg_type == KEEPALIVE and length != HEADER_LEN):
        raise BGPError(
            ErrorCode.MessageHeaderError,
            MessageHeaderErrorSubcode.BadMessageLength,
            length_data,
            reason=f"length {length} is illegal for message type {msg_type}",
        )
    return length, msg_type


class Framer:
    """A sans-IO stream feeder: `feed(bytes)`, then `next_message()` until it returns None."""

    __slots__ = ("_buf", "_error", "_pos", "max_size")

    def __init__(self, *, max_size: int = MAX_MESSAGE) -> None:
        if not MAX_MESSAGE <= max_size <= MAX_EXTENDED_MESSAGE:
            raise ValueError(f"max_size {max_size} outside {MAX_MESSAGE}..{MAX_EXTENDED_MESSAGE}")
        self.max_size = max_size
        self._buf = bytearray()
        self._pos = 0
        self._error: BGPError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a message."""
        return len(self._buf) - self._pos

    def next_message(self) -> tuple[int, bytes] | None:
        """The next complete message as (type, body without header), or None if incomplete."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < HEADER_LEN:
            self._compact()
            return None
        try:
            length, msg_type = check_header(bytes(buf[pos : pos + HEADER_LEN]), self.max_size)
        except BGPError as exc:
            self._error = exc
            raise
        if len(buf) - pos < length:
            self._compact()
            return None
        body = bytes(buf[pos + HEADER_LEN : pos + length])
        self._pos = pos + length
        return msg_type, body

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        while (message := self.next_message()) is not None:
            yield message

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
