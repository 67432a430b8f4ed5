"""Path attributes (RFC 4271 §4.3, §5) with RFC 7606 error handling.

One frozen class per type code, one explicit table `ATTRIBUTES` from type code to class. Each
class states its expected Optional/Transitive flags and what RFC 7606 (§7) says to do when it is
malformed (`ON_ERROR`). Values that depend on the session (2- vs 4-octet AS numbers, ADD-PATH)
take a `DecodeContext`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from speaker.bgp.wire.context import (
    AFI_IPV4,
    AFI_IPV6,
    AS_TRANS,
    SAFI_UNICAST,
    DecodeContext,
    Family,
)
from speaker.bgp.wire.errors import BGPError, ErrorAction, ErrorCode, UPDATEMessageErrorSubcode
from speaker.bgp.wire.nlri import (
    MAX_BITS,
    Prefix,
    decode_prefixes,
    decode_prefixes_add_path,
    encode_prefixes,
    encode_prefixes_add_path,
)

OPTIONAL = 0x80
TRANSITIVE = 0x40
PARTIAL = 0x20
EXTENDED_LENGTH = 0x10

Sub = UPDATEMessageErrorSubcode


class AttrType(enum.IntEnum):
    """Path attribute type codes (IANA registry, as the RFCs name them)."""

    ORIGIN = 1
    AS_PATH = 2
    NEXT_HOP = 3
    MULTI_EXIT_DISC = 4
    LOCAL_PREF = 5
    ATOMIC_AGGREGATE = 6
    AGGREGATOR = 7
    COMMUNITIES = 8
    ORIGINATOR_ID = 9
    CLUSTER_LIST = 10
    MP_REACH_NLRI = 14
    MP_UNREACH_NLRI = 15
    EXTENDED_COMMUNITIES = 16
    AS4_PATH = 17
    AS4_AGGREGATOR = 18
    LARGE_COMMUNITY = 32


class Malformed(BGPError):
    """Raised by `decode_value`; the UPDATE decoder adds the attribute bytes and the action."""

    def __init__(self, subcode: int, reason: str) -> None:
        super().__init__(ErrorCode.UPDATEMessageError, subcode, reason=reason)


def attribute_header(flags: int, type_code: int, length: int) -> bytes:
    """Flags, type and length, choosing the Extended Length form when the value needs it."""
    if length > 255:
        return bytes((flags | EXTENDED_LENGTH, type_code)) + length.to_bytes(2, "big")
    return bytes((flags & ~EXTENDED_LENGTH, type_code, length))


class Attribute:
    """Base of every path attribute."""

    __slots__ = ()
    TYPE: ClassVar[int] = -1
    FLAGS: ClassVar[int] = 0  # the Optional and Transitive bits this type must carry
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.TREAT_AS_WITHDRAW

    @property
    def type_code(self) -> int:
        return self.TYPE

    @property
    def flags(self) -> int:
        return self.FLAGS

    def encode_value(self, ctx: DecodeContext) -> bytes:
        raise NotImplementedError

    def encode(self, ctx: DecodeContext) -> bytes:
        value = self.encode_value(ctx)
        return attribute_header(self.flags, self.type_code, len(value)) + value

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> Attribute:
        raise NotImplementedError


def _u32s(value: bytes) -> tuple[int, ...]:
    return tuple(int.from_bytes(value[i : i + 4], "big") for i in range(0, len(value), 4))


class Origin(enum.IntEnum):
    IGP = 0
    EGP = 1
    INCOMPLETE = 2


@dataclass(frozen=True, slots=True)
class OriginAttribute(Attribute):
    """ORIGIN (RFC 4271 §5.1.1); malformed -> treat-as-withdraw (RFC 7606 §7.1)."""

    TYPE: ClassVar[int] = 1
    FLAGS: ClassVar[int] = TRANSITIVE
    value: int = Origin.IGP

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return bytes((self.value,))

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> OriginAttribute:
        if len(value) != 1:
            raise Malformed(Sub.AttributeLengthError, "ORIGIN length is not 1")
        if value[0] > Origin.INCOMPLETE:
            raise Malformed(Sub.InvalidORIGINAttribute, f"ORIGIN value {value[0]}")
        return cls(value[0])


AS_SET = 1
AS_SEQUENCE = 2
AS_CONFED_SEQUENCE = 3
AS_CONFED_SET = 4

Segment = tuple[int, tuple[int, ...]]


def _decode_segments(value: bytes, width: int, allowed: tuple[int, ...]) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    i = 0
    n = len(value)
    while i < n:
        if i + 2 > n:
            raise Malformed(Sub.MalformedAS_PATH, "truncated segment header")
        seg_type, count = value[i], value[i + 1]
        if seg_type not in allowed:
            raise Malformed(Sub.MalformedAS_PATH, f"segment type {seg_type}")
        if count == 0:
            raise Malformed(Sub.MalformedAS_PATH, "empty segment")
        end = i + 2 + count * width
        if end > n:
            raise Malformed(Sub.MalformedAS_PATH, "segment overruns the attribute")
        asns = tuple(int.from_bytes(value[j : j + width], "big") for j in range(i + 2, end, width))
        if 0 in asns:
            raise Malformed(Sub.MalformedAS_PATH, "AS number 0 (RFC 7607 §2)")
        segments.append((seg_type, asns))
        i = end
    return tuple(segments)


def _encode_segments(segments: tuple[Segment, ...], width: int) -> bytes:
    out = bytearray()
    for seg_type, asns in segments:
        if not 0 < len(asns) <= 255:
            raise ValueError(f"AS_PATH segment of {len(asns)} ASNs (1..255 allowed)")
        out += bytes((seg_type, len(asns)))
        for asn in asns:
            # RFC 6793 §4.2.2: AS_TRANS for a 2-octet peer; the builder adds AS4_PATH.
            wire = AS_TRANS if width == 2 and asn > 0xFFFF else asn
            out += wire.to_bytes(width, "big")
    return bytes(out)


def path_length(segments: tuple[Segment, ...]) -> int:
    """AS_PATH length for route selection (RFC 4271 §9.1.2.2: a SET counts 1, confed 0)."""
    total = 0
    for seg_type, asns in segments:
        if seg_type == AS_SEQUENCE:
            total += len(asns)
        elif seg_type == AS_SET:
            total += 1
    return total


@dataclass(frozen=True, slots=True)
class AsPathAttribute(Attribute):
    """AS_PATH (RFC 4271 §5.1.2; 2- or 4-octet per RFC 6793); malformed -> treat-as-withdraw."""

    TYPE: ClassVar[int] = 2
    FLAGS: ClassVar[int] = TRANSITIVE
    segments: tuple[Segment, ...] = ()

    @classmethod
    def sequence(cls, *asns: int) -> AsPathAttribute:
        return cls(((AS_SEQUENCE, tuple(asns)),) if asns else ())

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return _encode_segments(self.segments, 4 if ctx.four_octet_as else 2)

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> AsPathAttribute:
        width = 4 if ctx.four_octet_as else 2
        return cls(_decode_segments(value, width, (1, 2, 3, 4)))


def _ipv4_host(value: bytes) -> bool:
    first = value[0]
    return value != b"\0\0\0\0" and first < 224  # not 0.0.0.0, multicast or class E


@dataclass(frozen=True, slots=True)
class NextHopAttribute(Attribute):
    """NEXT_HOP (RFC 4271 §5.1.3), 4 octets; malformed -> treat-as-withdraw (RFC 7606 §7.3)."""

    TYPE: ClassVar[int] = 3
    FLAGS: ClassVar[int] = TRANSITIVE
    address: bytes

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return self.address

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> NextHopAttribute:
        if len(value) != 4:
            raise Malformed(Sub.AttributeLengthError, "NEXT_HOP length is not 4")
        if not _ipv4_host(value):
            raise Malformed(Sub.InvalidNEXT_HOPAttribute, "NEXT_HOP is not a host address")
        return cls(value)


@dataclass(frozen=True, slots=True)
class MultiExitDiscAttribute(Attribute):
    """MULTI_EXIT_DISC (RFC 4271 §5.1.4); malformed -> treat-as-withdraw (RFC 7606 §7.4)."""

    TYPE: ClassVar[int] = 4
    FLAGS: ClassVar[int] = OPTIONAL
    value: int

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return self.value.to_bytes(4, "big")

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> MultiExitDiscAttribute:
        if len(value) != 4:
            raise Malformed(Sub.AttributeLengthError, "MULTI_EXIT_DISC length is not 4")
        return cls(int.from_bytes(value, "big"))


@dataclass(frozen=True, slots=True)
class LocalPrefAttribute(Attribute):
    """LOCAL_PREF (RFC 4271 §5.1.5); malformed -> treat-as-withdraw (RFC 7606 §7.5)."""

    TYPE: ClassVar[int] = 5
    FLAGS: ClassVar[int] = TRANSITIVE
    value: int

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return self.value.to_bytes(4, "big")

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> LocalPrefAttribute:
        if len(value) != 4:
            raise Malformed(Sub.AttributeLengthError, "LOCAL_PREF length is not 4")
        return cls(int.from_bytes(value, "big"))


@dataclass(frozen=True, slots=True)
class AtomicAggregateAttribute(Attribute):
    """ATOMIC_AGGREGATE (RFC 4271 §5.1.6); malformed -> attribute-discard (RFC 7606 §7.6)."""

    TYPE: ClassVar[int] = 6
    FLAGS: ClassVar[int] = TRANSITIVE
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.ATTRIBUTE_DISCARD

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> AtomicAggregateAttribute:
        if value:
            raise Malformed(Sub.AttributeLengthError, "ATOMIC_AGGREGATE length is not 0")
        return cls()


@dataclass(frozen=True, slots=True)
class AggregatorAttribute(Attribute):
    """AGGREGATOR (RFC 4271 §5.1.7, RFC 6793); malformed -> attribute-discard (RFC 7606 §7.7)."""

    TYPE: ClassVar[int] = 7
    FLAGS: ClassVar[int] = OPTIONAL | TRANSITIVE
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.ATTRIBUTE_DISCARD
    asn: int
    address: bytes

    def encode_value(self, ctx: DecodeContext) -> bytes:
        if ctx.four_octet_as:
            return self.asn.to_bytes(4, "big") + self.address
        asn = self.asn if self.asn <= 0xFFFF else AS_TRANS
        return asn.to_bytes(2, "big") + self.address

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> AggregatorAttribute:
        width = 4 if ctx.four_octet_as else 2
        if len(value) != width + 4:
            raise Malformed(Sub.AttributeLengthError, f"AGGREGATOR length is not {width + 4}")
        asn = int.from_bytes(value[:width], "big")
        if asn == 0:
            raise Malformed(Sub.OptionalAttributeError, "AGGREGATOR AS 0 (RFC 7607 §2)")
        return cls(asn, value[width:])


@dataclass(frozen=True, slots=True)
class CommunitiesAttribute(Attribute):
    """COMMUNITIES (RFC 1997), 32-bit values (their text forms: speaker.api.communities);
    malformed -> treat-as-withdraw (RFC 7606 §7.8)."""

    TYPE: ClassVar[int] = 8
    FLAGS: ClassVar[int] = OPTIONAL | TRANSITIVE
    values: tuple[int, ...]

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return b"".join(v.to_bytes(4, "big") for v in self.values)

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> CommunitiesAttribute:
        if not value or len(value) % 4:
            raise Malformed(Sub.AttributeLengthError, "COMMUNITIES length not a multiple of 4")
        return cls(_u32s(value))


@dataclass(frozen=True, slots=True)
class OriginatorIdAttribute(Attribute):
    """ORIGINATOR_ID (RFC 4456); malformed -> treat-as-withdraw (RFC 7606 §7.9)."""

    TYPE: ClassVar[int] = 9
    FLAGS: ClassVar[int] = OPTIONAL
    value: int

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return self.value.to_bytes(4, "big")

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> OriginatorIdAttribute:
        if len(value) != 4:
            raise Malformed(Sub.AttributeLengthError, "ORIGINATOR_ID length is not 4")
        return cls(int.from_bytes(value, "big"))


@dataclass(frozen=True, slots=True)
class ClusterListAttribute(Attribute):
    """CLUSTER_LIST (RFC 4456); malformed -> treat-as-withdraw (RFC 7606 §7.10)."""

    TYPE: ClassVar[int] = 10
    FLAGS: ClassVar[int] = OPTIONAL
    ids: tuple[int, ...]

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return b"".join(v.to_bytes(4, "big") for v in self.ids)

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> ClusterListAttribute:
        if not value or len(value) % 4:
            raise Malformed(Sub.AttributeLengthError, "CLUSTER_LIST length not a multiple of 4")
        return cls(_u32s(value))


# Next hop lengths we accept per family: IPv4 (or IPv6 per RFC 8950), IPv6 global [+ link-local].
_NEXT_HOP_LENGTHS: dict[Family, tuple[int, ...]] = {
    (AFI_IPV4, SAFI_UNICAST): (4, 16, 32),
    (AFI_IPV6, SAFI_UNICAST): (16, 32),
}


def _mp_nlri(
    data: bytes, family: Family, ctx: DecodeContext
) -> tuple[tuple[Prefix, ...], tuple[int, ...]]:
    bits = MAX_BITS[family[0]]
    if family in ctx.add_path:
        prefixes, ids = decode_prefixes_add_path(data, bits)
        return tuple(prefixes), tuple(ids)
    return tuple(decode_prefixes(data, bits)), ()


def _mp_family(value: bytes, minimum: int, name: str) -> Family:
    if len(value) < minimum:
        raise Malformed(Sub.OptionalAttributeError, f"{name} too short")
    family = (int.from_bytes(value[:2], "big"), value[2])
    if family not in _NEXT_HOP_LENGTHS:
        err = Malformed(Sub.OptionalAttributeError, f"{name} for unsupported AFI/SAFI {family}")
        err.family = family
        raise err
    return family


def _encode_mp_nlri(
    family: Family, prefixes: tuple[Prefix, ...], ids: tuple[int, ...], ctx: DecodeContext
) -> bytes:
    if family in ctx.add_path:
        return encode_prefixes_add_path(prefixes, ids or (0,) * len(prefixes))
    return encode_prefixes(prefixes)


@dataclass(frozen=True, slots=True, kw_only=True)
class MpReachNlriAttribute(Attribute):
    """MP_REACH_NLRI (RFC 4760 §3); malformed -> session reset / AFI-SAFI disable (RFC 7606 §7.11).

    `next_hop` is the raw field: 4 octets (IPv4), 16 (IPv6 global) or 32 (global + link-local).
    """

    TYPE: ClassVar[int] = 14
    FLAGS: ClassVar[int] = OPTIONAL
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.AFI_SAFI_DISABLE
    afi: int
    safi: int = SAFI_UNICAST
    next_hop: bytes
    nlri: tuple[Prefix, ...] = ()
    path_ids: tuple[int, ...] = ()

    @property
    def family(self) -> Family:
        return self.afi, self.safi

    @property
    def next_hop_global(self) -> bytes:
        return self.next_hop[:16] if len(self.next_hop) >= 16 else self.next_hop

    @property
    def next_hop_link_local(self) -> bytes | None:
        return self.next_hop[16:] if len(self.next_hop) == 32 else None

    def encode_value(self, ctx: DecodeContext) -> bytes:
        head = self.afi.to_bytes(2, "big") + bytes((self.safi, len(self.next_hop)))
        nlri = _encode_mp_nlri(self.family, self.nlri, self.path_ids, ctx)
        return head + self.next_hop + b"\0" + nlri

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> MpReachNlriAttribute:
        family = _mp_family(value, 5, "MP_REACH_NLRI")
        nh_len = value[3]
        if nh_len not in _NEXT_HOP_LENGTHS[family] or len(value) < 5 + nh_len:
            err = Malformed(Sub.OptionalAttributeError, f"next hop length {nh_len}")
            err.family = family
            raise err
        try:
            nlri, ids = _mp_nlri(value[5 + nh_len :], family, ctx)
        except BGPError as exc:
            err = Malformed(Sub.OptionalAttributeError, f"MP_REACH_NLRI: {exc.reason}")
            err.family = family
            raise err from None
        return cls(
            afi=family[0],
            safi=family[1],
            next_hop=value[4 : 4 + nh_len],
            nlri=nlri,
            path_ids=ids,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MpUnreachNlriAttribute(Attribute):
    """MP_UNREACH_NLRI (RFC 4760 §4); an empty one is End-of-RIB (RFC 4724 §2)."""

    TYPE: ClassVar[int] = 15
    FLAGS: ClassVar[int] = OPTIONAL
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.AFI_SAFI_DISABLE
    afi: int
    safi: int = SAFI_UNICAST
    withdrawn: tuple[Prefix, ...] = ()
    path_ids: tuple[int, ...] = ()

    @property
    def family(self) -> Family:
        return self.afi, self.safi

    def encode_value(self, ctx: DecodeContext) -> bytes:
        head = self.afi.to_bytes(2, "big") + bytes((self.safi,))
        return head + _encode_mp_nlri(self.family, self.withdrawn, self.path_ids, ctx)

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> MpUnreachNlriAttribute:
        family = _mp_family(value, 3, "MP_UNREACH_NLRI")
        try:
            withdrawn, ids = _mp_nlri(value[3:], family, ctx)
        except BGPError as exc:
            err = Malformed(Sub.OptionalAttributeError, f"MP_UNREACH_NLRI: {exc.reason}")
            err.family = family
            raise err from None
        return cls(afi=family[0], safi=family[1], withdrawn=withdrawn, path_ids=ids)


@dataclass(frozen=True, slots=True)
class ExtendedCommunitiesAttribute(Attribute):
    """EXTENDED_COMMUNITIES (RFC 4360), 8 octets each as ints; malformed -> treat-as-withdraw."""

    TYPE: ClassVar[int] = 16
    FLAGS: ClassVar[int] = OPTIONAL | TRANSITIVE
    values: tuple[int, ...]

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return b"".join(v.to_bytes(8, "big") for v in self.values)

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> ExtendedCommunitiesAttribute:
        if not value or len(value) % 8:
            raise Malformed(Sub.AttributeLengthError, "EXTENDED_COMMUNITIES length not 8k")
        return cls(tuple(int.from_bytes(value[i : i + 8], "big") for i in range(0, len(value), 8)))


@dataclass(frozen=True, slots=True)
class As4PathAttribute(Attribute):
    """AS4_PATH (RFC 6793 §3); malformed -> attribute-discard (RFC 6793 §6)."""

    TYPE: ClassVar[int] = 17
    FLAGS: ClassVar[int] = OPTIONAL | TRANSITIVE
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.ATTRIBUTE_DISCARD
    segments: tuple[Segment, ...] = ()

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return _encode_segments(self.segments, 4)

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> As4PathAttribute:
        # Confederation segments are not allowed in AS4_PATH (RFC 6793 §3).
        return cls(_decode_segments(value, 4, (AS_SET, AS_SEQUENCE)))


@dataclass(frozen=True, slots=True)
class As4AggregatorAttribute(Attribute):
    """AS4_AGGREGATOR (RFC 6793 §3); malformed -> attribute-discard (RFC 6793 §6)."""

    TYPE: ClassVar[int] = 18
    FLAGS: ClassVar[int] = OPTIONAL | TRANSITIVE
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.ATTRIBUTE_DISCARD
    asn: int
    address: bytes

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return self.asn.to_bytes(4, "big") + self.address

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> As4AggregatorAttribute:
        if len(value) != 8:
            raise Malformed(Sub.AttributeLengthError, "AS4_AGGREGATOR length is not 8")
        asn = int.from_bytes(value[:4], "big")
        if asn == 0:
            raise Malformed(Sub.OptionalAttributeError, "AS4_AGGREGATOR AS 0 (RFC 7607 §2)")
        return cls(asn, value[4:])


LargeCommunity = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class LargeCommunitiesAttribute(Attribute):
    """LARGE_COMMUNITY (RFC 8092); malformed -> treat-as-withdraw (RFC 8092 §6)."""

    TYPE: ClassVar[int] = 32
    FLAGS: ClassVar[int] = OPTIONAL | TRANSITIVE
    values: tuple[LargeCommunity, ...]

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return b"".join(
            a.to_bytes(4, "big") + b.to_bytes(4, "big") + c.to_bytes(4, "big")
            for a, b, c in self.values
        )

    @classmethod
    def decode_value(cls, value: bytes, ctx: DecodeContext) -> LargeCommunitiesAttribute:
        if not value or len(value) % 12:
            raise Malformed(Sub.AttributeLengthError, "LARGE_COMMUNITY length not 12k")
        u = _u32s(value)
        return cls(tuple((u[i], u[i + 1], u[i + 2]) for i in range(0, len(u), 3)))


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownAttribute(Attribute):
    """An optional attribute without a class here: kept with its flags and raw value.

    Before passing a transitive one on, call `for_propagation()` (sets Partial, RFC 4271 §5).
    """

    type_code: int  # a field where the base class has a property
    flags: int  # without Extended Length: encode() chooses it
    value: bytes

    @property
    def transitive(self) -> bool:
        return bool(self.flags & TRANSITIVE)

    def for_propagation(self) -> UnknownAttribute:
        return replace(self, flags=self.flags | PARTIAL)

    def encode_value(self, ctx: DecodeContext) -> bytes:
        return self.value


ATTRIBUTES: dict[int, type[Attribute]] = {
    OriginAttribute.TYPE: OriginAttribute,
    AsPathAttribute.TYPE: AsPathAttribute,
    NextHopAttribute.TYPE: NextHopAttribute,
    MultiExitDiscAttribute.TYPE: MultiExitDiscAttribute,
    LocalPrefAttribute.TYPE: LocalPrefAttribute,
    AtomicAggregateAttribute.TYPE: AtomicAggregateAttribute,
    AggregatorAttribute.TYPE: AggregatorAttribute,
    CommunitiesAttribute.TYPE: CommunitiesAttribute,
    OriginatorIdAttribute.TYPE: OriginatorIdAttribute,
    ClusterListAttribute.TYPE: ClusterListAttribute,
    MpReachNlriAttribute.TYPE: MpReachNlriAttribute,
    MpUnreachNlriAttribute.TYPE: MpUnreachNlriAttribute,
    ExtendedCommunitiesAttribute.TYPE: ExtendedCommunitiesAttribute,
    As4PathAttribute.TYPE: As4PathAttribute,
    As4AggregatorAttribute.TYPE: As4AggregatorAttribute,
    LargeCommunitiesAttribute.TYPE: LargeCommunitiesAttribute,
}

# RFC 4271 §6.3: these subcodes carry the erroneous attribute (type, length, value) as data.
_DATA_IS_ATTRIBUTE = frozenset(
    {
        Sub.UnrecognizedWellKnownAttribute,
        Sub.AttributeFlagsError,
        Sub.AttributeLengthError,
        Sub.InvalidORIGINAttribute,
        Sub.InvalidNEXT_HOPAttribute,
        Sub.OptionalAttributeError,
    }
)


def notification_data(subcode: int, attribute: bytes) -> bytes:
    """The NOTIFICATION data RFC 4271 §6.3 prescribes for an error in `attribute`."""
    return attribute if subcode in _DATA_IS_ATTRIBUTE else b""


def merge_as4_path(
    as_path: tuple[Segment, ...], as4_path: tuple[Segment, ...]
) -> tuple[Segment, ...]:
    """RFC 6793 §4.2.3: rebuild the 4-octet path from AS_PATH (with AS_TRANS) and AS4_PATH."""
    n_path = sum(len(a) if t == AS_SEQUENCE else 1 for t, a in as_path if t in (1, 2))
    n_as4 = sum(len(a) if t == AS_SEQUENCE else 1 for t, a in as4_path)
    if n_path < n_as4:
        return as_path  # AS4_PATH is ignored
    keep = n_path - n_as4  # leading path elements of AS_PATH to keep
    out: list[Segment] = []
    for seg_type, asns in as_path:
        if keep <= 0:
            break
        if seg_type == AS_SEQUENCE:
            taken = asns[:keep]
            keep -= len(taken)
            out.append((seg_type, taken))
        elif seg_type == AS_SET:
            keep -= 1
            out.append((seg_type, asns))
        else:
            out.append((seg_type, asns))
    for segment in as4_path:
        if (
            out
            and out[-1][0] == AS_SEQUENCE == segment[0]
            and len(out[-1][1]) + len(segment[1]) <= 255
        ):
            out[-1] = (AS_SEQUENCE, out[-1][1] + segment[1])
        else:
            out.append(segment)
    return tuple(out)


def attributes_for_two_octet_peer(attributes: Sequence[Attribute]) -> tuple[Attribute, ...]:
    """Add AS4_PATH / AS4_AGGREGATOR when a 2-octet peer would see AS_TRANS (RFC 6793 §4.2.2)."""
    out = list(attributes)
    for attr in attributes:
        if isinstance(attr, AsPathAttribute) and any(
            asn > 0xFFFF for _, asns in attr.segments for asn in asns
        ):
            segs = tuple(s for s in attr.segments if s[0] in (AS_SET, AS_SEQUENCE))
            out.append(As4PathAttribute(segs))
        elif isinstance(attr, AggregatorAttribute) and attr.asn > 0xFFFF:
            out.append(As4AggregatorAttribute(attr.asn, attr.address))
    return tuple(out)
