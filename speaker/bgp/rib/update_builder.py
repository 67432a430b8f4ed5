"""Pack routes into the fewest UPDATE messages the session's size limit allows.

Routes that share an attribute set go out together: the attributes are encoded once and the
prefixes (`Prefix`: already their wire form, never ipaddress objects) are cut into runs that
fill each message up to the negotiated maximum (4096, or 65535 with RFC 8654). With small shared
attributes (ORIGIN, a one-ASN AS_PATH, NEXT_HOP: 20 octets) a 4096-octet UPDATE carries
(4096 - 19 - 2 - 2 - 20) // 5 = 810 IPv4 /32s.

Path attributes go out in ascending type code (RFC 4271 §5 SHOULD), except MP_REACH_NLRI,
which is first (RFC 7606 §5.1); NEXT_HOP for classic IPv4 thus sits between AS_PATH and MED.

Packing is greedy in the order given: optimal (the fewest messages) when the prefixes have one
length, as within a family of host routes, and at most one message more than optimal otherwise
per short run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from speaker.bgp.wire.attributes import (
    OPTIONAL,
    Attribute,
    MpReachNlriAttribute,
    MpUnreachNlriAttribute,
    NextHopAttribute,
    attribute_header,
    attributes_for_two_octet_peer,
)
from speaker.bgp.wire.context import DEFAULT_CONTEXT, IPV4_UNICAST, DecodeContext, Family
from speaker.bgp.wire.framing import HEADER_LEN, MARKER, UPDATE
from speaker.bgp.wire.messages import end_of_rib
from speaker.bgp.wire.nlri import Prefix

_EMPTY_ATTRS = b"\0\0"
_MP_ATTR_HEADER = 4  # flags, type, 2-octet extended length: the worst case we budget for
_UNIFORM_RUN = 32  # entries from which checking for one size pays


def _entries(
    family: Family, ctx: DecodeContext, prefixes: Sequence[Prefix], path_ids: Sequence[int] | None
) -> Sequence[bytes]:
    """The NLRI entries: the prefixes as they are, each after its path identifier under
    ADD-PATH (RFC 7911 §3)."""
    if family in ctx.add_path:
        ids = path_ids if path_ids is not None else [0] * len(prefixes)
        if len(ids) != len(prefixes):
            raise ValueError("one path identifier per prefix")
        return [pid.to_bytes(4, "big") + p for p, pid in zip(prefixes, ids, strict=True)]
    return prefixes


def _pack(entries: Sequence[bytes], budget: int) -> list[bytes]:
    """Cut encoded prefixes into runs of at most `budget` octets, in order."""
    if budget <= 0:
        raise ValueError("the attributes leave no room for a single prefix")
    n = len(entries)
    if n > _UNIFORM_RUN:
        # Entries of one size (host routes): join once and slice, no loop per prefix.
        sizes = set(map(len, entries))
        if len(sizes) == 1:
            (size,) = sizes
            step = budget // size * size
            if not step:
                raise ValueError("the attributes leave no room for a single prefix")
            blob = b"".join(entries)
            return [blob[i : i + step] for i in range(0, len(blob), step)]
    runs: list[bytes] = []
    run: list[bytes] = []
    size = 0
    join = b"".join
    for entry in entries:
        n = len(entry)
        if size + n > budget:
            if not run:
                raise ValueError("the attributes leave no room for a single prefix")
            runs.append(join(run))
            run = [entry]
            size = n
        else:
            run.append(entry)
            size += n
    if run:
        runs.append(join(run))
    return runs


def _type_code(attribute: Attribute) -> int:
    return attribute.type_code


def _message(body: bytes) -> bytes:
    return MARKER + (HEADER_LEN + len(body)).to_bytes(2, "big") + bytes((UPDATE,)) + body


@dataclass(frozen=True, slots=True)
class UpdateBuilder:
    """Encodes announcements and withdrawals for one session's negotiated context."""

    ctx: DecodeContext = DEFAULT_CONTEXT

    def _attr_blob(self, attributes: Sequence[Attribute], *, classic: bool) -> bytes:
        """The attributes but MP_*, encoded in ascending type code (RFC 4271 §5)."""
        attrs = [
            a
            for a in attributes
            if not isinstance(a, MpReachNlriAttribute | MpUnreachNlriAttribute)
            and (classic or not isinstance(a, NextHopAttribute))
        ]
        if not self.ctx.four_octet_as:
            attrs = list(attributes_for_two_octet_peer(attrs))
        attrs.sort(key=_type_code)
        return b"".join(a.encode(self.ctx) for a in attrs)

    def announce(
        self,
        family: Family,
        attributes: Sequence[Attribute],
        prefixes: Sequence[Prefix],
        *,
        next_hop: bytes,
        path_ids: Sequence[int] | None = None,
        ipv4_in_mp: bool = False,
    ) -> list[bytes]:
        """UPDATEs announcing `prefixes` with one shared attribute set; fewest messages.

        IPv4 unicast goes in the classic NLRI field with a NEXT_HOP attribute unless
        `ipv4_in_mp`; every other family (and IPv4 then) in MP_REACH_NLRI, first attribute
        (RFC 7606 §5.1). `next_hop` is 4 octets for IPv4, 16 or 32 (global + link-local) for IPv6.
        """
        if not prefixes:
            return []
        entries = _entries(family, self.ctx, prefixes, path_ids)
        return self.announce_nlri(
            family, attributes, entries, next_hop=next_hop, ipv4_in_mp=ipv4_in_mp
        )

    def announce_nlri(
        self,
        family: Family,
        attributes: Sequence[Attribute],
        entries: Sequence[bytes],
        *,
        next_hop: bytes,
        ipv4_in_mp: bool = False,
    ) -> list[bytes]:
        """As `announce`, with the prefixes already in their wire form (one NLRI entry each:
        length octet and prefix octets, with the path identifier first under ADD-PATH)."""
        if not entries:
            return []
        room = self.ctx.max_message - HEADER_LEN - 4
        if family == IPV4_UNICAST and not ipv4_in_mp:
            attrs = [a for a in attributes if not isinstance(a, NextHopAttribute)]
            attrs.append(NextHopAttribute(next_hop))
            blob = self._attr_blob(attrs, classic=True)
            head = _EMPTY_ATTRS + len(blob).to_bytes(2, "big") + blob
            return [_message(head + run) for run in _pack(entries, room - len(blob))]
        blob = self._attr_blob(attributes, classic=False)
        mp_head = family[0].to_bytes(2, "big") + bytes((family[1], len(next_hop))) + next_hop
        mp_head += b"\0"
        budget = room - len(blob) - _MP_ATTR_HEADER - len(mp_head)
        out = []
        for run in _pack(entries, budget):
            value_len = len(mp_head) + len(run)
            mp = attribute_header(OPTIONAL, MpReachNlriAttribute.TYPE, value_len) + mp_head + run
            attrs_len = len(mp) + len(blob)
            out.append(_message(_EMPTY_ATTRS + attrs_len.to_bytes(2, "big") + mp + blob))
        return out

    def withdraw(
        self,
        family: Family,
        prefixes: Sequence[Prefix],
        *,
        path_ids: Sequence[int] | None = None,
        ipv4_in_mp: bool = False,
    ) -> list[bytes]:
        """UPDATEs withdrawing `prefixes`: classic withdrawn field for IPv4, else MP_UNREACH."""
        if not prefixes:
            return []
        entries = _entries(family, self.ctx, prefixes, path_ids)
        return self.withdraw_nlri(family, entries, ipv4_in_mp=ipv4_in_mp)

    def withdraw_nlri(
        self, family: Family, entries: Sequence[bytes], *, ipv4_in_mp: bool = False
    ) -> list[bytes]:
        """As `withdraw`, with the prefixes already in their wire form."""
        if not entries:
            return []
        room = self.ctx.max_message - HEADER_LEN - 4
        if family == IPV4_UNICAST and not ipv4_in_mp:
            return [
                _message(len(run).to_bytes(2, "big") + run + b"\0\0")
                for run in _pack(entries, room)
            ]
        mp_head = family[0].to_bytes(2, "big") + bytes((family[1],))
        out = []
        for run in _pack(entries, room - _MP_ATTR_HEADER - len(mp_head)):
            value_len = len(mp_head) + len(run)
            mp = attribute_header(OPTIONAL, MpUnreachNlriAttribute.TYPE, value_len) + mp_head + run
            out.append(_message(_EMPTY_ATTRS + len(mp).to_bytes(2, "big") + mp))
        return out

    def end_of_rib(self, family: Family) -> bytes:
        """End-of-RIB (RFC 4724 §2) for `family`."""
        return end_of_rib(family).encode(self.ctx)
