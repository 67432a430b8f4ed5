"""NLRI prefixes as (length, octets)."""

from __future__ import annotations

import pytest

from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6
from speaker.bgp.wire.errors import BGPError, ErrorCode, UPDATEMessageErrorSubcode
from speaker.bgp.wire.nlri import (
    decode_prefixes,
    decode_prefixes_add_path,
    encode_prefixes,
    encode_prefixes_add_path,
    prefix_from_int,
    prefix_from_str,
    prefix_to_int,
    prefix_to_str,
)


def test_rfc4271_4_3_prefix_encoding_known_answer() -> None:
    # length octet, then the fewest octets that hold the prefix (RFC 4271 §4.3)
    data = bytes.fromhex("00 08 0a 11 0a8000 18 c00002 20 c0000201")
    prefixes = decode_prefixes(data, 32)
    assert [prefix_to_str(p, AFI_IPV4) for p in prefixes] == [
        "0.0.0.0/0",
        "10.0.0.0/8",
        "10.128.0.0/17",
        "192.0.2.0/24",
        "192.0.2.1/32",
    ]
    assert encode_prefixes(prefixes) == data


def test_text_and_int_conversions() -> None:
    assert prefix_from_str("2001:db8::/32") == (AFI_IPV6, (32, bytes.fromhex("20010db8")))
    assert prefix_from_str("10.1.2.0/23") == (AFI_IPV4, (23, b"\x0a\x01\x02"))
    assert prefix_from_int(0x0A0102FF, 23, 32) == (23, b"\x0a\x01\x02")
    assert prefix_to_int((23, b"\x0a\x01\x02"), 32) == 0x0A010200
    assert prefix_to_str((64, bytes.fromhex("20010db800000001")), AFI_IPV6) == "2001:db8:0:1::/64"


def test_add_path_known_answer_rfc7911_3() -> None:
    data = bytes.fromhex("00000001 18 0a0001 00000002 00")
    prefixes, ids = decode_prefixes_add_path(data, 32)
    assert prefixes == [(24, b"\x0a\x00\x01"), (0, b"")] and ids == [1, 2]
    assert encode_prefixes_add_path(prefixes, ids) == data


@pytest.mark.parametrize(
    ("data", "add_path"),
    [("21 0a000001 00", False), ("18 0a00", False), ("000001", True), ("00000001 21", True)],
)
def test_malformed_prefixes_are_invalid_network_field(data: str, add_path: bool) -> None:
    raw = bytes.fromhex(data)
    with pytest.raises(BGPError) as info:
        if add_path:
            decode_prefixes_add_path(raw, 32)
        else:
            decode_prefixes(raw, 32)
    assert info.value.code == ErrorCode.UPDATEMessageError
    assert info.value.subcode == UPDATEMessageErrorSubcode.InvalidNetworkField
    assert info.value.data == b""


def _walked(data: bytes, max_bits: int) -> list[tuple[int, bytes]]:
    """The prefixes read one by one, as RFC 4271 §4.3 draws them (reference for the run path)."""
    out, i = [], 0
    while i < len(data):
        length = data[i]
        if length > max_bits:
            raise ValueError(length)
        size = (length + 7) // 8
        if i + 1 + size > len(data):
            raise ValueError("overrun")
        octets = bytearray(data[i + 1 : i + 1 + size])
        if length % 8:
            octets[-1] &= (0xFF << (8 - length % 8)) & 0xFF
        out.append((length, bytes(octets)))
        i += 1 + size
    return out


@pytest.mark.parametrize(
    ("length", "max_bits", "count", "tail"),
    [
        (32, 32, 810, b""),  # IPv4 host routes: the run path
        (128, 128, 237, b""),  # IPv6 host routes
        (24, 32, 100, b""),
        (0, 32, 70, b""),
        (32, 32, 100, bytes.fromhex("18 0a0001")),  # one /24 at the end: not a run
        (32, 32, 100, bytes.fromhex("20 0a00")),  # truncated last prefix
        (40, 32, 100, b""),  # whole octets but too long for IPv4
        (64, 32, 100, b""),
    ],
)
def test_a_run_of_one_length_decodes_as_prefix_by_prefix(
    length: int, max_bits: int, count: int, tail: bytes
) -> None:
    size = length // 8
    data = b"".join(
        bytes((length,)) + (i * 7919).to_bytes(4, "big")[:size].rjust(size, b"\x5a")
        for i in range(count)
    )
    data += tail
    try:
        expected = _walked(data, max_bits)
    except ValueError:
        with pytest.raises(BGPError):
            decode_prefixes(data, max_bits)
        return
    assert decode_prefixes(data, max_bits) == expected
