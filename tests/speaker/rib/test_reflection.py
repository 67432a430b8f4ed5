"""Route reflection (RFC 4456) over a real Loc-RIB: who gets which best path, with which
ORIGINATOR_ID and CLUSTER_LIST; loop prevention; incremental output equal to recomputing."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.adj_rib_out import PathAttributes
from speaker.bgp.rib.loc_rib import LocRib, LocRibOptions
from speaker.bgp.rib.next_hop import ResolverRoute, RoutingTableResolver
from speaker.bgp.rib.policy import Action, ImportPolicy, ImportRule
from speaker.bgp.rib.received_attributes import cluster_list, local_pref, originator_id
from speaker.bgp.rib.reflection import (
    ExportChanges,
    ReflectionPeer,
    Reflector,
    reflected_attributes,
)
from speaker.bgp.wire.attributes import NextHopAttribute
from speaker.bgp.wire.context import AFI_IPV4, IPV4_UNICAST, IPV6_UNICAST, Family
from speaker.bgp.wire.nlri import Prefix
from tests.speaker.rib.paths import addr, path, peer, pfx, rid

V4 = IPV4_UNICAST
ACCEPT_ALL = ImportPolicy([ImportRule(action=Action.ACCEPT)])
CONNECTED = [ResolverRoute(afi=AFI_IPV4, network=int.from_bytes(addr("192.0.2.0")), length=24)]
US = rid("192.0.2.100")
CLUSTER = rid("192.0.2.250")
BOTH = frozenset({IPV4_UNICAST, IPV6_UNICAST})

# Three iBGP peers (two clients, one non-client: another reflector) and an eBGP ToR.
C1 = peer("c1", "192.0.2.1", asn=64512, router_id="10.0.0.1", ebgp=False)
C2 = peer("c2", "192.0.2.2", asn=64512, router_id="10.0.0.2", ebgp=False)
N1 = peer("n1", "192.0.2.3", asn=64512, router_id="10.0.0.3", ebgp=False)
TOR = peer("tor", "192.0.2.9", asn=65000, router_id="10.0.0.9", ebgp=True)
INFO = {p.name: p for p in (C1, C2, N1, TOR)}
IBGP = [
    ReflectionPeer(name="c1", client=True, families=BOTH),
    ReflectionPeer(name="c2", client=True, families=BOTH),
    ReflectionPeer(name="n1", client=False, families=BOTH),
]
P = pfx("10.244.1.0/24")


def new_rib() -> LocRib:
    options = LocRibOptions(local_asns=frozenset({64512}), router_id=US, cluster_id=CLUSTER)
    rib = LocRib(options, RoutingTableResolver(CONNECTED))
    for info in INFO.values():
        rib.set_peer(info, ACCEPT_ALL)
    return rib


def ibgp_path(
    next_hop: str,
    *,
    local_pref: int | None = None,
    originator: str | None = None,
    clusters: tuple[str, ...] = (),
) -> ReceivedPath:
    return path(
        next_hop, as_path=(), local_pref=local_pref, originator=originator, clusters=clusters
    )


def setup(peers: Iterable[ReflectionPeer] = IBGP) -> tuple[LocRib, Reflector]:
    rib = new_rib()
    reflector = Reflector(cluster_id=CLUSTER)
    assert reflector.configure(peers, CLUSTER, rib) == {}
    return rib, reflector


def one(changes: dict[str, ExportChanges], family: Family = V4) -> dict[str, object]:
    """peer -> the one prefix's new attributes (or None) in `changes`."""
    return {name: fams[family][P] for name, fams in changes.items()}


def test_a_clients_route_goes_to_every_other_ibgp_peer_with_originator_and_cluster_list() -> None:
    rib, reflector = setup()
    sent = path("192.0.2.1", as_path=(), local_pref=150, communities=("64512:7",))
    out = one(reflector.changed(rib.update("c1", [(V4, P, sent)])))
    assert set(out) == {"c2", "n1"}  # every iBGP peer but the one it came from
    attrs = out["c2"]
    assert isinstance(attrs, PathAttributes) and out["n1"] is attrs
    assert attrs.next_hop == addr("192.0.2.1")  # iBGP: next hop unchanged
    assert originator_id(attrs.attributes) == rid("10.0.0.1")  # the client's router id
    assert cluster_list(attrs.attributes) == (CLUSTER,)
    assert local_pref(attrs.attributes) == 150
    assert not any(isinstance(a, NextHopAttribute) for a in attrs.attributes)
    codes = [a.type_code for a in attrs.attributes]
    assert codes == sorted(codes)
    assert reflector.table("c1") == {}
    assert reflector.table("n1") == {V4: {P: attrs}}


def test_a_non_clients_route_goes_to_the_clients_only() -> None:
    rib, reflector = setup()
    out = one(reflector.changed(rib.update("n1", [(V4, P, ibgp_path("192.0.2.3"))])))
    assert set(out) == {"c1", "c2"}


def test_an_ebgp_route_is_not_reflected_and_nothing_without_clients() -> None:
    rib, reflector = setup()
    assert reflector.changed(rib.update("tor", [(V4, P, path("192.0.2.9"))])) == {}
    rib2, plain = setup([ReflectionPeer(name="n1", client=False, families=BOTH)])
    assert not plain.active
    assert plain.changed(rib2.update("n1", [(V4, P, ibgp_path("192.0.2.3"))])) == {}


def test_existing_originator_is_kept_and_our_cluster_prepended() -> None:
    rib, reflector = setup()
    sent = ibgp_path("192.0.2.3", originator="10.9.9.9", clusters=("192.0.2.240",))
    out = one(reflector.changed(rib.update("n1", [(V4, P, sent)])))
    attrs = out["c1"]
    assert isinstance(attrs, PathAttributes)
    assert originator_id(attrs.attributes) == rid("10.9.9.9")
    assert cluster_list(attrs.attributes) == (CLUSTER, rid("192.0.2.240"))


def test_loops_are_dropped_before_reflection() -> None:
    """RFC 4456 §8: a route carrying our router id as ORIGINATOR_ID, or our cluster id in its
    CLUSTER_LIST, is not a candidate, so it is neither selected nor reflected."""
    rib, reflector = setup()
    ours = ibgp_path("192.0.2.3", originator="192.0.2.100")
    assert rib.update("n1", [(V4, P, ours)]) == []
    looped = ibgp_path("192.0.2.3", clusters=("192.0.2.240", "192.0.2.250"))
    assert rib.update("n1", [(V4, P, looped)]) == []
    assert rib.selected(V4, P) is None and len(reflector) == 0


def test_a_new_best_path_moves_the_route_between_peers() -> None:
    rib, reflector = setup()
    reflector.changed(rib.update("c1", [(V4, P, ibgp_path("192.0.2.1", local_pref=100))]))
    # c2 sends a better path: c2 gets a withdrawal, c1 now gets c2's route, n1 new attributes
    better = ibgp_path("192.0.2.2", local_pref=200)
    out = one(reflector.changed(rib.update("c2", [(V4, P, better)])))
    assert out["c2"] is None
    assert isinstance(out["c1"], PathAttributes) and out["c1"].next_hop == addr("192.0.2.2")
    assert out["n1"] is out["c1"]
    # c2 withdraws: back to c1's path
    out = one(reflector.changed(rib.update("c2", [(V4, P, None)])))
    assert out["c1"] is None and isinstance(out["c2"], PathAttributes)
    # c1 withdraws too: every peer that had it gets a withdrawal
    out = one(reflector.changed(rib.update("c1", [(V4, P, None)])))
    assert out == {"c2": None, "n1": None}
    assert len(reflector) == 0


def test_the_same_best_path_again_changes_nothing() -> None:
    rib, reflector = setup()
    sent = ibgp_path("192.0.2.1")
    reflector.changed(rib.update("c1", [(V4, P, sent)]))
    # a second, worse path changes the multipath set at most: nothing to reflect
    changes = rib.update("n1", [(V4, P, ibgp_path("192.0.2.3", local_pref=50))])
    assert reflector.changed(changes) == {}


def test_families_a_peer_does_not_carry_are_not_sent() -> None:
    only_v6 = ReflectionPeer(name="c2", client=True, families=frozenset({IPV6_UNICAST}))
    rib, reflector = setup([IBGP[0], only_v6, IBGP[2]])
    out = one(reflector.changed(rib.update("c1", [(V4, P, ibgp_path("192.0.2.1"))])))
    assert set(out) == {"n1"}


def test_reconfiguring_peers_emits_the_difference() -> None:
    rib, reflector = setup()
    reflector.changed(rib.update("n1", [(V4, P, ibgp_path("192.0.2.3"))]))
    assert set(reflector.table("c1")[V4]) == {P}
    # n1 becomes a client: its route now goes to everyone else (no change for c1, c2)
    as_client = [*IBGP[:2], ReflectionPeer(name="n1", client=True, families=BOTH)]
    assert reflector.configure(as_client, CLUSTER, rib) == {}
    # c1 stops being a client and c2 leaves: c1 (now a non-client) still gets a client's route
    fewer = [ReflectionPeer(name="c1", client=False, families=BOTH), as_client[2]]
    assert reflector.configure(fewer, CLUSTER, rib) == {}
    # no client left: not a reflector any more, c1 loses the reflected route
    assert one(reflector.configure([fewer[0]], CLUSTER, rib)) == {"c1": None}
    # a new cluster id: new attributes for everyone
    again = reflector.configure(IBGP, rid("192.0.2.251"), rib)
    attrs = one(again)["c1"]
    assert isinstance(attrs, PathAttributes) and cluster_list(attrs.attributes) == (
        rid("192.0.2.251"),
    )


def test_reflected_attributes_alone() -> None:
    sent = path("192.0.2.1", as_path=(), clusters=("192.0.2.1",))
    attrs = reflected_attributes(sent, rid("10.0.0.1"), CLUSTER)
    assert cluster_list(attrs.attributes) == (CLUSTER, rid("192.0.2.1"))
    assert originator_id(attrs.attributes) == rid("10.0.0.1")


# --- incremental == recomputed == the rule, whatever happens ---------------------------------

PREFIXES = [pfx(f"10.244.{i}.0/24") for i in range(4)]
NAMES = ["c1", "c2", "n1", "tor"]
HOPS = {"c1": "192.0.2.1", "c2": "192.0.2.2", "n1": "192.0.2.3", "tor": "192.0.2.9"}


def expected(rib: LocRib, peers: list[ReflectionPeer]) -> dict[str, dict[Prefix, PathAttributes]]:
    """RFC 4456 §6 read straight off the Loc-RIB."""
    by_name = {p.name: p for p in peers}
    out: dict[str, dict[Prefix, PathAttributes]] = {p.name: {} for p in peers}
    if not any(p.client for p in peers):
        return out
    for prefix, sel in rib.table(V4).items():
        source = by_name.get(sel.best.peer)
        if source is None:
            continue
        attrs = reflected_attributes(sel.best.path, sel.best.router_id, CLUSTER)
        for p in peers:
            if p.name != source.name and (source.client or p.client):
                out[p.name][prefix] = attrs
    return out


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(NAMES),
            st.sampled_from(PREFIXES),
            st.none() | st.sampled_from([100, 150, 200]),
        ),
        max_size=25,
    ),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.integers(0, 25),
)
def test_incremental_output_replayed_equals_the_rule(
    events: list[tuple[str, Prefix, int | None]], clients: list[bool], reconfigure_at: int
) -> None:
    peers = [
        ReflectionPeer(name=n, client=c, families=BOTH)
        for n, c in zip(["c1", "c2", "n1"], clients, strict=True)
    ]
    rib = new_rib()
    reflector = Reflector(cluster_id=CLUSTER)
    replay: dict[str, dict[Prefix, PathAttributes]] = {}

    def take(changes: dict[str, ExportChanges]) -> None:
        for name, fams in changes.items():
            table = replay.setdefault(name, {})
            for prefix, attrs in fams.get(V4, {}).items():
                if attrs is None:
                    assert prefix in table, "a withdrawal of something never sent"
                    del table[prefix]
                else:
                    assert table.get(prefix) != attrs, "an announcement that changes nothing"
                    table[prefix] = attrs

    take(reflector.configure(IBGP, CLUSTER, rib))
    for i, (name, prefix, lp) in enumerate(events):
        if i == reconfigure_at:
            take(reflector.configure(peers, CLUSTER, rib))
        hop = HOPS[name]
        segments = (65000,) if name == "tor" else ()
        sent = None if lp is None else path(hop, as_path=segments, local_pref=lp)
        take(reflector.changed(rib.update(name, [(V4, prefix, sent)])))
    final = peers if reconfigure_at < len(events) else IBGP
    want = expected(rib, final)
    for p in final:
        assert replay.get(p.name, {}) == want[p.name]
        assert reflector.table(p.name).get(V4, {}) == want[p.name]
    fresh = Reflector(cluster_id=CLUSTER)
    fresh.configure(final, CLUSTER, rib)
    assert all(fresh.table(p.name) == reflector.table(p.name) for p in final)
