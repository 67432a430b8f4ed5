"""Desired state -> per-peer tables: RFC 4271 §5.1 attribute rules, peer and family selection."""

from __future__ import annotations

from speaker.api.schema import Peer, parse_desired_state
from speaker.bgp.wire.attributes import (
    AsPathAttribute,
    CommunitiesAttribute,
    LargeCommunitiesAttribute,
    LocalPrefAttribute,
    MultiExitDiscAttribute,
    OriginAttribute,
)
from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST
from speaker.bgp.wire.nlri import Prefix, prefix_from_str
from speaker.session_inputs import RouteTables, session_config

STATE = parse_desired_state({
    "routerId": "192.0.2.11",
    "asn": 64512,
    "peers": [
        {"name": "ebgp", "address": "127.0.0.2", "asn": 65000,
         "families": ["ipv4-unicast", "ipv6-unicast"]},
        {"name": "ibgp", "address": "127.0.0.3", "asn": 64512},
        {"name": "four", "address": "127.0.0.4", "asn": 4200000000, "localAsn": 4200000001},
    ],
    "advertisements": [
        {"prefix": "10.244.1.0/24", "communities": ["64512:100", "no-export"],
         "largeCommunities": ["64512:1:2"], "med": 7, "localPreference": 300,
         "asPathPrepend": 2},
        {"prefix": "10.96.0.10/32", "peers": ["ibgp"], "nextHop": "192.0.2.99"},
        {"prefix": "2001:db8::/64"},
    ],
})  # fmt: skip


def p(text: str) -> Prefix:
    return prefix_from_str(text)[1]


def peer(name: str) -> Peer:
    return next(x for x in STATE.peers if x.name == name)


def test_ebgp_prepends_the_local_asn_and_sends_no_local_pref() -> None:
    table = RouteTables(STATE).for_peer(peer("ebgp"))
    assert set(table[IPV4_UNICAST]) == {p("10.244.1.0/24")}  # the /32 is for ibgp only
    attrs = table[IPV4_UNICAST][p("10.244.1.0/24")]
    assert attrs.next_hop is None  # self
    assert attrs.attributes == (
        OriginAttribute(0),
        AsPathAttribute.sequence(64512, 64512, 64512),
        MultiExitDiscAttribute(7),
        CommunitiesAttribute((64512 << 16 | 100, 0xFFFFFF01)),
        LargeCommunitiesAttribute(((64512, 1, 2),)),
    )
    assert set(table[IPV6_UNICAST]) == {p("2001:db8::/64")}


def test_ibgp_sends_local_pref_and_an_empty_path() -> None:
    table = RouteTables(STATE).for_peer(peer("ibgp"))
    assert IPV6_UNICAST not in table  # not one of its families
    lb = table[IPV4_UNICAST][p("10.244.1.0/24")]
    assert lb.attributes[1] == AsPathAttribute() and LocalPrefAttribute(300) in lb.attributes
    svc = table[IPV4_UNICAST][p("10.96.0.10/32")]
    assert svc.next_hop == bytes((192, 0, 2, 99)) and LocalPrefAttribute(100) in svc.attributes


def test_local_asn_override_and_4_octet_asns() -> None:
    cfg = session_config(STATE, peer("four"))
    assert (cfg.local_asn, cfg.peer_asn, cfg.router_id) == (4200000001, 4200000000, 0xC000020B)
    table = RouteTables(STATE).for_peer(peer("four"))
    assert table[IPV4_UNICAST][p("10.244.1.0/24")].attributes[1] == AsPathAttribute.sequence(
        *[4200000001] * 3
    )


def test_attribute_sets_are_shared_between_routes_and_peers() -> None:
    tables = RouteTables(STATE)
    a = tables.for_peer(peer("ebgp"))[IPV4_UNICAST][p("10.244.1.0/24")]
    b = tables.for_peer(peer("ebgp"))[IPV4_UNICAST][p("10.244.1.0/24")]
    assert a is b


def test_ipv4_routes_with_next_hop_self_skip_an_ipv6_session() -> None:
    state = parse_desired_state({
        "routerId": "192.0.2.11", "asn": 64512,
        "peers": [{"name": "v6", "address": "2001:db8::2", "asn": 65000,
                   "families": ["ipv4-unicast", "ipv6-unicast"]}],
        "advertisements": [{"prefix": "10.0.0.0/24"},
                           {"prefix": "10.0.1.0/24", "nextHop": "192.0.2.1"},
                           {"prefix": "2001:db8:1::/48"}],
    })  # fmt: skip
    table = RouteTables(state).for_peer(state.peers[0])
    assert list(table[IPV4_UNICAST]) == [p("10.0.1.0/24")]
    assert list(table[IPV6_UNICAST]) == [p("2001:db8:1::/48")]
