"""Adj-RIB-In: what one peer has sent us, kept as decoded values for status and later import.

RFC 7606 is already applied by the decoder: a treat-as-withdraw UPDATE arrives with its NLRI
moved to the withdrawn routes, a discarded attribute is simply absent. One `ReceivedPath` is
shared by every prefix of an UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass

from speaker.bgp.wire.attributes import Attribute, MpReachNlriAttribute, MpUnreachNlriAttribute
from speaker.bgp.wire.context import IPV4_UNICAST, Family
from speaker.bgp.wire.messages import Update
from speaker.bgp.wire.nlri import Prefix


@dataclass(frozen=True, slots=True)
class ReceivedPath:
    """The attributes of a received route (without MP_*), and its next hop."""

    attributes: tuple[Attribute, ...]
    next_hop: bytes | None


class AdjRibIn:
    __slots__ = ("routes",)

    def __init__(self) -> None:
        self.routes: dict[Family, dict[Prefix, ReceivedPath]] = {}

    def __len__(self) -> int:
        return sum(len(t) for t in self.routes.values())

    def count(self, family: Family) -> int:
        return len(self.routes.get(family, ()))

    def apply(self, update: Update) -> tuple[int, int]:
        """Apply one decoded UPDATE; returns (prefixes added or replaced, prefixes removed)."""
        added = removed = 0
        attrs = tuple(
            a
            for a in update.attributes
            if not isinstance(a, MpReachNlriAttribute | MpUnreachNlriAttribute)
        )
        if update.withdrawn:
            table = self.routes.get(IPV4_UNICAST, {})
            for prefix in update.withdrawn:
                removed += table.pop(prefix, None) is not None
        unreach = update.mp_unreach
        if unreach is not None and unreach.withdrawn:
            table = self.routes.get(unreach.family, {})
            for prefix in unreach.withdrawn:
                removed += table.pop(prefix, None) is not None
        if update.nlri:
            nh = update.attribute(3)
            path = ReceivedPath(attrs, getattr(nh, "address", None))
            table = self.routes.setdefault(IPV4_UNICAST, {})
            for prefix in update.nlri:
                table[prefix] = path
            added += len(update.nlri)
        reach = update.mp_reach
        if reach is not None and reach.nlri:
            path = ReceivedPath(attrs, reach.next_hop_global)
            table = self.routes.setdefault(reach.family, {})
            for prefix in reach.nlri:
                table[prefix] = path
            added += len(reach.nlri)
        return added, removed

    def clear(self) -> None:
        self.routes.clear()
