"""Route selection: RFC 4271 §9.1.2 (Phase 2) over the candidate paths of one prefix.

`decide()` follows the RFC's own form, a sequence of eliminations over the whole set of
candidates (§9.1.2.2), not a pairwise comparison: with MED compared only within a neighbouring
AS, a pairwise "better than" is not transitive, and a pairwise winner can depend on the order
paths arrived in. The elimination always yields the same answer for the same set.

Steps, in order (each keeps only the candidates best at it):
0. eligibility: the next hop resolves (§9.1.2.1; the cost comes from a `NextHopResolver`)
1. highest LOCAL_PREF (received on iBGP or set by import policy; else 100)
2. shortest AS_PATH (an AS_SET counts 1, confederation segments 0)
3. lowest ORIGIN (IGP < EGP < INCOMPLETE)
4. lowest MED among paths from the same neighbouring AS (missing MED = 0); with
   `always_compare_med`, lowest MED over all paths
5. eBGP over iBGP
6. lowest next-hop cost
7. lowest ORIGINATOR_ID, or the peer's BGP Identifier when there is none (RFC 4456 §9)
8. shortest CLUSTER_LIST (RFC 4456 §9)
9. lowest peer address
10. (not in the RFC) lowest peer name: two sessions to one address (different ports) still
    give one answer.

Multipath: the paths left after step 6 (equal through LOCAL_PREF, AS_PATH length, ORIGIN, MED
as above, eBGP/iBGP and next-hop cost), best first, then in the order of steps 7-10, one per
distinct next hop, at most `max_paths`. This is BIRD's rule for merging paths (and FRR's with
`bgp bestpath as-path multipath-relax`); FRR by default also requires an identical AS_PATH for
eBGP multipath. The relaxed rule is the one a node needs: its two ToRs usually sit in different
ASes, send the same default route with paths [65001] and [65002], and the node must spread its
traffic over both. See docs/route-import.md.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.received_attributes import (
    as_path,
    cluster_list,
    local_pref,
    med,
    neighbor_as,
    origin,
    originator_id,
)
from speaker.bgp.wire.attributes import path_length

CostOf = Callable[[bytes], "int | None"]


class Step(enum.IntEnum):
    """The step of the decision that set the best path apart from the next-best eligible one."""

    OnlyPath = 0
    LocalPref = 1
    AsPathLength = 2
    Origin = 3
    Med = 4
    EbgpOverIbgp = 5
    NextHopCost = 6
    RouterId = 7
    ClusterListLength = 8
    PeerAddress = 9
    PeerName = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerInfo:
    """What route selection needs to know about the peer a path came from."""

    name: str
    address: bytes  # packed, 4 or 16 octets
    asn: int
    router_id: int  # the BGP Identifier of its OPEN
    ebgp: bool


class Candidate:
    """One path of one peer as route selection sees it: the values of every step, computed once
    per (peer, imported path) and shared by every prefix that has that path."""

    __slots__ = (
        "_alone",
        "address_key",
        "as_path_length",
        "cluster_list_length",
        "ebgp",
        "local_pref",
        "med",
        "neighbor_as",
        "next_hop",
        "origin",
        "path",
        "peer",
        "router_id",
    )

    def __init__(self, peer: PeerInfo, path: ReceivedPath, next_hop: bytes) -> None:
        attrs = path.attributes
        segments = as_path(attrs)
        originator = originator_id(attrs)
        self.peer = peer.name
        self.path = path
        self.next_hop = next_hop
        self.local_pref = local_pref(attrs)
        self.as_path_length = path_length(segments)
        self.origin = origin(attrs)
        self.med = med(attrs)
        self.neighbor_as = neighbor_as(segments)
        self.ebgp = peer.ebgp
        self.router_id = peer.router_id if originator is None else originator
        self.cluster_list_length = len(cluster_list(attrs))
        self.address_key = (len(peer.address), peer.address)  # IPv4 before IPv6, then numeric
        self._alone: Selection | None = None

    def __repr__(self) -> str:
        return f"Candidate(peer={self.peer!r}, next_hop={self.next_hop.hex()})"

    @property
    def alone(self) -> Selection:
        """The selection when this is the only eligible path (one shared object)."""
        sel = self._alone
        if sel is None:
            sel = self._alone = Selection(best=self, paths=(self,), step=Step.OnlyPath)
        return sel


@dataclass(frozen=True, slots=True, eq=False)
class Selection:
    """The result for one prefix: the best path and the multipath set (best first)."""

    best: Candidate
    paths: tuple[Candidate, ...]
    step: Step
    next_hops: tuple[bytes, ...] = field(init=False)  # of `paths`, one tuple per Selection

    def __post_init__(self) -> None:
        object.__setattr__(self, "next_hops", tuple(c.next_hop for c in self.paths))

    def same_routes(self, other: Selection | None) -> bool:
        """Same best path and same multipath set, by value (which step decided may differ)."""
        return (
            other is not None
            and _same(other.best, self.best)
            and len(other.paths) == len(self.paths)
            and all(_same(a, b) for a, b in zip(other.paths, self.paths, strict=True))
        )


def _same(a: Candidate, b: Candidate) -> bool:
    return a is b or (a.peer == b.peer and a.next_hop == b.next_hop and a.path == b.path)


_Pair = tuple[Candidate, int]  # a candidate and its next-hop cost


def _med_step(pairs: list[_Pair], always_compare_med: bool) -> list[_Pair]:
    if always_compare_med:
        low = min(c.med for c, _ in pairs)
        return [p for p in pairs if p[0].med == low]
    lowest: dict[int | None, int] = {}
    for cand, _ in pairs:
        group = cand.neighbor_as
        old = lowest.get(group)
        if old is None or cand.med < old:
            lowest[group] = cand.med
    return [p for p in pairs if p[0].med == lowest[p[0].neighbor_as]]


def _steps(pairs: list[_Pair], always_compare_med: bool) -> tuple[list[_Pair], Step | None]:
    """Steps 1-6 (the ones that decide multipath): what is left, and the step that left one."""
    high = max(c.local_pref for c, _ in pairs)
    rest = [p for p in pairs if p[0].local_pref == high]
    if len(rest) == 1:
        return rest, Step.LocalPref
    low = min(c.as_path_length for c, _ in rest)
    rest = [p for p in rest if p[0].as_path_length == low]
    if len(rest) == 1:
        return rest, Step.AsPathLength
    low = min(c.origin for c, _ in rest)
    rest = [p for p in rest if p[0].origin == low]
    if len(rest) == 1:
        return rest, Step.Origin
    rest = _med_step(rest, always_compare_med)
    if len(rest) == 1:
        return rest, Step.Med
    if any(c.ebgp for c, _ in rest):
        rest = [p for p in rest if p[0].ebgp]
        if len(rest) == 1:
            return rest, Step.EbgpOverIbgp
    low = min(cost for _, cost in rest)
    rest = [p for p in rest if p[1] == low]
    if len(rest) == 1:
        return rest, Step.NextHopCost
    return rest, None


_TIE_STEPS = (Step.RouterId, Step.ClusterListLength, Step.PeerAddress, Step.PeerName)


def _tie_key(pair: _Pair) -> tuple[int, int, tuple[int, bytes], str]:
    c = pair[0]
    return (c.router_id, c.cluster_list_length, c.address_key, c.peer)


def decide(
    candidates: Iterable[Candidate],
    cost: CostOf,
    *,
    max_paths: int = 1,
    always_compare_med: bool = False,
) -> Selection | None:
    """The best path and multipath set among `candidates`, or None if none is eligible."""
    pairs: list[_Pair] = []
    for cand in candidates:
        c = cost(cand.next_hop)
        if c is not None:
            pairs.append((cand, c))
    if not pairs:
        return None
    if len(pairs) == 1:
        return pairs[0][0].alone
    equal, step = _steps(pairs, always_compare_med)  # `equal`: the multipath set
    if step is not None:
        best = equal[0][0]
        return Selection(best=best, paths=(best,), step=step)
    ordered = sorted(equal, key=_tie_key)
    first, second = _tie_key(ordered[0]), _tie_key(ordered[1])
    differs = [i for i in range(4) if first[i] != second[i]]
    step = _TIE_STEPS[differs[0]] if differs else Step.PeerName
    best = ordered[0][0]
    if max_paths <= 1:
        return Selection(best=best, paths=(best,), step=step)
    paths: list[Candidate] = []
    seen: set[bytes] = set()
    for cand, _ in ordered:
        if cand.next_hop not in seen:
            seen.add(cand.next_hop)
            paths.append(cand)
            if len(paths) == max_paths:
                break
    return Selection(best=best, paths=tuple(paths), step=step)
