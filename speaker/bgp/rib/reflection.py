"""Route reflection (RFC 4456) as a consumer of the Loc-RIB: which best paths go to which iBGP
peer's Adj-RIB-Out, with which attributes. Pure: no I/O, no clock.

A speaker reflects when it has at least one route reflector client. Then, per prefix, the best
path (`Selection.best`) learned from an iBGP peer is reflected (§6):
- from a client: to every other iBGP peer, clients and non-clients;
- from a non-client: to every client;
never back to the peer it came from, never to an eBGP peer. ORIGINATOR_ID is set to the
originator's router id when absent (§8: the BGP Identifier of the peer that sent it into the
AS, which is what `Candidate.router_id` holds when the path has none), our CLUSTER_ID is
prepended to CLUSTER_LIST, the next hop and every other attribute stay as the Loc-RIB has them
(after import policy). Paths learned over eBGP are not re-advertised at all: kubgp is a node,
not a transit router. The receiving half drops paths with our ORIGINATOR_ID or CLUSTER_ID
(`LocRib`, §8), so a reflected route that comes back is never a candidate.

Output is per peer, only what changed: `{peer: {family: {prefix: PathAttributes | None}}}`
(None: no reflected route for the prefix any more). The session merges it with our own
advertisements, our own winning for the same prefix (`speaker.bgp.session.outbound`): that is
the per-peer export view, our advertisements plus reflected best paths (docs/route-import.md).

Incremental: a Loc-RIB change of one prefix touches only the peers whose reflected entry for
that prefix changes (the old and new targets and attributes are compared); remembering what
was reflected costs one small tuple per reflected prefix. A change of the peer set or the
cluster id recomputes the reflected table from the Loc-RIB once and emits the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.adj_rib_out import AttributeInterner, PathAttributes
from speaker.bgp.rib.decision import Candidate, Selection
from speaker.bgp.rib.loc_rib import RouteChange
from speaker.bgp.wire.attributes import (
    Attribute,
    ClusterListAttribute,
    NextHopAttribute,
    OriginatorIdAttribute,
)
from speaker.bgp.wire.context import Family
from speaker.bgp.wire.nlri import Prefix

ExportChanges = dict[Family, dict[Prefix, PathAttributes | None]]
PATH_CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflectionPeer:
    """An iBGP peer, as reflection sees it."""

    name: str
    client: bool  # a route reflector client (`routeReflectorClient`)
    families: frozenset[Family]


class SelectedRoutes(Protocol):
    """What a reconfiguration reads of the Loc-RIB (`LocRib` has it)."""

    def families(self) -> tuple[Family, ...]: ...

    def table(self, family: Family) -> Mapping[Prefix, Selection]: ...


# What is reflected for a prefix: (attributes, the peer it came from, whether that is a client).
_Sent = tuple[PathAttributes, str, bool]


def reflected_attributes(path: ReceivedPath, originator: int, cluster_id: int) -> PathAttributes:
    """The path as reflected: ORIGINATOR_ID kept or set to `originator`, `cluster_id`
    prepended to CLUSTER_LIST, no NEXT_HOP attribute (the next hop is the path's, unchanged),
    attributes in type-code order."""
    attrs: list[Attribute] = []
    clusters: tuple[int, ...] = ()
    has_originator = False
    for attr in path.attributes:
        if isinstance(attr, ClusterListAttribute):
            clusters = attr.ids
        elif isinstance(attr, NextHopAttribute):
            continue
        else:
            has_originator = has_originator or isinstance(attr, OriginatorIdAttribute)
            attrs.append(attr)
    if not has_originator:
        attrs.append(OriginatorIdAttribute(originator))
    attrs.append(ClusterListAttribute((cluster_id, *clusters)))
    attrs.sort(key=lambda a: a.type_code)
    return PathAttributes(tuple(attrs), path.next_hop)


class Reflector:
    """RFC 4456 route reflection for one speaker (see the module doc)."""

    __slots__ = ("_cache", "_clients", "_interner", "_peers", "_sent", "cluster_id")

    def __init__(self, *, cluster_id: int, interner: AttributeInterner | None = None) -> None:
        self.cluster_id = cluster_id
        self._interner = interner if interner is not None else AttributeInterner()
        self._peers: dict[str, ReflectionPeer] = {}
        self._clients = 0
        self._sent: dict[Family, dict[Prefix, _Sent]] = {}
        # id(path) -> (path, originator, reflected attributes): one computation per path
        self._cache: dict[int, tuple[ReceivedPath, int, PathAttributes]] = {}

    @property
    def active(self) -> bool:
        """Some peer is a client: this speaker is a route reflector."""
        return self._clients > 0

    @property
    def peers(self) -> Mapping[str, ReflectionPeer]:
        return self._peers

    def __len__(self) -> int:
        """Prefixes reflected (to one peer or more)."""
        return sum(len(t) for t in self._sent.values())

    # ---- changing ----------------------------------------------------------------------------

    def configure(
        self, peers: Iterable[ReflectionPeer], cluster_id: int, rib: SelectedRoutes
    ) -> dict[str, ExportChanges]:
        """A new set of iBGP peers (or cluster id): everything reflected is worked out again
        from the Loc-RIB's selection; returns what changed for each peer."""
        old_peers, old_sent = self._peers, self._sent
        old_cluster = self.cluster_id
        self._peers = {p.name: p for p in peers}
        self._clients = sum(1 for p in self._peers.values() if p.client)
        if cluster_id != old_cluster:
            self._cache.clear()
        self.cluster_id = cluster_id
        self._sent = {}
        out: dict[str, ExportChanges] = {}
        if self.active:
            for family in rib.families():
                sent = self._sent.setdefault(family, {})
                for prefix, sel in rib.table(family).items():
                    entry = self._reflect(sel)
                    if entry is not None:
                        sent[prefix] = entry
        families = set(old_sent) | set(self._sent)
        for family in families:
            before = old_sent.get(family, {})
            after = self._sent.get(family, {})
            for prefix in before.keys() | after.keys():
                old, new = before.get(prefix), after.get(prefix)
                self._diff(out, family, prefix, old, new, old_peers=old_peers)
        return out

    def changed(self, changes: Sequence[RouteChange]) -> dict[str, ExportChanges]:
        """Loc-RIB changes in; per peer, the reflected routes that changed out."""
        out: dict[str, ExportChanges] = {}
        if not self.active and not self._sent:
            return out
        peers = self._peers
        for family, prefix, sel, _ in changes:
            sent = self._sent.get(family)
            old = sent.get(prefix) if sent is not None else None
            new = None if sel is None else self._reflect(sel)
            if new == old:
                continue
            if new is None:
                assert sent is not None
                del sent[prefix]
            else:
                if sent is None:
                    sent = self._sent[family] = {}
                sent[prefix] = new
            self._diff(out, family, prefix, old, new, old_peers=peers)
        return out

    def table(self, peer: str) -> dict[Family, dict[Prefix, PathAttributes]]:
        """Everything reflected to `peer` now (for tests and status)."""
        target = self._peers.get(peer)
        out: dict[Family, dict[Prefix, PathAttributes]] = {}
        if target is None:
            return out
        for family, sent in self._sent.items():
            if family not in target.families:
                continue
            for prefix, entry in sent.items():
                if _gets(target, entry):
                    out.setdefault(family, {})[prefix] = entry[0]
        return out

    def counts(self) -> dict[str, int]:
        """Per iBGP peer, the prefixes reflected to it now (for metrics: one pass over what is
        reflected per peer)."""
        out: dict[str, int] = {}
        for name, peer in self._peers.items():
            out[name] = sum(
                1
                for family, sent in self._sent.items()
                if family in peer.families
                for entry in sent.values()
                if _gets(peer, entry)
            )
        return out

    # ---- inside ------------------------------------------------------------------------------

    def _reflect(self, sel: Selection) -> _Sent | None:
        best: Candidate = sel.best
        source = self._peers.get(best.peer)
        if source is None or not self.active:
            return None  # learned over eBGP (or from a peer no longer ours): not reflected
        path = best.path
        cached = self._cache.get(id(path))
        if cached is not None and cached[0] is path and cached[1] == best.router_id:
            attrs = cached[2]
        else:
            attrs = self._interner.intern(
                reflected_attributes(path, best.router_id, self.cluster_id)
            )
            if len(self._cache) >= PATH_CACHE_SIZE:
                self._cache.clear()
            self._cache[id(path)] = (path, best.router_id, attrs)
        return (attrs, source.name, source.client)

    def _diff(
        self,
        out: dict[str, ExportChanges],
        family: Family,
        prefix: Prefix,
        old: _Sent | None,
        new: _Sent | None,
        *,
        old_peers: Mapping[str, ReflectionPeer],
    ) -> None:
        """Into `out`, per current peer, what changes for `prefix` going from `old` (as
        `old_peers` received it) to `new`. Removed peers get nothing: their session goes."""
        for name, peer in self._peers.items():
            if family not in peer.families:
                continue
            has = new is not None and _gets(peer, new)
            was = old_peers.get(name)
            had = old is not None and was is not None and family in was.families and _gets(was, old)
            if has:
                assert new is not None
                if had and old is not None and old[0] is new[0]:
                    continue
                out.setdefault(name, {}).setdefault(family, {})[prefix] = new[0]
            elif had:
                out.setdefault(name, {}).setdefault(family, {})[prefix] = None


__all__ = [
    "ExportChanges",
    "ReflectionPeer",
    "Reflector",
    "RouteChange",
    "SelectedRoutes",
    "reflected_attributes",
]


def _gets(peer: ReflectionPeer, entry: _Sent) -> bool:
    """Does `peer` receive a route reflected from `entry`'s source? (RFC 4456 §6)"""
    _, source, from_client = entry
    if peer.name == source:
        return False
    return from_client or peer.client
