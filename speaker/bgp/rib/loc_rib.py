"""Loc-RIB: per prefix, the paths every peer offers after import policy, and the selected ones.

Input is what the sessions' Adj-RIBs-In did, as values: per peer, changes
`(family, prefix, ReceivedPath | None)` (None: the peer no longer has a route for the prefix).
Each path goes through the peer's `ImportPolicy` and the RFC 4271 §9.1.2 loop checks, becomes
a `Candidate` and route selection (`decision.decide`) runs for every prefix that changed. Output
is only what changed: `(family, prefix, Selection | None)` per prefix whose best path or
multipath set is different afterwards (None: no eligible path any more), so the FIB writer and,
later, route reflection get differences, never the table.

Loops (RFC 4271 §9.1.2, RFC 4456 §8): a path whose AS_PATH holds one of our ASNs, whose
ORIGINATOR_ID is our router id or whose CLUSTER_LIST holds our cluster id is not a candidate.

Memory and time: a prefix one peer offers stores that peer's `Candidate` directly (candidates are
shared by every prefix with the same path), a prefix several peers offer a tuple of them sorted by
peer, itself shared: equal tuples are interned (a bounded table, like the memo below), so the
prefixes of one UPDATE from each of two ToRs hold one tuple, not ~72 bytes each. That is all the
Loc-RIB keeps per prefix: the selection is not stored but derived when asked for, since it is a
function of the entry, the next-hop costs and the options. A single candidate's selection is its
shared `alone` Selection if its next hop resolves; several go through route selection, memoised per
candidate tuple (every prefix of one UPDATE from each of two ToRs has the same tuple, so the memo
stays small and those prefixes share one `Selection`). The memo is bounded and dropped when
next-hop costs or the options change, so deriving again may give an equal Selection that is another
object: changes are found with `same_routes`. Keeping no prefix -> Selection dict saves its ~42
bytes per prefix (~42 MB at 1M routes); the price is that `table()` and `selected_items()` derive
every prefix as they go (a memo or cost lookup each, no route selection unless the memo was
dropped), and that a batch first derives each touched prefix's selection before its entry changes,
to compare with after. Counts stay O(1): selected prefixes per family, best / multipath prefixes
per peer, kept as changes go. A resolver change (`next_hops_changed`) re-decides the prefixes whose
paths use a next hop whose cost changed; it finds them by a scan, not by a per-prefix index (which
would cost ~100 bytes per route).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.decision import Candidate, PeerInfo, Selection, decide
from speaker.bgp.rib.next_hop import NextHopResolver
from speaker.bgp.rib.policy import ImportPolicy, Verdict
from speaker.bgp.rib.received_attributes import as_path, cluster_list, originator_id, path_asns
from speaker.bgp.wire.context import Family
from speaker.bgp.wire.nlri import Prefix

PathChange = tuple[Family, Prefix, ReceivedPath | None]
PathGroup = tuple[Family, Sequence[Prefix], ReceivedPath | None]
# (family, prefix, selection now, selection before): consumers that keep no copy of the table
# (the FIB channel) learn from `before` what they had made of the prefix
RouteChange = tuple[Family, Prefix, Selection | None, Selection | None]
_Entry = Candidate | tuple[Candidate, ...]  # one peer's, or several (sorted by peer name)
# per family, each prefix a batch touched -> its selection before the batch (first touch wins)
_Touched = dict[Family, dict[Prefix, Selection | None]]

CANDIDATE_CACHE_SIZE = 8192
DECISION_CACHE_SIZE = 65536


def _by_peer(cand: Candidate) -> str:
    return cand.peer


@dataclass(frozen=True, slots=True, kw_only=True)
class LocRibOptions:
    local_asns: frozenset[int]  # our ASN and every per-peer local ASN: loop detection
    router_id: int  # ORIGINATOR_ID loop detection (RFC 4456 §8)
    cluster_id: int  # CLUSTER_LIST loop detection; the router id unless configured
    max_paths: int = 1  # ECMP width, >= 1
    always_compare_med: bool = False

    def __post_init__(self) -> None:
        if self.max_paths < 1:
            raise ValueError("max_paths must be at least 1")


class _Peer:
    __slots__ = ("accepted", "cache", "info", "policy")

    def __init__(self, info: PeerInfo, policy: ImportPolicy) -> None:
        self.info = info
        self.policy = policy
        # id(verdict) -> (verdict, its candidate or None when looped / without a next hop)
        self.cache: dict[int, tuple[Verdict, Candidate | None]] = {}
        self.accepted: dict[Family, int] = {}


class LocRib:
    """The Loc-RIB. Pure: no I/O, no clock; the next-hop resolver is injected."""

    __slots__ = (
        "_best",
        "_decisions",
        "_entries",
        "_in_paths",
        "_nh_cost",
        "_peers",
        "_selected_count",
        "_tuples",
        "options",
        "resolver",
    )

    def __init__(self, options: LocRibOptions, resolver: NextHopResolver) -> None:
        self.options = options
        self.resolver = resolver
        self._peers: dict[str, _Peer] = {}
        self._entries: dict[Family, dict[Prefix, _Entry]] = {}
        self._nh_cost: dict[bytes, int | None] = {}
        self._decisions: dict[tuple[Candidate, ...], Selection | None] = {}
        # one object per distinct candidate tuple: every prefix two ToRs both offer in one
        # UPDATE each holds the same tuple, not one of its own (bounded like the memo)
        self._tuples: dict[tuple[Candidate, ...], tuple[Candidate, ...]] = {}
        # kept as changes go: prefixes with a selection per family; per peer, prefixes whose
        # best path / multipath set has its path
        self._selected_count: dict[Family, int] = {}
        self._best: dict[str, int] = {}
        self._in_paths: dict[str, int] = {}

    # ---- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """Prefixes with a selected path."""
        return sum(self._selected_count.values())

    def selected_count(self, family: Family) -> int:
        return self._selected_count.get(family, 0)

    def selected(self, family: Family, prefix: Prefix) -> Selection | None:
        entry = self._entries.get(family, {}).get(prefix)
        return None if entry is None else self._derive(entry)

    def table(self, family: Family) -> dict[Prefix, Selection]:
        """Every selected prefix of `family` (a new dict, derived entry by entry)."""
        return dict(self.selected_items(family))

    def families(self) -> tuple[Family, ...]:
        return tuple(f for f, n in self._selected_count.items() if n)

    def candidates(self, family: Family, prefix: Prefix) -> tuple[Candidate, ...]:
        entry = self._entries.get(family, {}).get(prefix)
        if entry is None:
            return ()
        if isinstance(entry, Candidate):
            return (entry,)
        return entry

    def peers(self) -> tuple[PeerInfo, ...]:
        return tuple(p.info for p in self._peers.values())

    def accepted(self, peer: str, family: Family) -> int:
        """How many prefixes of `family` the peer has in the Loc-RIB as a candidate."""
        p = self._peers.get(peer)
        return 0 if p is None else p.accepted.get(family, 0)

    def best_count(self, peer: str, family: Family) -> int:
        """How many prefixes of `family` have this peer's path as best (a scan; for status)."""
        return sum(1 for _, sel in self.selected_items(family) if sel.best.peer == peer)

    def accepted_total(self, peer: str) -> int:
        """Prefixes (every family) the peer has in the Loc-RIB as a candidate."""
        p = self._peers.get(peer)
        return 0 if p is None else sum(p.accepted.values())

    def selected_items(self, family: Family) -> Iterator[tuple[Prefix, Selection]]:
        """Every selected prefix of `family`, derived as it goes, without a copy (do not change
        the Loc-RIB while iterating)."""
        nh_cost = self._nh_cost
        decisions = self._decisions
        derive = self._derive
        for prefix, entry in self._entries.get(family, {}).items():
            sel: Selection | None
            if isinstance(entry, Candidate):
                # every next hop in an entry has its cost in `_nh_cost` (`_decide` put it there)
                nh = entry.next_hop
                c = nh_cost[nh] if nh in nh_cost else self._cost(nh)
                if c is None:
                    continue
                sel = entry.alone
            else:
                sel = decisions[entry] if entry in decisions else derive(entry)
                if sel is None:
                    continue
            yield prefix, sel

    def best_total(self, peer: str) -> int:
        """Prefixes (every family) whose best path is this peer's; kept up to date, O(1)."""
        return self._best.get(peer, 0)

    def multipath_total(self, peer: str) -> int:
        """Prefixes (every family) whose multipath set (the routes installed) has this peer's
        path; kept up to date, O(1)."""
        return self._in_paths.get(peer, 0)

    # ---- changing --------------------------------------------------------------------------

    def set_peer(
        self, info: PeerInfo, policy: ImportPolicy, routes: Iterable[PathChange] = ()
    ) -> list[RouteChange]:
        """Add a peer, or change what we know of it (a new session: its router id) or its
        policy. `routes` is the peer's whole Adj-RIB-In, re-imported under the new policy; any
        prefix the peer had in the Loc-RIB and `routes` lacks is dropped."""
        old = self._peers.get(info.name)
        self._peers[info.name] = _Peer(info, policy)
        if old is not None:
            self._peers[info.name].accepted = old.accepted  # its candidates are still in place
        if old is None:
            return self.update(info.name, routes)
        routes = list(routes)
        fresh = {(family, prefix) for family, prefix, path in routes if path is not None}
        gone: list[PathChange] = [
            (family, prefix, None)
            for family, prefix in self._prefixes_of(info.name)
            if (family, prefix) not in fresh
        ]
        # Candidates of the old peer object are stale: take them all out, then put back what
        # the new policy accepts. Selection runs once per prefix, so only real changes come out.
        touched: _Touched = {}
        self._apply(self._peers[info.name], [*gone, *routes], touched, replace_all=True)
        return self._decide(touched)

    def remove_peer(self, name: str) -> list[RouteChange]:
        """The peer is gone (deconfigured): its paths leave the Loc-RIB."""
        if name not in self._peers:
            return []
        changes = [(family, prefix, None) for family, prefix in self._prefixes_of(name)]
        touched: _Touched = {}
        self._apply(self._peers[name], changes, touched)
        del self._peers[name]
        return self._decide(touched)

    def update(self, peer: str, changes: Iterable[PathChange]) -> list[RouteChange]:
        """What the peer's Adj-RIB-In did; returns the prefixes whose selection changed."""
        touched: _Touched = {}
        self._apply(self._peers[peer], changes, touched)
        return self._decide(touched)

    def update_groups(self, peer: str, groups: Iterable[PathGroup]) -> list[RouteChange]:
        """`update` for changes that come grouped, `(family, prefixes, path)` (the shape of the
        Adj-RIB-In's change log: one path for every prefix of an UPDATE)."""
        flat = ((family, prefix, path) for family, prefixes, path in groups for prefix in prefixes)
        return self.update(peer, flat)

    def set_options(self, *, max_paths: int, always_compare_med: bool) -> list[RouteChange]:
        """Change the ECMP width or the MED rule; every prefix with several candidates is
        decided again (a single candidate's selection does not depend on the options)."""
        derive = self._derive
        touched: _Touched = {
            family: {p: derive(e) for p, e in table.items() if not isinstance(e, Candidate)}
            for family, table in self._entries.items()
        }  # the selections under the old options, before they change
        opts = self.options
        self.options = LocRibOptions(
            local_asns=opts.local_asns,
            router_id=opts.router_id,
            cluster_id=opts.cluster_id,
            max_paths=max_paths,
            always_compare_med=always_compare_med,
        )
        self._decisions.clear()
        return self._decide(touched)

    def next_hops_changed(self) -> list[RouteChange]:
        """The resolver's answers may have changed (the node's routes did): ask again for every
        next hop in use and decide again the prefixes with a path through one that changed."""
        changed: dict[bytes, int | None] = {}
        for nh, old in self._nh_cost.items():
            new = self.resolver.cost(nh)
            if new != old:
                changed[nh] = new
        if not changed:
            return []
        # the selections under the old costs, before they change
        derive = self._derive
        touched: _Touched = {}
        for family, table in self._entries.items():
            hit = touched.setdefault(family, {})
            for prefix, entry in table.items():
                if isinstance(entry, Candidate):
                    if entry.next_hop in changed:
                        hit[prefix] = derive(entry)
                elif any(c.next_hop in changed for c in entry):
                    hit[prefix] = derive(entry)
        self._nh_cost.update(changed)
        self._decisions.clear()
        return self._decide(touched)

    # ---- inside ----------------------------------------------------------------------------

    def _prefixes_of(self, name: str) -> Iterator[tuple[Family, Prefix]]:
        for family, table in self._entries.items():
            for prefix, entry in table.items():
                if isinstance(entry, Candidate):
                    if entry.peer == name:
                        yield family, prefix
                elif any(c.peer == name for c in entry):
                    yield family, prefix

    def _candidate(
        self, peer: _Peer, afi: int, prefix: Prefix, path: ReceivedPath
    ) -> Candidate | None:
        verdict = peer.policy.evaluate(afi, prefix, path)
        imported = verdict.path
        if imported is None:
            return None
        cached = peer.cache.get(id(verdict))
        if cached is not None and cached[0] is verdict:
            return cached[1]
        cand = self._make_candidate(peer.info, imported)
        if len(peer.cache) >= CANDIDATE_CACHE_SIZE:
            peer.cache.clear()
        peer.cache[id(verdict)] = (verdict, cand)
        return cand

    def _make_candidate(self, info: PeerInfo, path: ReceivedPath) -> Candidate | None:
        opts = self.options
        attrs = path.attributes
        if path.next_hop is None:
            return None
        if not path_asns(as_path(attrs)).isdisjoint(opts.local_asns):
            return None  # AS loop (RFC 4271 §9.1.2)
        if originator_id(attrs) == opts.router_id or opts.cluster_id in cluster_list(attrs):
            return None  # reflected back to us (RFC 4456 §8)
        return Candidate(info, path, path.next_hop)

    def _apply(
        self,
        peer: _Peer,
        changes: Iterable[PathChange],
        touched: _Touched,
        *,
        replace_all: bool = False,
    ) -> None:
        """Changes the entries; `touched` gets each prefix's selection from before its first
        change (the costs and options do not change while it runs)."""
        name = peer.info.name
        accepted = peer.accepted
        entries = self._entries
        candidate = self._candidate
        derive = self._derive
        tuples = self._tuples
        table: dict[Prefix, _Entry] = {}
        hit: dict[Prefix, Selection | None] = {}
        last_family: Family | None = None
        afi = 0
        for family, prefix, path in changes:
            if family != last_family:
                table = entries.setdefault(family, {})
                hit = touched.setdefault(family, {})
                last_family = family
                afi = family[0]
            new = None if path is None else candidate(peer, afi, prefix, path)
            old = table.get(prefix)
            entry: _Entry | None  # what the prefix holds afterwards
            if old is None:
                if new is None:
                    continue
                hit.setdefault(prefix, None)  # no entry, no selection (unless touched before)
                table[prefix] = new
                accepted[family] = accepted.get(family, 0) + 1
                continue
            if isinstance(old, Candidate):
                if old.peer == name:
                    if new is old and not replace_all:
                        continue
                    entry = new
                    if new is None:
                        accepted[family] -= 1
                elif new is None:
                    continue
                else:
                    entry = (old, new) if old.peer < name else (new, old)
                    accepted[family] = accepted.get(family, 0) + 1
            else:
                at = -1
                for i, cand in enumerate(old):
                    if cand.peer == name:
                        at = i
                        break
                if new is None:
                    if at < 0:
                        continue
                    rest = old[:at] + old[at + 1 :]
                    entry = rest[0] if len(rest) == 1 else rest
                    accepted[family] -= 1
                elif at >= 0:
                    if old[at] is new and not replace_all:
                        continue
                    entry = (*old[:at], new, *old[at + 1 :])
                else:
                    entry = tuple(sorted((*old, new), key=_by_peer))
                    accepted[family] = accepted.get(family, 0) + 1
            if prefix not in hit:
                hit[prefix] = derive(old)
            if entry is None:
                del table[prefix]
            elif isinstance(entry, tuple):
                shared = tuples.get(entry)
                if shared is None:
                    if len(tuples) >= DECISION_CACHE_SIZE:
                        tuples.clear()
                    shared = tuples[entry] = entry
                table[prefix] = shared
            else:
                table[prefix] = entry

    def _cost(self, next_hop: bytes) -> int | None:
        try:
            return self._nh_cost[next_hop]
        except KeyError:
            cost = self._nh_cost[next_hop] = self.resolver.cost(next_hop)
            return cost

    def _derive(self, entry: _Entry) -> Selection | None:
        """The selection of a prefix holding `entry`, under the current costs and options."""
        if isinstance(entry, Candidate):
            return None if self._cost(entry.next_hop) is None else entry.alone
        decisions = self._decisions
        try:
            return decisions[entry]
        except KeyError:
            pass
        opts = self.options
        sel = decide(
            entry,
            self._cost,
            max_paths=opts.max_paths,
            always_compare_med=opts.always_compare_med,
        )
        if len(decisions) >= DECISION_CACHE_SIZE:
            decisions.clear()
        decisions[entry] = sel
        return sel

    def _decide(self, touched: _Touched) -> list[RouteChange]:
        """The touched prefixes' selections now, against those from before the batch: the
        changes out, and the counts kept up to date."""
        out: list[RouteChange] = []
        nh_cost = self._nh_cost
        cost = self._cost
        derive = self._derive
        decisions = self._decisions
        counts = self._selected_count
        # per selection object, its net change in the number of prefixes: the per-peer counts
        # are updated once per selection (an UPDATE's prefixes share one), not per prefix
        tally: dict[int, list[Any]] = {}
        for family, prefixes in touched.items():
            if not prefixes:
                continue
            table = self._entries.get(family, {})
            count = counts.get(family, 0)
            for prefix, old in prefixes.items():
                entry = table.get(prefix)
                new: Selection | None
                if entry is None:
                    new = None
                elif isinstance(entry, Candidate):
                    nh = entry.next_hop
                    c = nh_cost[nh] if nh in nh_cost else cost(nh)
                    new = None if c is None else entry.alone
                elif entry in decisions:
                    new = decisions[entry]
                else:
                    new = derive(entry)
                if new is old:
                    continue
                if new is not None and old is not None and new.same_routes(old):
                    continue
                out.append((family, prefix, new, old))
                if old is None:
                    count += 1
                else:
                    t = tally.get(id(old))
                    if t is None:
                        tally[id(old)] = [old, -1]
                    else:
                        t[1] -= 1
                if new is None:
                    count -= 1
                else:
                    t = tally.get(id(new))
                    if t is None:
                        tally[id(new)] = [new, 1]
                    else:
                        t[1] += 1
            counts[family] = count
        for sel, step in tally.values():
            if step:
                self._count(sel, step)
        return out

    def _count(self, sel: Selection | None, step: int) -> None:
        """Per-peer best / multipath counts (`same_routes` selections have the same peers)."""
        if sel is None:
            return
        best, in_paths = self._best, self._in_paths
        peer = sel.best.peer
        best[peer] = best.get(peer, 0) + step
        for cand in sel.paths:
            in_paths[cand.peer] = in_paths.get(cand.peer, 0) + step
