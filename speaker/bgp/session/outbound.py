"""What one session sends of its routes: Adj-RIB-Out feeding, End-of-RIB, route refresh served.

`Outbound` holds the desired routes (`set_routes`: a `Desired`, whose tables every session of
a state shares), the routes reflected to this peer (`set_reflected`, RFC 4456:
`speaker.bgp.rib.reflection`) and the session's Adj-RIB-Out. What the session announces is its
export view: the desired routes, plus the reflected routes for prefixes the desired routes do
not give this peer (our own advertisement wins). On establishment the whole export view goes
out for the negotiated families, then End-of-RIB per family (RFC 4724 §2; a restarting
speaker may hold it back, `speaker/bgp/session/graceful_restart.py`); while Established only
the difference to what was sent, or, when the runtime changed the shared tables in place
(`routes_changed`), only the keys it names. A ROUTE-REFRESH (RFC 2918) for a negotiated
family re-sends that family's Adj-RIB-Out; unknown subtypes (RFC 7313 §5) and families (RFC
2918 §4) are ignored.

Methods return wire bytes, one UPDATE per item; the FSM counts and sends them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from speaker.bgp.rib.adj_rib_out import (
    EMPTY,
    AdjRibOut,
    Desired,
    FamilyTable,
    Nlri,
    PathAttributes,
    PlainTable,
    RibChange,
    encode_change,
    resolved_keys,
)
from speaker.bgp.rib.update_builder import UpdateBuilder
from speaker.bgp.wire.context import DecodeContext, Family
from speaker.bgp.wire.messages import RouteRefresh, RouteRefreshSubtype
from speaker.bgp.wire.nlri import Prefix


@dataclass(frozen=True, slots=True)
class RouteRefreshServed:
    """The peer asked for `family` again (ROUTE-REFRESH): `prefixes` re-sent."""

    family: Family
    prefixes: int


class Outbound:
    """One session's Adj-RIB-Out and the desired table it follows."""

    __slots__ = ("desired", "reflected", "refreshes_served", "rib_out", "skipped_routes")

    def __init__(self) -> None:
        self.rib_out = AdjRibOut()
        self.desired: Desired = EMPTY
        self.reflected: dict[Family, dict[Nlri, PathAttributes]] = {}
        self.skipped_routes = 0  # announced prefixes with no usable next hop, last change
        self.refreshes_served = 0

    def export(self) -> Desired:
        """What the session should announce: the desired routes, and the reflected routes of
        prefixes they do not give this peer. Without reflected routes, the desired routes
        themselves (shared tables, no copy)."""
        if not any(self.reflected.values()):
            return self.desired
        tables: dict[Family, FamilyTable] = dict(self.desired.tables)
        resolvers = dict(self.desired.resolvers)
        for family, routes in self.reflected.items():
            if routes:
                merged = dict(routes)
                merged.update(self._own(family))
                tables[family] = PlainTable(merged)
                resolvers.pop(family, None)
        return Desired(tables, resolvers)

    def _own(self, family: Family) -> dict[Nlri, PathAttributes]:
        """Our own routes of `family` as this peer gets them."""
        table = self.desired.tables.get(family)
        return {} if table is None else resolved_keys(table, self.desired.resolver(family))

    def _owns(self, family: Family, key: Nlri) -> bool:
        table = self.desired.tables.get(family)
        if table is None:
            return False
        value = table.routes.get(key)
        return value is not None and self.desired.resolver(family)(value) is not None

    def established(
        self, families: Iterable[Family], ctx: DecodeContext, local: bytes
    ) -> list[bytes]:
        """The whole export view for `families` (a new session starts from nothing)."""
        self.rib_out.clear()
        return self._encode(self.rib_out.update(self.export(), families), ctx, local)

    def set_routes(
        self, desired: Desired, families: Iterable[Family], ctx: DecodeContext | None, local: bytes
    ) -> list[bytes]:
        """New desired routes; with `ctx` (Established), the difference to send."""
        self.desired = desired
        if ctx is None:
            return []
        return self._encode(self.rib_out.update(self.export(), families), ctx, local)

    def set_reflected(
        self,
        changes: Mapping[Family, Mapping[Prefix, PathAttributes | None]],
        families: Iterable[Family],
        ctx: DecodeContext | None,
        local: bytes,
    ) -> list[bytes]:
        """Reflected routes changed (None: gone); with `ctx`, the difference to send: only
        for prefixes the desired table does not have (there, our own advertisement wins)."""
        effective: dict[Family, dict[Nlri, PathAttributes | None]] = {}
        for family, routes in changes.items():
            table = self.reflected.setdefault(family, {})
            visible = effective[family] = {}
            for key, attrs in routes.items():
                if attrs is None:
                    table.pop(key, None)
                else:
                    table[key] = attrs
                if not self._owns(family, key):
                    visible[key] = attrs
        if ctx is None:
            return []
        change = RibChange()
        for family in families:
            found = effective.get(family)
            if found:
                self.rib_out.apply(family, found, change)
        return self._encode(change, ctx, local)

    def routes_changed(
        self,
        changes: Mapping[Family, Sequence[tuple[Nlri, Any, Any]]],
        families: Iterable[Family],
        ctx: DecodeContext | None,
        local: bytes,
    ) -> list[bytes]:
        """The desired tables changed in place: per family (key, value before, value after).
        With `ctx` (Established), what to send for those keys alone (a family that also has
        reflected routes is worked out whole, from the export view)."""
        if ctx is None:
            return []
        negotiated = set(families)
        change = RibChange()
        stale: list[Family] = []
        for family, changed in changes.items():
            if family not in negotiated:
                continue
            if self.rib_out.sent.get(family) is not self.desired.tables.get(family):
                stale.append(family)  # not what was sent: work it out whole
                continue
            part = self.rib_out.changed(family, changed)
            change.withdrawn.update(part.withdrawn)
            change.announced.update(part.announced)
        if stale:
            whole = self.rib_out.update(self.export(), stale)
            change.withdrawn.update(whole.withdrawn)
            change.announced.update(whole.announced)
        return self._encode(change, ctx, local)

    @staticmethod
    def end_of_rib(families: Iterable[Family], ctx: DecodeContext) -> list[bytes]:
        builder = UpdateBuilder(ctx)
        return [builder.end_of_rib(family) for family in families]

    def route_refresh(
        self,
        refresh: RouteRefresh,
        families: frozenset[Family],
        ctx: DecodeContext,
        local: bytes,
    ) -> tuple[list[bytes], RouteRefreshServed | None]:
        """Serve a ROUTE-REFRESH: the family's Adj-RIB-Out again, or nothing if ignored."""
        family = (refresh.afi, refresh.safi)
        if refresh.subtype != RouteRefreshSubtype.NORMAL or family not in families:
            return [], None
        self.refreshes_served += 1
        change = self.rib_out.full(family)
        messages = self._encode(change, ctx, local)
        sent = change.counts[0] - self.skipped_routes if change else 0
        return messages, RouteRefreshServed(family, sent)

    def clear(self) -> None:
        self.rib_out.clear()

    def _encode(self, change: RibChange, ctx: DecodeContext, local: bytes) -> list[bytes]:
        if not change:
            return []
        messages, skipped = encode_change(change, UpdateBuilder(ctx), local)
        self.skipped_routes = skipped
        return messages


__all__ = ["Outbound", "RouteRefreshServed"]
