"""NLRI prefixes on the hot path: `(length, octets)` tuples, never ipaddress objects.

A prefix is `(length, octets)` where `octets` holds exactly ceil(length / 8) bytes, as on the
wire (RFC 4271 §4.3), with the bits past `length` zero. ADD-PATH (RFC 7911) path identifiers
travel in a parallel tuple of ints, so code that ignores ADD-PATH never sees them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6
from speaker.bgp.wire.errors import BGPError, ErrorCode, UPDATEMessageErrorSubcode

Prefix = tuple[int, bytes]

MAX_BITS = {AFI_IPV4: 32, AFI_IPV6: 128}
_LEN = [bytes((n,)) for n in range(256)]
_KEEP = [(0xFF << (8 - r)) & 0xFF for r in range(8)]  # the high r bits of the last octet
_RUN = 64  # octets from which checking for a run of one length pays


def _invalid(reason: str) -> BGPError:
    return BGPError(
        ErrorCode.UPDATEMessageError, UPDATEMessageErrorSubcode.InvalidNetworkField, reason=reason
    )


def decode_prefixes(data: bytes, max_bits: int) -> list[Prefix]:
    """Decode a run of prefixes; BGPError(UPDATE, Invalid Network Field) if malformed."""
    n = len(data)
    if n >= _RUN:
        # A long run of one whole-octet length (host routes: /32, /128) is sliced in one pass.
        length = data[0]
        stride = 1 + (length >> 3)
        uniform = not length & 7 and length <= max_bits and not n % stride
        if uniform and data[::stride] == _LEN[length] * (n // stride):
            return [(length, data[i + 1 : i + stride]) for i in range(0, n, stride)]
    out: list[Prefix] = []
    append = out.append
    i = 0
    while i < n:
        length = data[i]
        if length > max_bits:
            raise _invalid(f"prefix length {length} > {max_bits}")
        end = i + 1 + ((length + 7) >> 3)
        octets = data[i + 1 : end]
        rest = length & 7
        if rest and octets and octets[-1] & ~_KEEP[rest] & 0xFF:
            octets = octets[:-1] + _LEN[octets[-1] & _KEEP[rest]]  # clear host bits
        append((length, octets))
        i = end
    if i != n:
        raise _invalid("last prefix overruns the field")
    return out


def decode_prefixes_add_path(data: bytes, max_bits: int) -> tuple[list[Prefix], list[int]]:
    """Decode prefixes each preceded by a 4-octet Path Identifier (RFC 7911 §3)."""
    out: list[Prefix] = []
    ids: list[int] = []
    n = len(data)
    i = 0
    while i < n:
        if i + 5 > n:
            raise _invalid("truncated path identifier")
        ids.append(int.from_bytes(data[i : i + 4], "big"))
        length = data[i + 4]
        if length > max_bits:
            raise _invalid(f"prefix length {length} > {max_bits}")
        end = i + 5 + ((length + 7) >> 3)
        octets = data[i + 5 : end]
        rest = length & 7
        if rest and octets and octets[-1] & ~_KEEP[rest] & 0xFF:
            octets = octets[:-1] + _LEN[octets[-1] & _KEEP[rest]]
        out.append((length, octets))
        i = end
    if i != n:
        raise _invalid("last prefix overruns the field")
    return out, ids


def encode_prefix(prefix: Prefix) -> bytes:
    return _LEN[prefix[0]] + prefix[1]


def encode_prefixes(prefixes: Iterable[Prefix]) -> bytes:
    lens = _LEN
    return b"".join([lens[length] + octets for length, octets in prefixes])


def encode_prefixes_add_path(prefixes: Sequence[Prefix], path_ids: Sequence[int]) -> bytes:
    if len(prefixes) != len(path_ids):
        raise ValueError("one path identifier per prefix")
    return b"".join(
        [
            pid.to_bytes(4, "big") + _LEN[length] + octets
            for (length, octets), pid in zip(prefixes, path_ids, strict=True)
        ]
    )


def prefix_from_int(value: int, length: int, bits: int) -> Prefix:
    """`(length, octets)` from an address as an int (host bits cleared)."""
    nbytes = (length + 7) >> 3
    value >>= bits - length
    value <<= nbytes * 8 - length
    return length, value.to_bytes(nbytes, "big")


def prefix_to_int(prefix: Prefix, bits: int) -> int:
    return int.from_bytes(prefix[1].ljust(bits // 8, b"\0"), "big")


def prefix_to_str(prefix: Prefix, afi: int) -> str:
    """Text form ('10.0.0.0/24'); for humans and tests, not the hot path."""
    length, octets = prefix
    if afi == AFI_IPV6:
        return f"{ipaddress.IPv6Address(octets.ljust(16, bytes(1)))}/{length}"
    return f"{ipaddress.IPv4Address(octets.ljust(4, bytes(1)))}/{length}"


def prefix_from_str(text: str) -> tuple[int, Prefix]:
    """(AFI, prefix) from '10.0.0.0/24' or '2001:db8::/32'; host bits must be zero."""
    net = ipaddress.ip_network(text, strict=True)
    afi = AFI_IPV4 if net.version == 4 else AFI_IPV6
    return afi, prefix_from_int(int(net.network_address), net.prefixlen, net.max_prefixlen)
