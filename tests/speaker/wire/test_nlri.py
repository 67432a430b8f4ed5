"""NLRI prefixes as one `bytes` each: the length octet, then the prefix octets (RFC 4271 §4.3)."""

from __future__ import annotations

import ipaddress
import random

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
    assert prefix_from_str("2001:db8::/32") == (AFI_IPV6, bytes.fromhex("20 20010db8"))
    assert prefix_from_str("10.1.2.0/23") == (AFI_IPV4, b"\x17\x0a\x01\x02")
    assert prefix_from_int(0x0A0102FF, 23, 32) == b"\x17\x0a\x01\x02"
    assert prefix_to_int(b"\x17\x0a\x01\x02", 32) == 0x0A010200
    assert prefix_to_str(bytes.fromhex("40 20010db800000001"), AFI_IPV6) == "2001:db8:0:1::/64"


def test_a_prefix_is_its_wire_encoding_with_host_bits_cleared() -> None:
    # 10.1.18.0/20 sent as 10.1.31.255/20: the four host bits of the last octet are cleared
    (prefix,) = decode_prefixes(bytes.fromhex("14 0a011f"), 32)
    assert type(prefix) is bytes and prefix == bytes.fromhex("14 0a0110")
    assert prefix_to_str(prefix, AFI_IPV4) == "10.1.16.0/20"
    assert encode_prefixes([prefix]) == bytes.fromhex("14 0a0110")
    (with_id,), ids = decode_prefixes_add_path(bytes.fromhex("00000007 14 0a011f"), 32)
    assert with_id == prefix and ids == [7]
    # already clean: decoded as sent
    assert decode_prefixes(bytes.fromhex("14 0a0110 00 80 " + "ff" * 16), 128) == [
        bytes.fromhex("14 0a0110"),
        b"\x00",
        bytes.fromhex("80" + "ff" * 16),
    ]


def test_text_int_and_wire_round_trips_v4_and_v6() -> None:
    for text, afi, bits in [
        ("0.0.0.0/0", AFI_IPV4, 32),
        ("10.0.0.0/8", AFI_IPV4, 32),
        ("10.1.16.0/20", AFI_IPV4, 32),
        ("192.0.2.1/32", AFI_IPV4, 32),
        ("::/0", AFI_IPV6, 128),
        ("2001:db8::/32", AFI_IPV6, 128),
        ("2001:db8:0:1::/64", AFI_IPV6, 128),
        ("2001:db8::8000/113", AFI_IPV6, 128),
        ("2001:db8::1/128", AFI_IPV6, 128),
    ]:
        got_afi, prefix = prefix_from_str(text)
        net = ipaddress.ip_network(text)
        assert got_afi == afi and prefix_to_str(prefix, afi) == text
        assert prefix[0] == net.prefixlen and len(prefix) == 1 + (net.prefixlen + 7) // 8
        assert prefix_to_int(prefix, bits) == int(net.network_address)
        assert prefix_from_int(int(net.network_address), net.prefixlen, bits) == prefix
        assert decode_prefixes(encode_prefixes([prefix]), bits) == [prefix]


def test_prefixes_sort_by_length_then_octets() -> None:
    rng = random.Random(4271)
    prefixes = {
        prefix_from_int(rng.getrandbits(32), rng.choice((0, 7, 8, 16, 20, 24, 31, 32)), 32)
        for _ in range(500)
    }
    assert sorted(prefixes) == sorted(prefixes, key=lambda p: (p[0], p[1:]))
    assert sorted(prefixes)[0] == b"\x00"  # the default route first
    # within a length, octet order is numeric order
    hosts = [p for p in sorted(prefixes) if p[0] == 32]
    assert hosts == sorted(hosts, key=lambda p: prefix_to_int(p, 32))


def test_add_path_known_answer_rfc7911_3() -> None:
    data = bytes.fromhex("00000001 18 0a0001 00000002 00")
    prefixes, ids = decode_prefixes_add_path(data, 32)
    assert prefixes == [b"\x18\x0a\x00\x01", b"\x00"] and ids == [1, 2]
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


def _walked(data: bytes, max_bits: int) -> list[bytes]:
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
        out.append(bytes((length,)) + octets)
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
