"""Glue of the receiving half, pure: desired state -> import policies and Loc-RIB options, and
Loc-RIB changes -> FIB writer changes. The runtime (speaker/daemon.py) calls these; see
docs/route-import.md for the whole flow."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from speaker.api.communities import community_value, large_community_value
from speaker.api.schema import DesiredState, Peer
from speaker.api.schema import ImportRule as RuleDoc
from speaker.bgp.rib.decision import PeerInfo
from speaker.bgp.rib.loc_rib import LocRib, LocRibOptions, RouteChange
from speaker.bgp.rib.policy import Action, ImportPolicy, ImportRule, PrefixMatch
from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6, Family
from speaker.bgp.wire.nlri import Prefix

NextHops = tuple[bytes, ...]
FibChange = tuple[Family, Prefix, NextHops | None, NextHops | None]  # as speaker.netlink's


def import_rule(doc: RuleDoc) -> ImportRule:
    prefix = None
    if doc.prefix is not None:
        net = ipaddress.ip_network(doc.prefix)
        length = net.prefixlen
        ge = length if doc.ge is None else doc.ge
        # FRR's prefix-list reading: ge alone runs to the family's maximum, neither is exact
        le = doc.le if doc.le is not None else (length if doc.ge is None else net.max_prefixlen)
        prefix = PrefixMatch(
            afi=AFI_IPV4 if net.version == 4 else AFI_IPV6,
            network=int(net.network_address),
            length=length,
            ge=ge,
            le=le,
        )
    action_set = doc.set
    return ImportRule(
        action=Action(doc.action),
        prefix=prefix,
        communities=frozenset(community_value(c) for c in doc.communities),
        large_communities=frozenset(large_community_value(c) for c in doc.large_communities),
        as_path_contains=frozenset(doc.as_path_contains),
        origin_asn=doc.origin_asn,
        set_local_preference=None if action_set is None else action_set.local_preference,
        add_communities=()
        if action_set is None
        else tuple(community_value(c) for c in action_set.add_communities),
        add_large_communities=()
        if action_set is None
        else tuple(large_community_value(c) for c in action_set.add_large_communities),
    )


def import_policy(peer: Peer) -> ImportPolicy:
    """The peer's import rules; none configured = accept nothing."""
    return ImportPolicy([import_rule(r) for r in peer.import_rules])


def loc_rib_options(state: DesiredState) -> LocRibOptions:
    """Loop detection by every ASN we speak as; ECMP width from `fib.maxPaths` (1 without a
    FIB: the Loc-RIB still selects, for status and later for reflection); MED across
    neighbouring ASes with `alwaysCompareMed`."""
    router_id = int(ipaddress.IPv4Address(state.router_id))
    cluster_id = router_id
    if state.cluster_id is not None:
        cluster_id = int(ipaddress.IPv4Address(state.cluster_id))
    local_asns = frozenset({state.asn} | {p.local_asn for p in state.peers if p.local_asn})
    return LocRibOptions(
        local_asns=local_asns,
        router_id=router_id,
        cluster_id=cluster_id,  # RFC 4456 §8: the router id unless `clusterId` is set
        max_paths=1 if state.fib is None else state.fib.max_paths,
        always_compare_med=state.always_compare_med,
    )


def peer_info(peer: Peer, state: DesiredState, *, remote_router_id: int) -> PeerInfo:
    """What selection needs of a peer; `remote_router_id` is the BGP Identifier of its OPEN."""
    local_asn = peer.local_asn or state.asn
    return PeerInfo(
        name=peer.name,
        address=ipaddress.ip_address(peer.address).packed,
        asn=peer.asn,
        router_id=remote_router_id,
        ebgp=peer.asn != local_asn,
    )


def fib_changes(changes: Iterable[RouteChange]) -> list[FibChange]:
    """Loc-RIB output -> FIB writer input: the next hops of the multipath set now and before
    (the kernel has those when every earlier change was written), or None."""
    return [
        (f, p, None if sel is None else sel.next_hops, None if old is None else old.next_hops)
        for f, p, sel, old in changes
    ]


def fib_table(rib: LocRib) -> dict[Family, dict[Prefix, NextHops]]:
    """Everything the Loc-RIB selected, for `FibWriter.reconcile`."""
    return {f: {p: s.next_hops for p, s in rib.selected_items(f)} for f in rib.families()}
