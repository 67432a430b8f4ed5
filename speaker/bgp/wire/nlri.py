"""NLRI prefixes on the hot path: one `bytes` each, as on the wire, never ipaddress objects.

A prefix is its NLRI encoding (RFC 4271 §4.3): one length octet, then exactly ceil(length / 8)
octets of address with the bits past `length` zero; `b"\\x18\\x0a\\x00\\x01"` is 10.0.1.0/24.
`prefix[0]` is the length, `prefix[1:]` the octets. One small object a prefix (~40 B, where a
`(length, octets)` tuple and its octets took ~96 B), shared as the key of the Adj-RIB-In, the
Loc-RIB and the FIB writer; decoding a run is slicing, encoding is a join. Prefixes sort as
`(length, octets)` did: by length, then by octets. ADD-PATH (RFC 7911) path identifiers travel
in a parallel tuple of ints, so code that ignores ADD-PATH never sees them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6
from speaker.bgp.wire.errors import BGPError, ErrorCode, UPDATEMessageErrorSubcode

Prefix = bytes

MAX_BITS = {AFI_IPV4: 32, AFI_IPV6: 128}
_LEN = [bytes((n,)) for n in range(256)]
_KEEP = [(0xFF << (8 - r)) & 0xFF for r in range(8)]  # the high r bits of the last octet
_RUN = 64  # octets from which checking for a run of one length pays


def _invalid(reason: str) -> BGPError:
    return BGPError(
        ErrorCode.UPDATEMessageError, UPDATEMessageErrorSubcode.InvalidNetworkField, reason=reason
    )


def _cleared(data: bytes, start: int, end: int, rest: int) -> Prefix:
    """data[start:end], its last octet keeping only its high `rest` bits (host bits cleared)."""
    return data[start : end - 1] + _LEN[data[end - 1] & _KEEP[rest]]


def decode_prefixes(data: bytes, max_bits: int) -> list[Prefix]:
    """Decode a run of prefixes; BGPError(UPDATE, Invalid Network Field) if malformed."""
    n = len(data)
    if n >= _RUN:
        # A long run of one whole-octet length (host routes: /32, /128) is sliced in one pass.
        length = data[0]
        stride = 1 + (length >> 3)
        uniform = not length & 7 and length <= max_bits and not n % stride
        if uniform and data[::stride] == _LEN[length] * (n // stride):
            return [data[i : i + stride] for i in range(0, n, stride)]
    out: list[Prefix] = []
    append = out.append
    i = 0
    while i < n:
        length = data[i]
        if length > max_bits:
            raise _invalid(f"prefix length {length} > {max_bits}")
        end = i + 1 + ((length + 7) >> 3)
        if end > n:
            raise _invalid("last prefix overruns the field")
        rest = length & 7
        if rest and data[end - 1] & ~_KEEP[rest] & 0xFF:
            append(_cleared(data, i, end, rest))
        else:
            append(data[i:end])
        i = end
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
        start = i + 4
        length = data[start]
        if length > max_bits:
            raise _invalid(f"prefix length {length} > {max_bits}")
        end = start + 1 + ((length + 7) >> 3)
        if end > n:
            raise _invalid("last prefix overruns the field")
        rest = length & 7
        if rest and data[end - 1] & ~_KEEP[rest] & 0xFF:
            out.append(_cleared(data, start, end, rest))
        else:
            out.append(data[start:end])
        i = end
    return out, ids


def encode_prefixes(prefixes: Iterable[Prefix]) -> bytes:
    return b"".join(prefixes)


def encode_prefixes_add_path(prefixes: Sequence[Prefix], path_ids: Sequence[int]) -> bytes:
    if len(prefixes) != len(path_ids):
        raise ValueError("one path identifier per prefix")
    return b"".join(
        [pid.to_bytes(4, "big") + prefix for prefix, pid in zip(prefixes, path_ids, strict=True)]
    )


def prefix_from_int(value: int, length: int, bits: int) -> Prefix:
    """The prefix of `length` bits of an address given as an int (host bits cleared)."""
    nbytes = (length + 7) >> 3
    value >>= bits - length
    value <<= nbytes * 8 - length
    return (length << (nbytes * 8) | value).to_bytes(nbytes + 1, "big")


def prefix_to_int(prefix: Prefix, bits: int) -> int:
    """The network address as a `bits`-wide int."""
    return int.from_bytes(prefix[1:], "big") << (bits - 8 * (len(prefix) - 1))


def prefix_to_str(prefix: Prefix, afi: int) -> str:
    """Text form ('10.0.0.0/24'); for humans and tests, not the hot path."""
    length, octets = prefix[0], prefix[1:]
    if afi == AFI_IPV6:
        return f"{ipaddress.IPv6Address(octets.ljust(16, bytes(1)))}/{length}"
    return f"{ipaddress.IPv4Address(octets.ljust(4, bytes(1)))}/{length}"


def prefix_from_str(text: str) -> tuple[int, Prefix]:
    """(AFI, prefix) from '10.0.0.0/24' or '2001:db8::/32'; host bits must be zero."""
    net = ipaddress.ip_network(text, strict=True)
    afi = AFI_IPV4 if net.version == 4 else AFI_IPV6
    return afi, prefix_from_int(int(net.network_address), net.prefixlen, net.max_prefixlen)
