"""Import policy + Loc-RIB (issue 15), pure: N /32s from one peer, then the same N from a second
peer (an equal path: every prefix becomes a two-way multipath), then withdrawn by both. Then the
operations that go over the whole table with both peers' paths in: `table()` (the selection is
derived per prefix, not stored), the ECMP width going to 1 and back, and tor-a's next hop getting
dearer and cheap again (`next_hops_changed`).

Paths arrive as a session hands them over: one `ReceivedPath` per UPDATE (~500 /32s in 4096
octets), as grouped changes. The policy has three rules (a reject that never matches, an accept
of 10.0.0.0/8 le 32 that sets LOCAL_PREF, and a default reject). Aim: 100k from one peer well
under a second. Also printed: Loc-RIB memory per prefix (tracemalloc) for one and for two peers.
Printed, never asserted.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable

from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.decision import PeerInfo
from speaker.bgp.rib.loc_rib import LocRib, LocRibOptions, PathGroup
from speaker.bgp.rib.next_hop import ResolverRoute, RoutingTableResolver
from speaker.bgp.rib.policy import Action, ImportPolicy, ImportRule, PrefixMatch
from speaker.bgp.wire.attributes import AsPathAttribute, CommunitiesAttribute, OriginAttribute
from speaker.bgp.wire.context import IPV4_UNICAST
from speaker.bgp.wire.nlri import Prefix, prefix_from_int

PER_UPDATE = 500


def received_groups(prefixes: list[Prefix], asn: int, next_hop: bytes) -> list[PathGroup]:
    attrs = (
        OriginAttribute(0),
        AsPathAttribute.sequence(asn),
        CommunitiesAttribute((asn << 16 | 100,)),
    )
    return [
        (IPV4_UNICAST, tuple(prefixes[i : i + PER_UPDATE]), ReceivedPath(attrs, next_hop))
        for i in range(0, len(prefixes), PER_UPDATE)
    ]


def withdrawn_groups(prefixes: list[Prefix]) -> list[PathGroup]:
    return [
        (IPV4_UNICAST, tuple(prefixes[i : i + PER_UPDATE]), None)
        for i in range(0, len(prefixes), PER_UPDATE)
    ]


def import_policy() -> ImportPolicy:
    return ImportPolicy(
        [
            ImportRule(
                action=Action.REJECT,
                prefix=PrefixMatch(afi=1, network=0xC0A80000, length=16, ge=16, le=32),
            ),
            ImportRule(
                action=Action.ACCEPT,
                prefix=PrefixMatch(afi=1, network=0x0A000000, length=8, ge=8, le=32),
                set_local_preference=150,
            ),
        ]
    )


CONNECTED = ResolverRoute(afi=1, network=0xC0000200, length=24)
TOR_A_DEARER = ResolverRoute(afi=1, network=0xC0000201, length=32, cost=10)


def fresh_loc_rib() -> LocRib:
    """A Loc-RIB with peers tor-a (192.0.2.1, AS 65001) and tor-b (192.0.2.2, AS 65002)."""
    resolver = RoutingTableResolver([CONNECTED])
    rib = LocRib(
        LocRibOptions(local_asns=frozenset({64512}), router_id=1, cluster_id=1, max_paths=8),
        resolver,
    )
    for i, name in enumerate(("tor-a", "tor-b")):
        info = PeerInfo(
            name=name, address=bytes((192, 0, 2, 1 + i)), asn=65001 + i, router_id=i + 1, ebgp=True
        )
        rib.set_peer(info, import_policy())
    return rib


def _timed(rib: LocRib, peer: str, groups: list[PathGroup]) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    changed = len(rib.update_groups(peer, groups))
    return time.perf_counter() - t0, changed


def _whole_table(rib: LocRib) -> dict[str, tuple[float, int]]:
    """Each operation over the whole table once, with its time and how many changes came out."""
    resolver = rib.resolver
    assert isinstance(resolver, RoutingTableResolver)
    steps: list[tuple[str, Callable[[], int]]] = [
        ("table()", lambda: len(rib.table(IPV4_UNICAST))),
        ("max_paths 8 -> 1", lambda: len(rib.set_options(max_paths=1, always_compare_med=False))),
        ("max_paths 1 -> 8", lambda: len(rib.set_options(max_paths=8, always_compare_med=False))),
        ("tor-a's next hop dearer", lambda: _resolve(rib, resolver, [TOR_A_DEARER, CONNECTED])),
        ("tor-a's next hop cheap again", lambda: _resolve(rib, resolver, [CONNECTED])),
    ]
    out: dict[str, tuple[float, int]] = {}
    for label, step in steps:
        gc.collect()
        t0 = time.perf_counter()
        changed = step()
        out[label] = (time.perf_counter() - t0, changed)
    return out


def _resolve(rib: LocRib, resolver: RoutingTableResolver, routes: list[ResolverRoute]) -> int:
    resolver.set_routes(routes)
    return len(rib.next_hops_changed())


def run(short: bool) -> None:
    n = 10_000 if short else 100_000
    prefixes = [prefix_from_int(0x0A800000 + i, 32, 32) for i in range(n)]
    from_a = received_groups(prefixes, 65001, bytes((192, 0, 2, 1)))
    from_b = received_groups(prefixes, 65002, bytes((192, 0, 2, 2)))
    gone = withdrawn_groups(prefixes)
    steps: dict[str, list[tuple[float, int]]] = {}
    for _ in range(3):
        rib = fresh_loc_rib()
        for label, peer, groups in (
            ("tor-a announces", "tor-a", from_a),
            ("tor-b announces the same (multipath)", "tor-b", from_b),
        ):
            steps.setdefault(label, []).append(_timed(rib, peer, groups))
        for label, result in _whole_table(rib).items():
            steps.setdefault(label, []).append(result)
        for label, peer, groups in (
            ("tor-a withdraws", "tor-a", gone),
            ("tor-b withdraws", "tor-b", gone),
        ):
            steps.setdefault(label, []).append(_timed(rib, peer, groups))
    print(f"{n} prefixes, {n // PER_UPDATE} paths per peer; medians of 3")
    print(f"{'step':40} {'seconds':>8} {'us/prefix':>10} {'changes out':>12}")
    for label, results in steps.items():
        seconds = statistics.median(r[0] for r in results)
        print(f"{label:40} {seconds:8.3f} {seconds / n * 1e6:10.2f} {results[0][1]:12d}")

    rib = fresh_loc_rib()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rib.update_groups("tor-a", from_a)
    one = tracemalloc.get_traced_memory()[0] - before
    rib.update_groups("tor-b", from_b)
    two = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"Loc-RIB memory per prefix: {one / n:.0f} B with one peer, {two / n:.0f} B with two")
