"""Codec throughput: decode and encode host routes sharing one attribute set.

Decode is `Framer` + `decode_message` over the whole stream of UPDATEs; encode is
`UpdateBuilder.announce` from prefixes (`bytes` in their wire form) to UPDATEs. The yardstick is a
bare Python loop that walks the same NLRI bytes prefix by prefix and slices each one out, the
least a prefix-by-prefix decoder must do; the decoder slices a run of host routes (one
whole-octet length) in one pass and can beat it there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from speaker.bgp.rib.update_builder import UpdateBuilder
from speaker.bgp.wire.attributes import AsPathAttribute, Attribute, OriginAttribute
from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST, DecodeContext, Family
from speaker.bgp.wire.framing import Framer
from speaker.bgp.wire.messages import Update, decode_message
from speaker.bgp.wire.nlri import Prefix, prefix_from_int

ATTRS: tuple[Attribute, ...] = (OriginAttribute(0), AsPathAttribute.sequence(64512, 65000))
CTX = DecodeContext()


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _decode(stream: bytes) -> int:
    framer = Framer()
    framer.feed(stream)
    count = 0
    for msg_type, body in framer:
        message = decode_message(msg_type, body, CTX)
        assert isinstance(message, Update)
        reach = message.mp_reach
        count += len(message.nlri) + (len(reach.nlri) if reach else 0)
    return count


def _raw_walk(blobs: list[bytes]) -> int:
    count = 0
    for data in blobs:
        i = 0
        n = len(data)
        while i < n:
            length = data[i]
            end = i + 1 + ((length + 7) >> 3)
            _ = data[i:end]
            i = end
            count += 1
    return count


def _nlri_blobs(stream: bytes, family: Family) -> list[bytes]:
    framer = Framer()
    framer.feed(stream)
    blobs = []
    for msg_type, body in framer:
        message = decode_message(msg_type, body, CTX)
        assert isinstance(message, Update)
        reach = message.mp_reach
        prefixes = message.nlri if family == IPV4_UNICAST else (reach.nlri if reach else ())
        blobs.append(b"".join(prefixes))
    return blobs


def _case(name: str, family: Family, prefixes: list[Prefix], next_hop: bytes, repeat: int) -> None:
    builder = UpdateBuilder(CTX)
    messages = builder.announce(family, ATTRS, prefixes, next_hop=next_hop)
    stream = b"".join(messages)
    n = len(prefixes)
    assert _decode(stream) == n
    blobs = _nlri_blobs(stream, family)
    encode_s = _best(lambda: builder.announce(family, ATTRS, prefixes, next_hop=next_hop), repeat)
    decode_s = _best(lambda: _decode(stream), repeat)
    raw_s = _best(lambda: _raw_walk(blobs), repeat)
    print(
        f"{name}: {n} prefixes in {len(messages)} UPDATEs ({len(stream)} octets)\n"
        f"  decode {n / decode_s:>12,.0f} prefixes/s\n"
        f"  encode {n / encode_s:>12,.0f} prefixes/s\n"
        f"  raw    {n / raw_s:>12,.0f} prefixes/s (bare loop over the same NLRI bytes)",
        flush=True,
    )


def run(short: bool) -> None:
    n = 5_000 if short else 100_000
    repeat = 3 if short else 5
    v4 = [prefix_from_int(0x0A000000 + i, 32, 32) for i in range(n)]
    v6 = [prefix_from_int(0x20010DB8 << 96 | i, 128, 128) for i in range(n)]
    _case("IPv4 /32, classic NLRI", IPV4_UNICAST, v4, b"\xc0\x00\x02\x01", repeat)
    _case("IPv6 /128, MP_REACH_NLRI", IPV6_UNICAST, v6, bytes(15) + b"\x01", repeat)
