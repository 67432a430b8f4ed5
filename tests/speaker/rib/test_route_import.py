"""From the desired-state document to verdicts, Loc-RIB options and FIB changes."""

from __future__ import annotations

from speaker.api.communities import community_value
from speaker.api.schema import parse_desired_state
from speaker.bgp.rib.loc_rib import LocRib
from speaker.bgp.rib.next_hop import ResolverRoute, RoutingTableResolver
from speaker.bgp.rib.received_attributes import communities, local_pref
from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6, IPV4_UNICAST
from speaker.route_import import (
    fib_changes,
    fib_table,
    import_policy,
    loc_rib_options,
    peer_info,
)
from tests.speaker.rib.paths import addr, path, pfx, rid

DOC = {
    "routerId": "192.0.2.11",
    "asn": 64512,
    "fib": {"maxPaths": 4},
    "peers": [
        {
            "name": "tor-a",
            "address": "192.0.2.1",
            "asn": 65000,
            "import": [
                {"prefix": "0.0.0.0/0", "le": 0, "action": "accept"},
                {"prefix": "10.66.0.0/16", "le": 32, "action": "reject"},
                {
                    "prefix": "10.0.0.0/8",
                    "ge": 16,
                    "le": 24,
                    "communities": ["65000:10"],
                    "action": "accept",
                    "set": {"localPreference": 200, "addCommunities": ["64512:1"]},
                },
                {"prefix": "2001:db8::/32", "ge": 48, "action": "accept"},
                {"originAsn": 65099, "action": "accept"},
            ],
        },
        {"name": "rr", "address": "192.0.2.3", "asn": 64512},
        {"name": "tor-b", "address": "2001:db8::2", "asn": 65001, "localAsn": 64513},
    ],
}


def verdict(prefix: str, **kw: object) -> tuple[int | None, bool]:
    state = parse_desired_state(DOC)
    policy = import_policy(next(p for p in state.peers if p.name == "tor-a"))
    afi = AFI_IPV6 if ":" in prefix else AFI_IPV4
    v = policy.evaluate(afi, pfx(prefix), path(**kw))  # type: ignore[arg-type]
    return v.rule, v.accepted


def test_the_documents_rules_decide_as_written() -> None:
    assert verdict("0.0.0.0/0") == (0, True)
    assert verdict("10.0.0.0/8") == (None, False)  # not /0, not /16-/24
    assert verdict("10.66.1.0/24", communities=("65000:10",)) == (1, False)
    assert verdict("10.1.0.0/16", communities=("65000:10",)) == (2, True)
    assert verdict("10.1.0.0/16") == (None, False)  # without the community
    assert verdict("10.1.0.0/25", communities=("65000:10",)) == (None, False)
    assert verdict("2001:db8:1::/48") == (3, True)
    assert verdict("2001:db8:1::/128") == (3, True)  # ge alone: up to the family's maximum
    assert verdict("2001:db8::/32") == (None, False)
    assert verdict("192.0.2.0/24", as_path=(65000, 65099)) == (4, True)
    state = parse_desired_state(DOC)
    tor_a = next(p for p in state.peers if p.name == "tor-a")
    v = import_policy(tor_a).evaluate(AFI_IPV4, pfx("10.1.0.0/16"), path(communities=("65000:10",)))
    assert v.path is not None and local_pref(v.path.attributes) == 200
    assert community_value("64512:1") in communities(v.path.attributes)


def test_a_peer_without_rules_accepts_nothing() -> None:
    state = parse_desired_state(DOC)
    rr = next(p for p in state.peers if p.name == "rr")
    assert not import_policy(rr).evaluate(AFI_IPV4, pfx("0.0.0.0/0"), path()).accepted


def test_options_and_peer_info() -> None:
    state = parse_desired_state(DOC)
    opts = loc_rib_options(state)
    assert opts.local_asns == frozenset({64512, 64513})
    assert opts.router_id == opts.cluster_id == rid("192.0.2.11")
    assert opts.max_paths == 4 and not opts.always_compare_med
    no_fib = parse_desired_state({k: v for k, v in DOC.items() if k != "fib"})
    assert loc_rib_options(no_fib).max_paths == 1
    always = parse_desired_state({**DOC, "alwaysCompareMed": True})
    assert loc_rib_options(always).always_compare_med
    by_name = {p.name: p for p in state.peers}
    a = peer_info(by_name["tor-a"], state, remote_router_id=rid("10.0.0.1"))
    assert (a.ebgp, a.asn, a.address, a.router_id) == (True, 65000, addr("192.0.2.1"), 0x0A000001)
    assert not peer_info(by_name["rr"], state, remote_router_id=1).ebgp
    assert peer_info(by_name["tor-b"], state, remote_router_id=1).address == addr("2001:db8::2")


def test_loc_rib_changes_become_fib_changes() -> None:
    state = parse_desired_state(DOC)
    connected = [ResolverRoute(afi=AFI_IPV4, network=0xC0000200, length=24)]
    rib = LocRib(loc_rib_options(state), RoutingTableResolver(connected))
    by_name = {p.name: p for p in state.peers}
    rib.set_peer(
        peer_info(by_name["tor-a"], state, remote_router_id=1), import_policy(by_name["tor-a"])
    )
    changes = rib.update("tor-a", [(IPV4_UNICAST, pfx("0.0.0.0/0"), path("192.0.2.1"))])
    assert fib_changes(changes) == [(IPV4_UNICAST, pfx("0.0.0.0/0"), (addr("192.0.2.1"),), None)]
    assert fib_table(rib) == {IPV4_UNICAST: {pfx("0.0.0.0/0"): (addr("192.0.2.1"),)}}
    changes = rib.update("tor-a", [(IPV4_UNICAST, pfx("0.0.0.0/0"), None)])
    assert fib_changes(changes) == [(IPV4_UNICAST, pfx("0.0.0.0/0"), None, (addr("192.0.2.1"),))]
    assert fib_table(rib) == {}


def test_cluster_id_is_the_router_id_unless_set() -> None:
    state = parse_desired_state({**DOC, "clusterId": "192.0.2.100"})
    opts = loc_rib_options(state)
    assert (opts.router_id, opts.cluster_id) == (rid("192.0.2.11"), rid("192.0.2.100"))
