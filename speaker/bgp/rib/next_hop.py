"""Next-hop resolution for route selection (RFC 4271 §9.1.2.1), as an injected pure interface.

The Loc-RIB asks a `NextHopResolver` for the cost of reaching a next hop: an int (the IGP cost;
0 for a directly connected network) or None when the next hop is not reachable, which makes
the route ineligible. A next hop counts as reachable only through a route that is not ours: a
BGP route we installed ourselves never resolves another (no recursion through our own routes).

`RoutingTableResolver` is the implementation the runtime feeds from the kernel: it hands over
the node's routes (connected ones with cost 0, others with their metric), marking our own; the
resolver answers by longest-prefix match. A default route resolves nothing unless
`resolve_via_default` (FRR's `ip nht resolve-via-default`, off there by default too): a
management default route must not make every next hop look reachable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6
from speaker.bgp.wire.nlri import MAX_BITS


class NextHopResolver(Protocol):
    def cost(self, next_hop: bytes) -> int | None:
        """The cost to reach `next_hop` (4 or 16 octets), or None if it is unreachable."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolverRoute:
    """One route of the node's table as the resolver needs it."""

    afi: int
    network: int  # the address as an int, host bits zero
    length: int
    cost: int = 0  # 0 for a connected network; otherwise the route's metric
    ours: bool = False  # installed by us (our protocol number): never resolves a next hop


class RoutingTableResolver:
    """Longest-prefix match over the routes it was given; pure."""

    __slots__ = ("_lengths", "_tables", "resolve_via_default")

    def __init__(
        self, routes: Iterable[ResolverRoute] = (), *, resolve_via_default: bool = False
    ) -> None:
        self.resolve_via_default = resolve_via_default
        self._tables: dict[int, dict[int, dict[int, int]]] = {}
        self._lengths: dict[int, tuple[int, ...]] = {}
        self.set_routes(routes)

    def set_routes(self, routes: Iterable[ResolverRoute]) -> None:
        """Replace the whole table (the runtime re-reads it when the kernel's routes change)."""
        tables: dict[int, dict[int, dict[int, int]]] = {AFI_IPV4: {}, AFI_IPV6: {}}
        for route in routes:
            if route.ours or route.afi not in tables:
                continue
            if route.length == 0 and not self.resolve_via_default:
                continue
            bits = MAX_BITS[route.afi]
            key = route.network >> (bits - route.length)
            by_key = tables[route.afi].setdefault(route.length, {})
            old = by_key.get(key)
            by_key[key] = route.cost if old is None else min(old, route.cost)
        self._tables = tables
        self._lengths = {afi: tuple(sorted(t, reverse=True)) for afi, t in tables.items()}

    def cost(self, next_hop: bytes) -> int | None:
        afi = AFI_IPV4 if len(next_hop) == 4 else AFI_IPV6 if len(next_hop) == 16 else 0
        if not afi:
            return None
        table = self._tables[afi]
        bits = MAX_BITS[afi]
        address = int.from_bytes(next_hop, "big")
        for length in self._lengths[afi]:
            found = table[length].get(address >> (bits - length))
            if found is not None:
                return found
        return None
