"""BGP messages (RFC 4271 §4): OPEN, UPDATE, NOTIFICATION, KEEPALIVE, ROUTE-REFRESH.

`decode_message(type, body, ctx)` returns a message or raises `BGPError`. An UPDATE with
attribute errors that RFC 7606 lets us survive decodes to an `Update` whose `problems` say what
was wrong and whose reachable NLRI were moved to the withdrawn side (treat-as-withdraw), or whose
bad attributes were dropped (attribute-discard).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from speaker.bgp.wire.attributes import (
    ATTRIBUTES,
    EXTENDED_LENGTH,
    OPTIONAL,
    PARTIAL,
    TRANSITIVE,
    As4PathAttribute,
    AsPathAttribute,
    Attribute,
    AttrType,
    ClusterListAttribute,
    LocalPrefAttribute,
    MpReachNlriAttribute,
    MpUnreachNlriAttribute,
    OriginatorIdAttribute,
    Segment,
    UnknownAttribute,
    attribute_header,
    merge_as4_path,
    notification_data,
)
from speaker.bgp.wire.capabilities import (
    Capability,
    FourOctetASCapability,
    decode_capabilities,
)
from speaker.bgp.wire.context import (
    AS_TRANS,
    DEFAULT_CONTEXT,
    IPV4_UNICAST,
    MAX_MESSAGE,
    DecodeContext,
    Family,
)
from speaker.bgp.wire.errors import (
    BGPError,
    CeaseSubcode,
    ErrorAction,
    ErrorCode,
    OPENMessageErrorSubcode,
    Problem,
    ROUTEREFRESHMessageErrorSubcode,
    UPDATEMessageErrorSubcode,
)
from speaker.bgp.wire.framing import (
    HEADER_LEN,
    KEEPALIVE,
    MARKER,
    NOTIFICATION,
    OPEN,
    ROUTE_REFRESH,
    UPDATE,
    Framer,
)
from speaker.bgp.wire.nlri import (
    Prefix,
    decode_prefixes,
    decode_prefixes_add_path,
    encode_prefixes,
    encode_prefixes_add_path,
)

Sub = UPDATEMessageErrorSubcode
BGP_VERSION = 4
CAPABILITIES_PARAMETER = 2
EXTENDED_PARAMETERS = 255  # RFC 9072 §2


def frame(msg_type: int, body: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> bytes:
    """Header + body; ValueError if the result exceeds what the session allows."""
    length = HEADER_LEN + len(body)
    limit = MAX_MESSAGE if msg_type in (OPEN, KEEPALIVE) else ctx.max_message
    if length > limit:
        raise ValueError(f"message of {length} octets exceeds {limit}")
    return MARKER + length.to_bytes(2, "big") + bytes((msg_type,)) + body


class Message:
    """Base of every message: `TYPE`, `encode(ctx)` -> full wire bytes including the header."""

    __slots__ = ()
    TYPE: ClassVar[int] = 0

    def encode_body(self, ctx: DecodeContext) -> bytes:
        raise NotImplementedError

    def encode(self, ctx: DecodeContext = DEFAULT_CONTEXT) -> bytes:
        return frame(self.TYPE, self.encode_body(ctx), ctx)

    @classmethod
    def decode_body(cls, body: bytes, ctx: DecodeContext) -> Message:
        raise NotImplementedError


def _open_error(subcode: int, reason: str, data: bytes = b"") -> BGPError:
    return BGPError(ErrorCode.OPENMessageError, subcode, data, reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class Open(Message):
    """OPEN (RFC 4271 §4.2). `my_as` is the 2-octet field; `asn` the real AS (RFC 6793)."""

    TYPE: ClassVar[int] = OPEN
    version: int = BGP_VERSION
    my_as: int
    hold_time: int
    bgp_id: int
    capabilities: tuple[Capability, ...] = ()

    @classmethod
    def create(
        cls, *, asn: int, hold_time: int, bgp_id: int, capabilities: tuple[Capability, ...] = ()
    ) -> Open:
        """An OPEN for `asn`: AS_TRANS in My AS if it needs 4 octets, plus capability 65."""
        caps = tuple(c for c in capabilities if not isinstance(c, FourOctetASCapability))
        return cls(
            my_as=asn if asn <= 0xFFFF else AS_TRANS,
            hold_time=hold_time,
            bgp_id=bgp_id,
            capabilities=(*caps, FourOctetASCapability(asn)),
        )

    @property
    def asn(self) -> int:
        for cap in self.capabilities:
            if isinstance(cap, FourOctetASCapability):
                return cap.asn
        return self.my_as

    def capability(self, cls: type[Capability]) -> list[Capability]:
        return [c for c in self.capabilities if isinstance(c, cls)]

    def encode_body(self, ctx: DecodeContext) -> bytes:
        params = [
            bytes((CAPABILITIES_PARAMETER, len(enc))) + enc
            for enc in (c.encode() for c in self.capabilities)
        ]
        blob = b"".join(params)
        head = (
            bytes((self.version,))
            + self.my_as.to_bytes(2, "big")
            + self.hold_time.to_bytes(2, "big")
            + self.bgp_id.to_bytes(4, "big")
        )
        if len(blob) < 255:
            return head + bytes((len(blob),)) + blob
        # RFC 9072: 255, 255, then a 2-octet length; each parameter gets a 2-octet length.
        ext = b"".join(
            bytes((CAPABILITIES_PARAMETER,)) + len(c.encode()).to_bytes(2, "big") + c.encode()
            for c in self.capabilities
        )
        return head + bytes((255, EXTENDED_PARAMETERS)) + len(ext).to_bytes(2, "big") + ext

    @classmethod
    def decode_body(cls, body: bytes, ctx: DecodeContext) -> Open:
        if len(body) < 10:
            raise _open_error(OPENMessageErrorSubcode.Unspecific, "OPEN too short")
        version = body[0]
        if version != BGP_VERSION:
            # RFC 4271 §6.2: data is the largest supported version, 2 octets.
            raise _open_error(
                OPENMessageErrorSubcode.UnsupportedVersionNumber,
                f"version {version}",
                BGP_VERSION.to_bytes(2, "big"),
            )
        my_as = int.from_bytes(body[1:3], "big")
        hold_time = int.from_bytes(body[3:5], "big")
        bgp_id = int.from_bytes(body[5:9], "big")
        if hold_time in (1, 2):
            raise _open_error(OPENMessageErrorSubcode.UnacceptableHoldTime, f"hold {hold_time}")
        if bgp_id == 0:
            raise _open_error(OPENMessageErrorSubcode.BadBGPIdentifier, "BGP identifier 0")
        opt_len = body[9]
        params = body[10:]
        extended = opt_len == 255 and len(params) >= 1 and params[0] == EXTENDED_PARAMETERS
        if extended:
            if len(params) < 3:
                raise _open_error(OPENMessageErrorSubcode.Unspecific, "truncated RFC 9072 length")
            opt_len = int.from_bytes(params[1:3], "big")
            params = params[3:]
        if opt_len != len(params):
            raise _open_error(
                OPENMessageErrorSubcode.Unspecific,
                f"optional parameters length {opt_len} != {len(params)}",
            )
        caps: list[Capability] = []
        head = 3 if extended else 2
        i = 0
        while i < len(params):
            if i + head > len(params):
                raise _open_error(OPENMessageErrorSubcode.Unspecific, "truncated parameter")
            p_type = params[i]
            p_len = int.from_bytes(params[i + 1 : i + head], "big")
            value = params[i + head : i + head + p_len]
            if len(value) != p_len:
                raise _open_error(OPENMessageErrorSubcode.Unspecific, "parameter overruns")
            if p_type != CAPABILITIES_PARAMETER:
                raise _open_error(
                    OPENMessageErrorSubcode.UnsupportedOptionalParameter,
                    f"optional parameter type {p_type}",
                )
            caps.extend(decode_capabilities(value))
            i += head + p_len
        opened = cls(
            version=version,
            my_as=my_as,
            hold_time=hold_time,
            bgp_id=bgp_id,
            capabilities=tuple(caps),
        )
        if my_as == 0 or opened.asn == 0:
            # RFC 7607 §2; RFC 4271 §6.2 specifies no data for Bad Peer AS.
            raise _open_error(OPENMessageErrorSubcode.BadPeerAS, "AS 0")
        return opened


@dataclass(frozen=True, slots=True, kw_only=True)
class Update(Message):
    """UPDATE (RFC 4271 §4.3). IPv4 unicast in the classic fields; other families in MP_*.

    `*_path_ids` are the ADD-PATH identifiers, parallel to the prefixes, when negotiated.
    `problems` is non-empty only on a decoded UPDATE that RFC 7606 let us keep.
    """

    TYPE: ClassVar[int] = UPDATE
    withdrawn: tuple[Prefix, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    nlri: tuple[Prefix, ...] = ()
    withdrawn_path_ids: tuple[int, ...] = ()
    nlri_path_ids: tuple[int, ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def treat_as_withdraw(self) -> bool:
        return any(p.action is ErrorAction.TREAT_AS_WITHDRAW for p in self.problems)

    def attribute(self, type_code: int) -> Attribute | None:
        for attr in self.attributes:
            if attr.type_code == type_code:
                return attr
        return None

    @property
    def mp_reach(self) -> MpReachNlriAttribute | None:
        for attr in self.attributes:
            if isinstance(attr, MpReachNlriAttribute):
                return attr
        return None

    @property
    def mp_unreach(self) -> MpUnreachNlriAttribute | None:
        for attr in self.attributes:
            if isinstance(attr, MpUnreachNlriAttribute):
                return attr
        return None

    @property
    def end_of_rib(self) -> Family | None:
        """The family this UPDATE marks End-of-RIB for (RFC 4724 §2), else None."""
        if self.withdrawn or self.nlri or self.problems:
            return None
        if not self.attributes:
            return IPV4_UNICAST
        if len(self.attributes) == 1:
            only = self.attributes[0]
            if isinstance(only, MpUnreachNlriAttribute) and not only.withdrawn:
                return only.family
        return None

    def as_path(self) -> tuple[Segment, ...]:
        """The AS path, with AS4_PATH merged in when present (RFC 6793 §4.2.3)."""
        path: tuple[Segment, ...] = ()
        as4: tuple[Segment, ...] | None = None
        for attr in self.attributes:
            if isinstance(attr, AsPathAttribute):
                path = attr.segments
            elif isinstance(attr, As4PathAttribute):
                as4 = attr.segments
        return path if as4 is None else merge_as4_path(path, as4)

    def encode_body(self, ctx: DecodeContext) -> bytes:
        if IPV4_UNICAST in ctx.add_path:
            withdrawn = encode_prefixes_add_path(
                self.withdrawn, self.withdrawn_path_ids or (0,) * len(self.withdrawn)
            )
            nlri = encode_prefixes_add_path(self.nlri, self.nlri_path_ids or (0,) * len(self.nlri))
        else:
            withdrawn = encode_prefixes(self.withdrawn)
            nlri = encode_prefixes(self.nlri)
        attrs = b"".join(a.encode(ctx) for a in self.attributes)
        return (
            len(withdrawn).to_bytes(2, "big")
            + withdrawn
            + len(attrs).to_bytes(2, "big")
            + attrs
            + nlri
        )

    @classmethod
    def decode_body(cls, body: bytes, ctx: DecodeContext) -> Update:
        return decode_update(body, ctx)


def _malformed_list(reason: str) -> BGPError:
    return BGPError(ErrorCode.UPDATEMessageError, Sub.MalformedAttributeList, reason=reason)


def _classic(data: bytes, ctx: DecodeContext) -> tuple[tuple[Prefix, ...], tuple[int, ...]]:
    # RFC 7606 §5.3: an error in the withdrawn or NLRI fields resets the session.
    if IPV4_UNICAST in ctx.add_path:
        prefixes, ids = decode_prefixes_add_path(data, 32)
        return tuple(prefixes), tuple(ids)
    return tuple(decode_prefixes(data, 32)), ()


# Attributes RFC 7606 §7.5, §7.9, §7.10 tell an eBGP receiver to discard.
_IBGP_ONLY = (LocalPrefAttribute, OriginatorIdAttribute, ClusterListAttribute)


def decode_update(body: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> Update:
    """Decode an UPDATE body with RFC 7606 revised error handling."""
    n = len(body)
    if n < 4:
        raise _malformed_list("UPDATE body shorter than 4 octets")
    wlen = int.from_bytes(body[0:2], "big")
    if 2 + wlen + 2 > n:
        raise _malformed_list(f"withdrawn routes length {wlen} overruns the message")
    alen = int.from_bytes(body[2 + wlen : 4 + wlen], "big")
    a_start = 4 + wlen
    a_end = a_start + alen
    if a_end > n:
        raise _malformed_list(f"total path attribute length {alen} overruns the message")
    withdrawn, withdrawn_ids = _classic(body[2 : 2 + wlen], ctx)
    nlri, nlri_ids = _classic(body[a_end:], ctx)

    attrs: list[Attribute] = []
    problems: list[Problem] = []
    seen: set[int] = set()
    overrun = False
    i = a_start
    while i < a_end:
        flags = body[i]
        head = 4 if flags & EXTENDED_LENGTH else 3
        if i + head > a_end:
            overrun = True
            break
        type_code = body[i + 1]
        length = int.from_bytes(body[i + 2 : i + head], "big")
        if i + head + length > a_end:
            overrun = True
            break
        raw = body[i : i + head + length]
        value = body[i + head : i + head + length]
        i += head + length
        if type_code in seen:
            if type_code in (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI):
                raise _malformed_list(f"attribute {type_code} appears twice")  # RFC 7606 §3(g)
            problems.append(
                Problem(
                    code=ErrorCode.UPDATEMessageError,
                    subcode=Sub.MalformedAttributeList,
                    data=b"",
                    action=ErrorAction.ATTRIBUTE_DISCARD,
                    reason=f"duplicate attribute {type_code} discarded",
                )
            )
            continue
        seen.add(type_code)
        cls = ATTRIBUTES.get(type_code)
        if cls is None:
            if not flags & OPTIONAL:
                raise BGPError(
                    ErrorCode.UPDATEMessageError,
                    Sub.UnrecognizedWellKnownAttribute,
                    raw,
                    reason=f"unrecognized well-known attribute {type_code}",
                )
            attrs.append(
                UnknownAttribute(type_code=type_code, flags=flags & ~EXTENDED_LENGTH, value=value)
            )
            continue
        try:
            expected = cls.FLAGS
            partial_ok = expected == OPTIONAL | TRANSITIVE
            if flags & (OPTIONAL | TRANSITIVE) != expected or (flags & PARTIAL and not partial_ok):
                raise BGPError(
                    ErrorCode.UPDATEMessageError,
                    Sub.AttributeFlagsError,
                    reason=f"attribute {type_code} flags {flags:#04x}",
                )
            attr = cls.decode_value(value, ctx)
        except BGPError as exc:
            action = cls.ON_ERROR
            err = BGPError(
                exc.code,
                exc.subcode,
                notification_data(exc.subcode, raw),
                action,
                reason=exc.reason,
                family=exc.family,
            )
            if action is ErrorAction.AFI_SAFI_DISABLE and err.family is None:
                err.action = ErrorAction.SESSION_RESET
            if err.action in (ErrorAction.SESSION_RESET, ErrorAction.AFI_SAFI_DISABLE):
                raise err from None
            problems.append(err.problem())
            continue
        if ctx.ebgp and isinstance(attr, _IBGP_ONLY):
            continue  # RFC 7606 §7.5, §7.9, §7.10: discard, not an error
        attrs.append(attr)

    mp_reach = next((a for a in attrs if isinstance(a, MpReachNlriAttribute)), None)
    mp_unreach = next((a for a in attrs if isinstance(a, MpUnreachNlriAttribute)), None)
    if overrun:
        # RFC 7606 §4: treat-as-withdraw, if we can still find all the NLRI. An MP_REACH_NLRI
        # after the point we lost sync would be lost, so without NLRI found so far we reset.
        if not (nlri or mp_reach or mp_unreach):
            raise _malformed_list("attribute length overruns the path attributes")
        problems.append(
            Problem(
                code=ErrorCode.UPDATEMessageError,
                subcode=Sub.MalformedAttributeList,
                data=b"",
                action=ErrorAction.TREAT_AS_WITHDRAW,
                reason="attribute length overruns the path attributes",
            )
        )

    # RFC 7606 §3(d): missing well-known mandatory attributes -> treat-as-withdraw.
    if nlri or (mp_reach and mp_reach.nlri):
        required = [AttrType.ORIGIN, AttrType.AS_PATH]
        if nlri:
            required.append(AttrType.NEXT_HOP)
        for missing in (t for t in required if t not in seen):
            problems.append(
                Problem(
                    code=ErrorCode.UPDATEMessageError,
                    subcode=Sub.MissingWellKnownAttribute,
                    data=bytes((missing,)),
                    action=ErrorAction.TREAT_AS_WITHDRAW,
                    reason=f"missing well-known attribute {missing.name}",
                )
            )

    if not any(p.action is ErrorAction.TREAT_AS_WITHDRAW for p in problems):
        return Update(
            withdrawn=withdrawn,
            attributes=tuple(attrs),
            nlri=nlri,
            withdrawn_path_ids=withdrawn_ids,
            nlri_path_ids=nlri_ids,
            problems=tuple(problems),
        )
    # Treat-as-withdraw: every prefix the UPDATE carried becomes a withdrawal.
    unreach: list[Attribute] = []
    if mp_reach is not None:
        if mp_unreach is not None and mp_unreach.family == mp_reach.family:
            unreach.append(
                MpUnreachNlriAttribute(
                    afi=mp_reach.afi,
                    safi=mp_reach.safi,
                    withdrawn=mp_unreach.withdrawn + mp_reach.nlri,
                    path_ids=mp_unreach.path_ids + mp_reach.path_ids,
                )
            )
            mp_unreach = None
        else:
            unreach.append(
                MpUnreachNlriAttribute(
                    afi=mp_reach.afi,
                    safi=mp_reach.safi,
                    withdrawn=mp_reach.nlri,
                    path_ids=mp_reach.path_ids,
                )
            )
    if mp_unreach is not None:
        unreach.append(mp_unreach)
    return Update(
        withdrawn=withdrawn + nlri,
        attributes=tuple(unreach),
        nlri=(),
        withdrawn_path_ids=withdrawn_ids + nlri_ids,
        problems=tuple(problems),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification(Message):
    """NOTIFICATION (RFC 4271 §4.5). Received, it is an event and is never answered (§6.5)."""

    TYPE: ClassVar[int] = NOTIFICATION
    code: int
    subcode: int = 0
    data: bytes = b""

    @classmethod
    def from_error(cls, error: BGPError) -> Notification:
        return cls(code=error.code, subcode=error.subcode, data=error.data)

    @classmethod
    def shutdown(cls, subcode: int, message: str) -> Notification:
        """Cease with a shutdown communication (RFC 9003 §2): length octet + UTF-8, <= 255."""
        text = message.encode("utf-8")[:255]
        while True:  # never cut a UTF-8 sequence in half
            try:
                text.decode("utf-8")
                break
            except UnicodeDecodeError:
                text = text[:-1]
        return cls(code=ErrorCode.Cease, subcode=subcode, data=bytes((len(text),)) + text)

    @property
    def shutdown_message(self) -> str | None:
        """The RFC 9003 communication of a Cease/Administrative Shutdown or Reset, if any."""
        if self.code != ErrorCode.Cease or self.subcode not in (
            CeaseSubcode.AdministrativeShutdown,
            CeaseSubcode.AdministrativeReset,
        ):
            return None
        if not self.data or self.data[0] != len(self.data) - 1:
            return None
        try:
            return self.data[1:].decode("utf-8")
        except UnicodeDecodeError:
            return None

    def encode_body(self, ctx: DecodeContext) -> bytes:
        return bytes((self.code, self.subcode)) + self.data

    @classmethod
    def decode_body(cls, body: bytes, ctx: DecodeContext) -> Notification:
        if len(body) < 2:  # the framer already guarantees this
            raise _malformed_list("NOTIFICATION too short")
        return cls(code=body[0], subcode=body[1], data=body[2:])


@dataclass(frozen=True, slots=True)
class Keepalive(Message):
    """KEEPALIVE (RFC 4271 §4.4): a header and nothing else."""

    TYPE: ClassVar[int] = KEEPALIVE

    def encode_body(self, ctx: DecodeContext) -> bytes:
        return b""

    @classmethod
    def decode_body(cls, body: bytes, ctx: DecodeContext) -> Keepalive:
        return cls()


class RouteRefreshSubtype(enum.IntEnum):
    """RFC 7313 §3.2; other values must be ignored by the receiver."""

    NORMAL = 0
    BoRR = 1
    EoRR = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRefresh(Message):
    """ROUTE-REFRESH (RFC 2918 §3, RFC 7313 §3.2 subtypes)."""

    TYPE: ClassVar[int] = ROUTE_REFRESH
    afi: int
    safi: int
    subtype: int = RouteRefreshSubtype.NORMAL

    def encode_body(self, ctx: DecodeContext) -> bytes:
        return self.afi.to_bytes(2, "big") + bytes((self.subtype, self.safi))

    @classmethod
    def decode_body(cls, body: bytes, ctx: DecodeContext) -> RouteRefresh:
        if len(body) != 4:
            # RFC 7313 §5: the data is the complete ROUTE-REFRESH message. (ORF, RFC 5291, is
            # not supported, so a longer message is treated the same way.)
            whole = frame(ROUTE_REFRESH, body, DecodeContext(extended_message=True))
            raise BGPError(
                ErrorCode.ROUTEREFRESHMessageError,
                ROUTEREFRESHMessageErrorSubcode.InvalidMessageLength,
                whole,
                reason=f"ROUTE-REFRESH body of {len(body)} octets",
            )
        return cls(afi=int.from_bytes(body[:2], "big"), safi=body[3], subtype=body[2])


MESSAGES: dict[int, type[Message]] = {
    OPEN: Open,
    UPDATE: Update,
    NOTIFICATION: Notification,
    KEEPALIVE: Keepalive,
    ROUTE_REFRESH: RouteRefresh,
}


def end_of_rib(family: Family) -> Update:
    """End-of-RIB (RFC 4724 §2): an empty UPDATE for IPv4 unicast, an empty MP_UNREACH else."""
    if family == IPV4_UNICAST:
        return Update()
    return Update(attributes=(MpUnreachNlriAttribute(afi=family[0], safi=family[1]),))


def decode_message(msg_type: int, body: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> Message:
    """Decode a message body the framer cut out; a value or BGPError, nothing else."""
    cls = MESSAGES.get(msg_type)
    if cls is None:  # the framer rejects these first; kept for direct callers
        raise BGPError(ErrorCode.MessageHeaderError, 3, bytes((msg_type & 0xFF,)))
    return cls.decode_body(body, ctx)


def decode_all(data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> list[Message]:
    """Every message in `data` (which must end on a message boundary)."""
    framer = Framer(max_size=ctx.max_message)
    framer.feed(data)
    out = [decode_message(t, b, ctx) for t, b in framer]
    if framer.buffered:
        raise BGPError(
            ErrorCode.MessageHeaderError,
            0,
            reason=f"{framer.buffered} octets of an incomplete message at the end",
        )
    return out


__all__ = [
    "MESSAGES",
    "Keepalive",
    "Message",
    "Notification",
    "Open",
    "RouteRefresh",
    "RouteRefreshSubtype",
    "Update",
    "attribute_header",
    "decode_all",
    "decode_message",
    "decode_update",
    "end_of_rib",
    "frame",
]
