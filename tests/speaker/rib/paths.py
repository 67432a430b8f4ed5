"""Building received paths and prefixes for the Loc-RIB and policy tests, from text."""

from __future__ import annotations

import ipaddress

from speaker.api.communities import community_value, large_community_value
from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.decision import PeerInfo
from speaker.bgp.wire.attributes import (
    AS_SEQUENCE,
    AS_SET,
    AsPathAttribute,
    Attribute,
    ClusterListAttribute,
    CommunitiesAttribute,
    LargeCommunitiesAttribute,
    LocalPrefAttribute,
    MultiExitDiscAttribute,
    OriginatorIdAttribute,
    OriginAttribute,
    Segment,
)
from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST, Family
from speaker.bgp.wire.nlri import Prefix, prefix_from_str


def pfx(text: str) -> Prefix:
    return prefix_from_str(text)[1]


def fam(text: str) -> Family:
    return IPV6_UNICAST if ":" in text else IPV4_UNICAST


def addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def rid(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def path(
    next_hop: str = "192.0.2.1",
    *,
    as_path: tuple[int, ...] = (65001,),
    as_set: tuple[int, ...] = (),
    origin: int = 0,
    med: int | None = None,
    local_pref: int | None = None,
    communities: tuple[str, ...] = (),
    large: tuple[str, ...] = (),
    originator: str | None = None,
    clusters: tuple[str, ...] = (),
) -> ReceivedPath:
    segments: list[Segment] = []
    if as_path:
        segments.append((AS_SEQUENCE, as_path))
    if as_set:
        segments.append((AS_SET, as_set))
    attrs: list[Attribute] = [OriginAttribute(origin), AsPathAttribute(tuple(segments))]
    if med is not None:
        attrs.append(MultiExitDiscAttribute(med))
    if local_pref is not None:
        attrs.append(LocalPrefAttribute(local_pref))
    if communities:
        attrs.append(CommunitiesAttribute(tuple(community_value(c) for c in communities)))
    if originator is not None:
        attrs.append(OriginatorIdAttribute(rid(originator)))
    if clusters:
        attrs.append(ClusterListAttribute(tuple(rid(c) for c in clusters)))
    if large:
        attrs.append(LargeCommunitiesAttribute(tuple(large_community_value(c) for c in large)))
    return ReceivedPath(tuple(attrs), addr(next_hop))


def peer(
    name: str,
    address: str,
    *,
    asn: int = 65001,
    router_id: str | None = None,
    ebgp: bool = True,
) -> PeerInfo:
    return PeerInfo(
        name=name,
        address=addr(address),
        asn=asn,
        router_id=rid(router_id or (address if "." in address else "10.255.255.255")),
        ebgp=ebgp,
    )
