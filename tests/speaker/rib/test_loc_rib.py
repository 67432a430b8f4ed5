"""Loc-RIB: import policy + route selection per prefix, output only what changed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.decision import PeerInfo, Selection, Step, decide
from speaker.bgp.rib.loc_rib import LocRib, LocRibOptions, PathChange, RouteChange
from speaker.bgp.rib.next_hop import ResolverRoute, RoutingTableResolver
from speaker.bgp.rib.policy import Action, ImportPolicy, ImportRule, PrefixMatch
from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6, IPV4_UNICAST, IPV6_UNICAST, Family
from speaker.bgp.wire.nlri import Prefix
from tests.speaker.rib.paths import addr, path, peer, pfx, rid

ACCEPT_ALL = ImportPolicy([ImportRule(action=Action.ACCEPT)])
V4 = IPV4_UNICAST
CONNECTED = [
    ResolverRoute(afi=AFI_IPV4, network=int.from_bytes(addr("198.51.100.0")), length=24),
    ResolverRoute(afi=AFI_IPV4, network=int.from_bytes(addr("192.0.2.0")), length=24),
    ResolverRoute(afi=AFI_IPV6, network=int.from_bytes(addr("2001:db8::")), length=64),
]


def new_rib(max_paths: int = 1, resolver: RoutingTableResolver | None = None) -> LocRib:
    options = LocRibOptions(
        local_asns=frozenset({64512}),
        router_id=rid("192.0.2.100"),
        cluster_id=rid("192.0.2.100"),
        max_paths=max_paths,
    )
    return LocRib(options, resolver or RoutingTableResolver(CONNECTED))


def summary(changes: Iterable[RouteChange]) -> dict[str, tuple[str, ...] | None]:
    """prefix text -> the peers of the multipath set (best first), or None."""
    out: dict[str, tuple[str, ...] | None] = {}
    for family, prefix, sel, _ in changes:
        key = _text(family, prefix)
        out[key] = None if sel is None else tuple(c.peer for c in sel.paths)
    return out


def _text(family: Family, prefix: Prefix) -> str:
    from speaker.bgp.wire.nlri import prefix_to_str

    return prefix_to_str(prefix, family[0])


TOR_A = peer("tor-a", "192.0.2.1", asn=65001, router_id="10.0.0.1")
TOR_B = peer("tor-b", "192.0.2.2", asn=65002, router_id="10.0.0.2")
PATH_A = path("192.0.2.1", as_path=(65001,))
PATH_B = path("192.0.2.2", as_path=(65002,))


def test_announce_replace_withdraw() -> None:
    rib = new_rib()
    assert rib.set_peer(TOR_A, ACCEPT_ALL) == []
    changes = rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), PATH_A), (V4, pfx("10.0.0.0/8"), PATH_A)])
    assert summary(changes) == {"0.0.0.0/0": ("tor-a",), "10.0.0.0/8": ("tor-a",)}
    assert rib.accepted("tor-a", V4) == 2 and len(rib) == 2
    # the same path again: nothing changed
    assert rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), PATH_A)]) == []
    # a new path for the same prefix (other next hop): changed
    other = path("192.0.2.9", as_path=(65001,))
    [(_, _, sel, _)] = rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), other)])
    assert sel is not None and sel.next_hops == (addr("192.0.2.9"),)
    # withdrawn
    assert summary(rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), None)])) == {"0.0.0.0/0": None}
    assert rib.selected(V4, pfx("0.0.0.0/0")) is None and len(rib) == 1
    # withdrawing what is not there: nothing
    assert rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), None)]) == []
    assert rib.accepted("tor-a", V4) == 1


def test_grouped_changes_are_the_same_as_per_prefix_ones() -> None:
    grouped, single = new_rib(), new_rib()
    for rib in (grouped, single):
        rib.set_peer(TOR_A, ACCEPT_ALL)
    prefixes = (pfx("10.0.0.0/8"), pfx("10.1.0.0/16"), pfx("0.0.0.0/0"))
    a = grouped.update_groups("tor-a", [(V4, prefixes, PATH_A), (V4, prefixes[1:2], None)])
    b = single.update("tor-a", [(V4, p, PATH_A) for p in prefixes] + [(V4, prefixes[1], None)])
    assert summary(a) == summary(b) == {"10.0.0.0/8": ("tor-a",), "0.0.0.0/0": ("tor-a",)}


def test_no_policy_means_nothing_is_imported() -> None:
    rib = new_rib()
    rib.set_peer(TOR_A, ImportPolicy())
    assert rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), PATH_A)]) == []
    assert len(rib) == 0 and rib.accepted("tor-a", V4) == 0
    assert rib.candidates(V4, pfx("0.0.0.0/0")) == ()


def test_policy_filters_per_prefix_and_sets_local_pref() -> None:
    rib = new_rib()
    default_only = ImportPolicy(
        [
            ImportRule(
                action=Action.ACCEPT,
                prefix=PrefixMatch(afi=AFI_IPV4, network=0, length=0, ge=0, le=0),
            )
        ]
    )
    prefer_b = ImportPolicy([ImportRule(action=Action.ACCEPT, set_local_preference=200)])
    rib.set_peer(TOR_A, default_only)
    rib.set_peer(TOR_B, prefer_b)
    changes = rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), PATH_A), (V4, pfx("10.0.0.0/8"), PATH_A)])
    assert summary(changes) == {"0.0.0.0/0": ("tor-a",)}
    # tor-b's default has local pref 200 from policy: it wins though tor-a is better later
    changes = rib.update("tor-b", [(V4, pfx("0.0.0.0/0"), PATH_B)])
    assert summary(changes) == {"0.0.0.0/0": ("tor-b",)}
    sel = rib.selected(V4, pfx("0.0.0.0/0"))
    assert sel is not None and sel.step is Step.LocalPref


def test_two_tors_multipath_and_failover() -> None:
    rib = new_rib(max_paths=2)
    rib.set_peer(TOR_A, ACCEPT_ALL)
    rib.set_peer(TOR_B, ACCEPT_ALL)
    default = pfx("0.0.0.0/0")
    assert summary(rib.update("tor-a", [(V4, default, PATH_A)])) == {"0.0.0.0/0": ("tor-a",)}
    assert summary(rib.update("tor-b", [(V4, default, PATH_B)])) == {
        "0.0.0.0/0": ("tor-a", "tor-b")
    }
    assert rib.candidates(V4, default)[1].peer == "tor-b"
    # tor-a goes: single path through tor-b
    assert summary(rib.update("tor-a", [(V4, default, None)])) == {"0.0.0.0/0": ("tor-b",)}
    assert summary(rib.remove_peer("tor-b")) == {"0.0.0.0/0": None}
    assert len(rib) == 0


def test_a_worse_path_arriving_changes_nothing() -> None:
    rib = new_rib(max_paths=1)
    rib.set_peer(TOR_A, ACCEPT_ALL)
    rib.set_peer(TOR_B, ACCEPT_ALL)
    rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), PATH_A)])
    longer = path("192.0.2.2", as_path=(65002, 65009))
    assert rib.update("tor-b", [(V4, pfx("0.0.0.0/0"), longer)]) == []
    sel = rib.selected(V4, pfx("0.0.0.0/0"))
    assert sel is not None and sel.best.peer == "tor-a" and sel.step is Step.AsPathLength


def test_changes_within_one_batch_are_coalesced() -> None:
    rib = new_rib()
    rib.set_peer(TOR_A, ACCEPT_ALL)
    p = pfx("10.0.0.0/8")
    assert rib.update("tor-a", [(V4, p, PATH_A), (V4, p, None)]) == []
    rib.update("tor-a", [(V4, p, PATH_A)])
    assert rib.update("tor-a", [(V4, p, None), (V4, p, PATH_A)]) == []


def test_loops_are_not_candidates() -> None:
    rib = new_rib()
    ibgp = peer("rr", "192.0.2.3", asn=64512, router_id="10.0.0.3", ebgp=False)
    rib.set_peer(TOR_A, ACCEPT_ALL)
    rib.set_peer(ibgp, ACCEPT_ALL)
    changes = rib.update(
        "tor-a",
        [
            (V4, pfx("10.1.0.0/16"), path("192.0.2.1", as_path=(65001, 64512, 65009))),
            (V4, pfx("10.2.0.0/16"), path("192.0.2.1", as_path=(65001,), as_set=(64512,))),
        ],
    )
    assert changes == []
    changes = rib.update(
        "rr",
        [
            (V4, pfx("10.3.0.0/16"), path("192.0.2.3", as_path=(), originator="192.0.2.100")),
            (V4, pfx("10.4.0.0/16"), path("192.0.2.3", as_path=(), clusters=("192.0.2.100",))),
            (V4, pfx("10.5.0.0/16"), path("192.0.2.3", as_path=(), clusters=("192.0.2.99",))),
        ],
    )
    assert summary(changes) == {"10.5.0.0/16": ("rr",)}


def test_next_hop_resolvability_follows_the_resolver() -> None:
    resolver = RoutingTableResolver(CONNECTED)
    rib = new_rib(max_paths=2, resolver=resolver)
    rib.set_peer(TOR_A, ACCEPT_ALL)
    rib.set_peer(TOR_B, ACCEPT_ALL)
    far = path("203.0.113.1", as_path=(65002,))  # not on a connected network
    rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), PATH_A)])
    assert rib.update("tor-b", [(V4, pfx("0.0.0.0/0"), far), (V4, pfx("10.9.0.0/16"), far)]) == []
    assert rib.next_hops_changed() == []  # nothing changed in the resolver
    # a route to 203.0.113.0/24 appears (not ours): tor-b's paths become eligible
    resolver.set_routes(
        [*CONNECTED, ResolverRoute(afi=AFI_IPV4, network=0xCB007100, length=24, cost=0)]
    )
    assert summary(rib.next_hops_changed()) == {
        "0.0.0.0/0": ("tor-a", "tor-b"),
        "10.9.0.0/16": ("tor-b",),
    }
    # the link to tor-a's network goes: only tor-b's default is left
    resolver.set_routes(
        [CONNECTED[1 - 1], ResolverRoute(afi=AFI_IPV4, network=0xCB007100, length=24, cost=0)]
    )
    assert summary(rib.next_hops_changed()) == {"0.0.0.0/0": ("tor-b",)}


def test_our_own_routes_and_default_routes_do_not_resolve() -> None:
    ours = ResolverRoute(afi=AFI_IPV4, network=0xCB007100, length=24, ours=True)
    default = ResolverRoute(afi=AFI_IPV4, network=0, length=0, cost=5)
    resolver = RoutingTableResolver([ours, default])
    assert resolver.cost(addr("203.0.113.1")) is None
    assert RoutingTableResolver([default], resolve_via_default=True).cost(addr("8.8.8.8")) == 5
    nested = RoutingTableResolver(
        [
            ResolverRoute(afi=AFI_IPV4, network=0xCB007100, length=24, cost=20),
            ResolverRoute(afi=AFI_IPV4, network=0xCB007180, length=25, cost=3),
        ]
    )
    assert nested.cost(addr("203.0.113.200")) == 3  # longest match
    assert nested.cost(addr("203.0.113.1")) == 20
    assert nested.cost(addr("2001:db8::1")) is None
    assert nested.cost(b"\x01\x02") is None


def test_set_peer_reimports_under_a_new_policy() -> None:
    rib = new_rib()
    rib.set_peer(TOR_A, ACCEPT_ALL)
    routes: list[PathChange] = [
        (V4, pfx("0.0.0.0/0"), PATH_A),
        (V4, pfx("10.0.0.0/8"), PATH_A),
    ]
    rib.update("tor-a", routes)
    only_default = ImportPolicy(
        [
            ImportRule(
                action=Action.ACCEPT,
                prefix=PrefixMatch(afi=AFI_IPV4, network=0, length=0, ge=0, le=0),
            )
        ]
    )
    changes = rib.set_peer(TOR_A, only_default, routes)
    assert summary(changes) == {"10.0.0.0/8": None}  # the default stays: no change for it
    assert rib.accepted("tor-a", V4) == 1
    # a new session with another router id, and a table without the default
    again = peer("tor-a", "192.0.2.1", asn=65001, router_id="10.0.0.9")
    changes = rib.set_peer(again, ACCEPT_ALL, [(V4, pfx("10.0.0.0/8"), PATH_A)])
    assert summary(changes) == {"0.0.0.0/0": None, "10.0.0.0/8": ("tor-a",)}
    assert rib.peers() == (again,)


def test_set_options_changes_the_multipath_width() -> None:
    rib = new_rib(max_paths=1)
    rib.set_peer(TOR_A, ACCEPT_ALL)
    rib.set_peer(TOR_B, ACCEPT_ALL)
    rib.update("tor-a", [(V4, pfx("0.0.0.0/0"), PATH_A)])
    rib.update("tor-b", [(V4, pfx("0.0.0.0/0"), PATH_B)])
    assert summary(rib.set_options(max_paths=4, always_compare_med=False)) == {
        "0.0.0.0/0": ("tor-a", "tor-b")
    }
    assert rib.set_options(max_paths=4, always_compare_med=False) == []


def test_ipv6() -> None:
    rib = new_rib()
    v6peer = peer("tor-6", "2001:db8::2", asn=65002, router_id="10.0.0.6")
    rib.set_peer(v6peer, ACCEPT_ALL)
    changes = rib.update(
        "tor-6",
        [
            (IPV6_UNICAST, pfx("::/0"), path("2001:db8::2", as_path=(65002,))),
            (IPV6_UNICAST, pfx("2001:db8:1::/48"), path("2001:db8:ffff::1", as_path=(65002,))),
        ],
    )
    assert summary(changes) == {"::/0": ("tor-6",)}  # the second next hop does not resolve
    assert rib.families() == (IPV6_UNICAST,)


# ---- properties ----------------------------------------------------------------------------

PEERS = [
    peer("p1", "192.0.2.1", asn=65001, router_id="10.0.0.1"),
    peer("p2", "192.0.2.2", asn=65002, router_id="10.0.0.2"),
    peer("p3", "192.0.2.3", asn=64512, router_id="10.0.0.3", ebgp=False),
]
PATHS = [
    path("192.0.2.1", as_path=(65001,)),
    path("192.0.2.1", as_path=(65001, 65005), med=5),
    path("192.0.2.2", as_path=(65002,), med=1),
    path("192.0.2.3", as_path=(65001,), local_pref=100),
    path("192.0.2.3", as_path=(65002,), local_pref=150),
    path("203.0.113.1", as_path=(65001,)),  # unresolvable
    path("192.0.2.2", as_path=(65001, 64512)),  # AS loop
]
PREFIXES = [pfx(p) for p in ("0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24")]
POLICIES = {
    "p1": ACCEPT_ALL,
    "p2": ImportPolicy(
        [
            ImportRule(
                action=Action.REJECT,
                prefix=PrefixMatch(afi=AFI_IPV4, network=0x0A010200, length=24, ge=24, le=24),
            ),
            ImportRule(action=Action.ACCEPT, set_local_preference=150),
        ]
    ),
    "p3": ACCEPT_ALL,
}

Event = tuple[int, int, int | None]  # peer index, prefix index, path index or None
_event = st.tuples(
    st.integers(0, len(PEERS) - 1),
    st.integers(0, len(PREFIXES) - 1),
    st.one_of(st.none(), st.integers(0, len(PATHS) - 1)),
)


def _view(rib: LocRib) -> dict[Prefix, tuple[str, Step, tuple[tuple[str, bytes], ...]]]:
    return {
        prefix: (sel.best.peer, sel.step, tuple((c.peer, c.next_hop) for c in sel.paths))
        for prefix, sel in rib.table(V4).items()
    }


def _feed(rib: LocRib, events: Sequence[Event], batches: Sequence[int]) -> list[RouteChange]:
    """Feeds `events` in batches of the given sizes; returns every change emitted."""
    out: list[RouteChange] = []
    i = 0
    sizes = list(batches) or [len(events)]
    while i < len(events):
        size = max(1, sizes[0] if sizes else len(events))
        sizes = sizes[1:]
        chunk = events[i : i + size]
        i += size
        # consecutive events of one peer go in one update() call
        run: list[PathChange] = []
        run_peer = chunk[0][0]
        for p, x, y in chunk:
            if p != run_peer:
                out += rib.update(PEERS[run_peer].name, run)
                run, run_peer = [], p
            run.append((V4, PREFIXES[x], None if y is None else PATHS[y]))
        out += rib.update(PEERS[run_peer].name, run)
    return out


def _final(events: Sequence[Event]) -> dict[tuple[int, int], int | None]:
    last: dict[tuple[int, int], int | None] = {}
    for p, x, y in events:
        last[(p, x)] = y
    return last


def _with_peers(max_paths: int, order: Sequence[PeerInfo] = PEERS) -> LocRib:
    rib = new_rib(max_paths=max_paths)
    for info in order:
        rib.set_peer(info, POLICIES[info.name])
    return rib


@settings(max_examples=300)
@given(
    events=st.lists(_event, max_size=40),
    batches=st.lists(st.integers(1, 8), max_size=10),
    max_paths=st.integers(1, 3),
    data=st.data(),
)
def test_incremental_equals_from_scratch_in_any_order(
    events: list[Event], batches: list[int], max_paths: int, data: st.DataObject
) -> None:
    incremental = _with_peers(max_paths)
    emitted = _feed(incremental, events, batches)

    # The changes emitted, applied in order by a consumer (the FIB writer), give the table.
    consumer: dict[Prefix, tuple[str, ...]] = {}
    for _, prefix, sel, _ in emitted:
        if sel is None:
            assert prefix in consumer  # a withdrawal only for what was announced
            del consumer[prefix]
        else:
            consumer[prefix] = tuple(c.peer for c in sel.paths)
    assert consumer == {p: tuple(x[0] for x in v[2]) for p, v in _view(incremental).items()}

    # From scratch: only the final routes, in another order, peers registered in another order.
    final = [(p, x, y) for (p, x), y in _final(events).items() if y is not None]
    shuffled = data.draw(st.permutations(final))
    scratch = _with_peers(max_paths, data.draw(st.permutations(PEERS)))
    _feed(scratch, shuffled, [])
    assert _view(scratch) == _view(incremental)


ROUTES_A = CONNECTED
ROUTES_B = [  # .3 unreachable, .2 dearer, 203.0.113.0/24 reachable
    ResolverRoute(afi=AFI_IPV4, network=int.from_bytes(addr("192.0.2.1")), length=32),
    ResolverRoute(afi=AFI_IPV4, network=int.from_bytes(addr("192.0.2.2")), length=32, cost=5),
    ResolverRoute(afi=AFI_IPV4, network=int.from_bytes(addr("203.0.113.0")), length=24, cost=0),
]


@settings(max_examples=200)
@given(
    chunks=st.lists(st.tuples(st.lists(_event, max_size=8), st.booleans()), max_size=8),
    max_paths=st.integers(1, 3),
)
def test_resolver_changes_between_batches_equal_from_scratch(
    chunks: list[tuple[list[Event], bool]], max_paths: int
) -> None:
    """Next-hop reachability and cost changing between batches (the memo of decisions must
    follow): the table is the one a fresh Loc-RIB builds under the final resolver."""
    resolver = RoutingTableResolver(ROUTES_A)
    incremental = new_rib(max_paths=max_paths, resolver=resolver)
    for info in PEERS:
        incremental.set_peer(info, POLICIES[info.name])
    consumer: dict[Prefix, tuple[bytes, ...]] = {}
    state_b = False
    events: list[Event] = []
    for chunk, toggle in chunks:
        changes = _feed(incremental, chunk, [])
        events += chunk
        if toggle:
            state_b = not state_b
            resolver.set_routes(ROUTES_B if state_b else ROUTES_A)
            changes += incremental.next_hops_changed()
        for _, prefix, sel, old in changes:
            # `old` is what the consumer had: the FIB channel writes from it
            assert (None if old is None else old.next_hops) == consumer.get(prefix)
            if sel is None:
                del consumer[prefix]
            else:
                consumer[prefix] = sel.next_hops
    scratch = new_rib(max_paths=max_paths, resolver=RoutingTableResolver(
        ROUTES_B if state_b else ROUTES_A))  # fmt: skip
    for info in PEERS:
        scratch.set_peer(info, POLICIES[info.name])
    _feed(scratch, [(p, x, y) for (p, x), y in _final(events).items() if y is not None], [])
    assert _view(scratch) == _view(incremental)
    assert consumer == {p: s.next_hops for p, s in incremental.table(V4).items()}


ROUTES_C = [  # .3 cheapest, .1 and .2 dearer but equal; 198.51.100.0/24 and 203.0.113.0/24 gone
    ResolverRoute(afi=AFI_IPV4, network=int.from_bytes(addr("192.0.2.0")), length=24, cost=3),
    ResolverRoute(afi=AFI_IPV4, network=int.from_bytes(addr("192.0.2.3")), length=32, cost=1),
]
RESOLVER_STATES = [ROUTES_A, ROUTES_B, ROUTES_C]
STRICTER = ImportPolicy(  # the default route rejected, everything else at LOCAL_PREF 120
    [
        ImportRule(
            action=Action.REJECT,
            prefix=PrefixMatch(afi=AFI_IPV4, network=0, length=0, ge=0, le=0),
        ),
        ImportRule(action=Action.ACCEPT, set_local_preference=120),
    ]
)
_Key = tuple[str, Step, tuple[tuple[str, bytes], ...]]


def _key(sel: Selection) -> _Key:
    return sel.best.peer, sel.step, tuple((c.peer, c.next_hop) for c in sel.paths)


class DerivedSelection(RuleBasedStateMachine):
    """The Loc-RIB stores no selection; it derives one per prefix from the prefix's candidates,
    the next-hop costs it cached and a memo of decisions. Through routes, resolver, ECMP / MED
    option and import policy changes in any order, after each: every derived selection
    (`selected`, `table`, `selected_items`) is the one route selection gives from scratch over
    the prefix's candidates and the resolver's answers now; the changes emitted so far, applied
    in order, give that table; the counts agree; and a fresh Loc-RIB fed only the final routes
    holds the same."""

    def __init__(self) -> None:
        super().__init__()
        self.resolver = RoutingTableResolver(ROUTES_A)
        self.max_paths, self.always_compare_med = 1, False
        # every peer accepting all: p1's and p2's paths tie through MED, so the ECMP width and
        # the MED rule matter (under POLICIES p2 always wins on LOCAL_PREF)
        self.policies = {info.name: ACCEPT_ALL for info in PEERS}
        self.rib = new_rib(resolver=self.resolver)
        for info in PEERS:
            self.rib.set_peer(info, self.policies[info.name])
        self.adj_in: dict[tuple[int, int], int] = {}  # (peer, prefix) -> path, as received
        self.consumer: dict[Prefix, tuple[bytes, ...]] = {}  # what the FIB writer would hold
        # a node's two ToRs sending the same prefixes with paths that tie down to the ECMP
        # width and the MED rule, so that the options and the next-hop costs matter from the
        # first step (the rules move on from there)
        for who, y in ((0, 0), (1, 2)):
            self.routes_change([(who, x, y) for x in range(len(PREFIXES))])

    def _emitted(self, changes: Iterable[RouteChange]) -> None:
        for _, prefix, sel, old in changes:
            # `old` is what the consumer had: the FIB channel writes from it, keeping no copy
            assert (None if old is None else old.next_hops) == self.consumer.get(prefix)
            if sel is None:
                del self.consumer[prefix]  # a withdrawal only for what was announced
            else:
                self.consumer[prefix] = sel.next_hops

    @rule(events=st.lists(_event, min_size=1, max_size=6))
    def routes_change(self, events: list[Event]) -> None:
        self._emitted(_feed(self.rib, events, []))
        for p, x, y in events:
            if y is None:
                self.adj_in.pop((p, x), None)
            else:
                self.adj_in[(p, x)] = y

    @rule(
        who=st.integers(0, len(PEERS) - 1), y=st.one_of(st.none(), st.integers(0, len(PATHS) - 1))
    )
    def one_path_for_every_prefix(self, who: int, y: int | None) -> None:
        """As one UPDATE does: the prefixes share a candidate, and with another peer doing the
        same, one candidate tuple (one memoised decision)."""
        self.routes_change([(who, x, y) for x in range(len(PREFIXES))])

    @rule(state=st.integers(0, len(RESOLVER_STATES) - 1))
    def next_hop_costs_change(self, state: int) -> None:
        self.resolver.set_routes(RESOLVER_STATES[state])
        self._emitted(self.rib.next_hops_changed())

    @rule(max_paths=st.integers(1, 3), always_compare_med=st.booleans())
    def options_change(self, max_paths: int, always_compare_med: bool) -> None:
        self.max_paths, self.always_compare_med = max_paths, always_compare_med
        self._emitted(
            self.rib.set_options(max_paths=max_paths, always_compare_med=always_compare_med)
        )

    @rule(who=st.integers(0, len(PEERS) - 1), which=st.integers(0, 2))
    def policy_changes(self, who: int, which: int) -> None:
        info = PEERS[who]
        policy = (ACCEPT_ALL, POLICIES[info.name], STRICTER)[which]
        self.policies[info.name] = policy
        routes = [(V4, PREFIXES[x], PATHS[y]) for (p, x), y in self.adj_in.items() if p == who]
        self._emitted(self.rib.set_peer(info, policy, routes))

    @invariant()
    def derived_is_decided_from_scratch(self) -> None:
        rib = self.rib
        want: dict[Prefix, Selection] = {}
        for prefix in PREFIXES:
            sel = decide(
                rib.candidates(V4, prefix),
                self.resolver.cost,
                max_paths=self.max_paths,
                always_compare_med=self.always_compare_med,
            )
            if sel is not None:
                want[prefix] = sel
        keys = {p: _key(s) for p, s in want.items()}
        derived = {p: rib.selected(V4, p) for p in PREFIXES}
        assert {p: _key(s) for p, s in derived.items() if s is not None} == keys
        assert {p: _key(s) for p, s in rib.table(V4).items()} == keys
        assert {p: _key(s) for p, s in rib.selected_items(V4)} == keys
        assert self.consumer == {p: s.next_hops for p, s in want.items()}
        assert len(rib) == rib.selected_count(V4) == len(want)
        assert rib.families() == ((V4,) if want else ())
        for info in PEERS:
            best = sum(1 for s in want.values() if s.best.peer == info.name)
            paths = sum(1 for s in want.values() if any(c.peer == info.name for c in s.paths))
            assert rib.best_total(info.name) == rib.best_count(info.name, V4) == best
            assert rib.multipath_total(info.name) == paths

    @invariant()
    def a_fresh_loc_rib_holds_the_same(self) -> None:
        scratch = new_rib(max_paths=self.max_paths, resolver=self.resolver)
        if self.always_compare_med:
            scratch.set_options(max_paths=self.max_paths, always_compare_med=True)
        for info in PEERS:
            scratch.set_peer(info, self.policies[info.name])
        _feed(scratch, [(p, x, y) for (p, x), y in self.adj_in.items()], [])
        assert _view(scratch) == _view(self.rib)


DerivedSelection.TestCase.settings = settings(max_examples=150, stateful_step_count=15)
TestDerivedSelection = DerivedSelection.TestCase


@settings(max_examples=150)
@given(events=st.lists(_event, max_size=40), max_paths=st.integers(1, 3))
def test_withdrawing_everything_empties_it(events: list[Event], max_paths: int) -> None:
    rib = _with_peers(max_paths)
    _feed(rib, events, [])
    before = set(rib.table(V4))
    withdraw = [(p, x, None) for (p, x) in _final(events)]
    changes = _feed(rib, withdraw, [3])
    assert len(rib) == 0
    assert rib.table(V4) == {}
    last = {prefix: sel for _, prefix, sel, _ in changes}  # per peer: a rival may win in between
    assert set(last) == before
    assert all(sel is None for sel in last.values())
    assert all(rib.accepted(p.name, V4) == 0 for p in PEERS)
    for prefix in PREFIXES:
        assert rib.candidates(V4, prefix) == ()


@settings(max_examples=100)
@given(events=st.lists(_event, max_size=30))
def test_removing_every_peer_empties_it(events: list[Event]) -> None:
    rib = _with_peers(3)
    _feed(rib, events, [])
    for info in PEERS:
        rib.remove_peer(info.name)
    assert len(rib) == 0 and rib.peers() == ()


def test_selection_objects_are_shared_for_single_paths() -> None:
    """One peer, many prefixes with one path: one Selection object for all (memory)."""
    rib = new_rib()
    rib.set_peer(TOR_A, ACCEPT_ALL)
    prefixes = [pfx(f"10.0.{i}.0/24") for i in range(50)]
    rib.update("tor-a", [(V4, p, PATH_A) for p in prefixes])
    sels: set[int] = {id(rib.selected(V4, p)) for p in prefixes}
    assert len(sels) == 1
    assert isinstance(rib.selected(V4, prefixes[0]), Selection)


def test_candidate_tuples_are_shared_by_prefixes_with_the_same_paths() -> None:
    """Two ToRs offering the same prefixes: one candidate tuple for all of them (memory), in
    whichever order the peers arrive and also after one leaves and comes back."""
    rib = new_rib(max_paths=2)
    rib.set_peer(TOR_A, ACCEPT_ALL)
    rib.set_peer(TOR_B, ACCEPT_ALL)
    prefixes = [pfx(f"10.0.{i}.0/24") for i in range(50)]
    rib.update("tor-b", [(V4, p, PATH_B) for p in prefixes])
    rib.update("tor-a", [(V4, p, PATH_A) for p in prefixes])
    entries = {id(rib.candidates(V4, p)) for p in prefixes}
    assert len(entries) == 1
    assert [c.peer for c in rib.candidates(V4, prefixes[0])] == ["tor-a", "tor-b"]
    rib.update("tor-a", [(V4, p, None) for p in prefixes])
    rib.update("tor-a", [(V4, p, PATH_A) for p in prefixes])
    assert len({id(rib.candidates(V4, p)) for p in prefixes}) == 1
    # a third path for half of them: two tuples, each shared by its half
    tor_c = peer("tor-c", "192.0.2.3", asn=65003, router_id="10.0.0.3")
    rib.set_peer(tor_c, ACCEPT_ALL)
    path_c = path("192.0.2.3", as_path=(65003,))  # one UPDATE: one path object
    rib.update("tor-c", [(V4, p, path_c) for p in prefixes[:25]])
    assert len({id(rib.candidates(V4, p)) for p in prefixes[:25]}) == 1
    assert len({id(rib.candidates(V4, p)) for p in prefixes}) == 2


def test_received_path_with_no_next_hop_is_not_a_candidate() -> None:
    rib = new_rib()
    rib.set_peer(TOR_A, ACCEPT_ALL)
    no_nh = ReceivedPath(PATH_A.attributes, None)
    assert rib.update("tor-a", [(V4, pfx("10.0.0.0/8"), no_nh)]) == []


def test_peer_info_is_what_decide_uses() -> None:
    assert isinstance(TOR_A, PeerInfo) and TOR_A.ebgp
