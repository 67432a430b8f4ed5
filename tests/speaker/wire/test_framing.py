"""The stream feeder: message boundaries anywhere, RFC 4271 §6.1 header errors with their data."""

from __future__ import annotations

import pytest

from speaker.bgp.wire.errors import BGPError, ErrorAction, ErrorCode, MessageHeaderErrorSubcode
from speaker.bgp.wire.framing import Framer
from tests.speaker.wire.hexmsg import MARKER, msg

KEEPALIVE = msg(4)
NOTIFICATION_CEASE = msg(3, "06 02")


def test_splits_a_stream_of_several_messages_fed_in_awkward_chunks() -> None:
    stream = KEEPALIVE + NOTIFICATION_CEASE + KEEPALIVE
    for cut in range(1, len(stream)):
        framer = Framer()
        got: list[tuple[int, bytes]] = []
        framer.feed(stream[:cut])
        got.extend(framer)
        framer.feed(stream[cut:])
        got.extend(framer)
        assert got == [(4, b""), (3, b"\x06\x02"), (4, b"")]
        assert framer.buffered == 0


def test_incomplete_message_waits_for_more() -> None:
    framer = Framer()
    framer.feed(NOTIFICATION_CEASE[:-1])
    assert framer.next_message() is None
    assert framer.buffered == len(NOTIFICATION_CEASE) - 1
    framer.feed(NOTIFICATION_CEASE[-1:])
    assert framer.next_message() == (3, b"\x06\x02")


def _header_error(data: bytes, max_size: int = 4096) -> BGPError:
    framer = Framer(max_size=max_size)
    framer.feed(data)
    with pytest.raises(BGPError) as info:
        framer.next_message()
    assert info.value.code == ErrorCode.MessageHeaderError
    assert info.value.action is ErrorAction.SESSION_RESET
    return info.value


def test_marker_not_all_ones_is_connection_not_synchronized_without_data() -> None:
    err = _header_error(b"\xfe" + KEEPALIVE[1:])
    assert err.subcode == MessageHeaderErrorSubcode.ConnectionNotSynchronized
    assert err.data == b""


@pytest.mark.parametrize("length", [0, 18, 4097, 65535])
def test_bad_length_carries_the_length_field(length: int) -> None:
    err = _header_error(bytes.fromhex(MARKER) + length.to_bytes(2, "big") + b"\x02")
    assert err.subcode == MessageHeaderErrorSubcode.BadMessageLength
    assert err.data == length.to_bytes(2, "big")


@pytest.mark.parametrize(
    ("msg_type", "length"),
    [(1, 28), (2, 22), (3, 20), (4, 20), (4, 4096)],
    ids=["open<29", "update<23", "notification<21", "keepalive!=19", "keepalive-big"],
)
def test_per_type_minimum_lengths_rfc4271_6_1(msg_type: int, length: int) -> None:
    data = bytes.fromhex(MARKER) + length.to_bytes(2, "big") + bytes((msg_type,))
    err = _header_error(data + bytes(length - 19))
    assert err.subcode == MessageHeaderErrorSubcode.BadMessageLength
    assert err.data == length.to_bytes(2, "big")


@pytest.mark.parametrize("msg_type", [0, 6, 255])
def test_bad_type_carries_the_type_octet(msg_type: int) -> None:
    err = _header_error(bytes.fromhex(MARKER) + b"\x00\x13" + bytes((msg_type,)))
    assert err.subcode == MessageHeaderErrorSubcode.BadMessageType
    assert err.data == bytes((msg_type,))


def test_extended_message_raises_the_limit_for_update_but_not_open() -> None:
    big_update = bytes.fromhex(MARKER) + (5000).to_bytes(2, "big") + b"\x02" + bytes(4981)
    framer = Framer(max_size=65535)
    framer.feed(big_update)
    assert framer.next_message() == (2, bytes(4981))
    _header_error(big_update)  # 4096 limit without RFC 8654
    big_open = bytes.fromhex(MARKER) + (5000).to_bytes(2, "big") + b"\x01" + bytes(4981)
    err = _header_error(big_open, max_size=65535)  # RFC 8654 §3: OPEN stays <= 4096
    assert err.data == (5000).to_bytes(2, "big")


def test_an_error_is_sticky() -> None:
    framer = Framer()
    framer.feed(b"\x00" * 19)
    with pytest.raises(BGPError):
        framer.next_message()
    framer.feed(KEEPALIVE)
    with pytest.raises(BGPError) as info:
        framer.next_message()
    assert info.value.subcode == MessageHeaderErrorSubcode.ConnectionNotSynchronized
