"""Capabilities advertised in OPEN (RFC 5492) and the Capabilities optional parameter.

One frozen class per capability code, one explicit table `CAPABILITIES` from code to class.
Unknown codes are kept as `UnknownCapability` and re-encode to the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from speaker.bgp.wire.context import Family
from speaker.bgp.wire.errors import BGPError, ErrorCode, OPENMessageErrorSubcode


def _malformed(name: str, value: bytes) -> BGPError:
    # RFC 5492 names no subcode for a malformed capability; OPEN Message Error/Unspecific.
    return BGPError(
        ErrorCode.OPENMessageError,
        OPENMessageErrorSubcode.Unspecific,
        reason=f"malformed {name} capability ({value.hex() or 'empty'})",
    )


class Capability:
    """Base of every capability: `CODE`, `encode()`, `decode_value(value)`."""

    __slots__ = ()
    CODE: ClassVar[int] = -1

    @property
    def code(self) -> int:
        return self.CODE

    def encode_value(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        value = self.encode_value()
        if len(value) > 255:
            raise ValueError(f"capability {self.code} value is {len(value)} > 255 octets")
        return bytes((self.code, len(value))) + value

    @classmethod
    def decode_value(cls, value: bytes) -> Capability:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class MultiprotocolCapability(Capability):
    """RFC 4760 §8: one (AFI, SAFI) the speaker can exchange."""

    CODE: ClassVar[int] = 1
    afi: int
    safi: int

    def encode_value(self) -> bytes:
        return self.afi.to_bytes(2, "big") + bytes((0, self.safi))

    @classmethod
    def decode_value(cls, value: bytes) -> MultiprotocolCapability:
        if len(value) != 4:
            raise _malformed("multiprotocol", value)
        return cls(int.from_bytes(value[:2], "big"), value[3])


@dataclass(frozen=True, slots=True)
class RouteRefreshCapability(Capability):
    """RFC 2918."""

    CODE: ClassVar[int] = 2

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes) -> RouteRefreshCapability:
        if value:
            raise _malformed("route refresh", value)
        return cls()


@dataclass(frozen=True, slots=True)
class ExtendedNextHopCapability(Capability):
    """RFC 8950: (NLRI AFI, NLRI SAFI, next hop AFI) triples."""

    CODE: ClassVar[int] = 5
    entries: tuple[tuple[int, int, int], ...]

    def encode_value(self) -> bytes:
        return b"".join(
            a.to_bytes(2, "big") + s.to_bytes(2, "big") + n.to_bytes(2, "big")
            for a, s, n in self.entries
        )

    @classmethod
    def decode_value(cls, value: bytes) -> ExtendedNextHopCapability:
        if not value or len(value) % 6:
            raise _malformed("extended next hop", value)
        return cls(
            tuple(
                (
                    int.from_bytes(value[i : i + 2], "big"),
                    int.from_bytes(value[i + 2 : i + 4], "big"),
                    int.from_bytes(value[i + 4 : i + 6], "big"),
                )
                for i in range(0, len(value), 6)
            )
        )


@dataclass(frozen=True, slots=True)
class ExtendedMessageCapability(Capability):
    """RFC 8654: messages up to 65535 octets."""

    CODE: ClassVar[int] = 6

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes) -> ExtendedMessageCapability:
        if value:
            raise _malformed("extended message", value)
        return cls()


GR_RESTART = 0x8  # R: the sender has restarted (RFC 4724 §3)
GR_NOTIFICATION = 0x4  # N: graceful notification (RFC 8538)
GR_FORWARDING = 0x80  # F: per family, forwarding state preserved


@dataclass(frozen=True, slots=True, kw_only=True)
class GracefulRestartCapability(Capability):
    """RFC 4724 §3: restart flags (R, N), restart time, (AFI, SAFI, flags with F) per family."""

    CODE: ClassVar[int] = 64
    flags: int = 0
    restart_time: int
    families: tuple[tuple[int, int, int], ...] = ()

    @property
    def restarting(self) -> bool:
        return bool(self.flags & GR_RESTART)

    def forwarding_preserved(self, family: Family) -> bool:
        return any((a, s) == family and f & GR_FORWARDING for a, s, f in self.families)

    def encode_value(self) -> bytes:
        head = ((self.flags & 0xF) << 12 | (self.restart_time & 0xFFF)).to_bytes(2, "big")
        return head + b"".join(a.to_bytes(2, "big") + bytes((s, f)) for a, s, f in self.families)

    @classmethod
    def decode_value(cls, value: bytes) -> GracefulRestartCapability:
        if len(value) < 2 or (len(value) - 2) % 4:
            raise _malformed("graceful restart", value)
        head = int.from_bytes(value[:2], "big")
        return cls(
            flags=head >> 12,
            restart_time=head & 0xFFF,
            families=tuple(
                (int.from_bytes(value[i : i + 2], "big"), value[i + 2], value[i + 3])
                for i in range(2, len(value), 4)
            ),
        )


@dataclass(frozen=True, slots=True)
class FourOctetASCapability(Capability):
    """RFC 6793 §3: the speaker's real (possibly > 65535) AS number."""

    CODE: ClassVar[int] = 65
    asn: int

    def encode_value(self) -> bytes:
        return self.asn.to_bytes(4, "big")

    @classmethod
    def decode_value(cls, value: bytes) -> FourOctetASCapability:
        if len(value) != 4:
            raise _malformed("4-octet AS", value)
        return cls(int.from_bytes(value, "big"))


ADD_PATH_RECEIVE = 1
ADD_PATH_SEND = 2


@dataclass(frozen=True, slots=True)
class AddPathCapability(Capability):
    """RFC 7911 §4: (AFI, SAFI, Send/Receive: 1 receive, 2 send, 3 both)."""

    CODE: ClassVar[int] = 69
    entries: tuple[tuple[int, int, int], ...]

    def encode_value(self) -> bytes:
        return b"".join(a.to_bytes(2, "big") + bytes((s, sr)) for a, s, sr in self.entries)

    @classmethod
    def decode_value(cls, value: bytes) -> AddPathCapability:
        if not value or len(value) % 4:
            raise _malformed("ADD-PATH", value)
        return cls(
            tuple(
                (int.from_bytes(value[i : i + 2], "big"), value[i + 2], value[i + 3])
                for i in range(0, len(value), 4)
            )
        )


@dataclass(frozen=True, slots=True)
class EnhancedRouteRefreshCapability(Capability):
    """RFC 7313 §3."""

    CODE: ClassVar[int] = 70

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes) -> EnhancedRouteRefreshCapability:
        if value:
            raise _malformed("enhanced route refresh", value)
        return cls()


@dataclass(frozen=True, slots=True)
class LongLivedGracefulRestartCapability(Capability):
    """RFC 9494 §2: (AFI, SAFI, flags, long-lived stale time in seconds, 24 bits)."""

    CODE: ClassVar[int] = 71
    entries: tuple[tuple[int, int, int, int], ...]

    def encode_value(self) -> bytes:
        return b"".join(
            a.to_bytes(2, "big") + bytes((s, f)) + t.to_bytes(3, "big")
            for a, s, f, t in self.entries
        )

    @classmethod
    def decode_value(cls, value: bytes) -> LongLivedGracefulRestartCapability:
        if len(value) % 7:
            raise _malformed("long-lived graceful restart", value)
        return cls(
            tuple(
                (
                    int.from_bytes(value[i : i + 2], "big"),
                    value[i + 2],
                    value[i + 3],
                    int.from_bytes(value[i + 4 : i + 7], "big"),
                )
                for i in range(0, len(value), 7)
            )
        )


@dataclass(frozen=True, slots=True)
class FQDNCapability(Capability):
    """draft-walton-bgp-hostname-capability (code 73): host and domain name.

    Names are decoded with surrogateescape so any octets re-encode unchanged.
    """

    CODE: ClassVar[int] = 73
    hostname: str
    domain: str = ""

    def encode_value(self) -> bytes:
        host = self.hostname.encode("utf-8", "surrogateescape")
        domain = self.domain.encode("utf-8", "surrogateescape")
        if len(host) > 255 or len(domain) > 255:
            raise ValueError("FQDN names are at most 255 octets")
        return bytes((len(host),)) + host + bytes((len(domain),)) + domain

    @classmethod
    def decode_value(cls, value: bytes) -> FQDNCapability:
        if not value or len(value) < 1 + value[0] + 1:
            raise _malformed("FQDN", value)
        n = value[0]
        m = value[1 + n]
        if len(value) != 2 + n + m:
            raise _malformed("FQDN", value)
        return cls(
            value[1 : 1 + n].decode("utf-8", "surrogateescape"),
            value[2 + n :].decode("utf-8", "surrogateescape"),
        )


@dataclass(frozen=True, slots=True)
class UnknownCapability(Capability):
    """Any capability code without a class here: kept raw, re-encoded as received."""

    type_code: int
    value: bytes

    @property
    def code(self) -> int:
        return self.type_code

    def encode_value(self) -> bytes:
        return self.value


CAPABILITIES: dict[int, type[Capability]] = {
    MultiprotocolCapability.CODE: MultiprotocolCapability,
    RouteRefreshCapability.CODE: RouteRefreshCapability,
    ExtendedNextHopCapability.CODE: ExtendedNextHopCapability,
    ExtendedMessageCapability.CODE: ExtendedMessageCapability,
    GracefulRestartCapability.CODE: GracefulRestartCapability,
    FourOctetASCapability.CODE: FourOctetASCapability,
    AddPathCapability.CODE: AddPathCapability,
    EnhancedRouteRefreshCapability.CODE: EnhancedRouteRefreshCapability,
    LongLivedGracefulRestartCapability.CODE: LongLivedGracefulRestartCapability,
    FQDNCapability.CODE: FQDNCapability,
}


def decode_capabilities(data: bytes) -> list[Capability]:
    """The capabilities inside one Capabilities optional parameter (RFC 5492 §4)."""
    out: list[Capability] = []
    i = 0
    n = len(data)
    while i < n:
        if i + 2 > n or i + 2 + data[i + 1] > n:
            raise _malformed("capability TLV overruns its parameter:", data[i:])
        code = data[i]
        value = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
        cls = CAPABILITIES.get(code)
        out.append(UnknownCapability(code, value) if cls is None else cls.decode_value(value))
    return out
