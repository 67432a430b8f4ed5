"""Node-to-node iBGP sessions from BGPNodePeerings, pure (docs/in-cluster-routing.md).

`membership(nodes, peerings, default_asn)` is the cluster-wide, node-independent half: which
nodes each BGPNodePeering has (a node selected by several is a member of the first by name),
which of them are route reflectors, each member's ASN, InternalIPs and pod CIDRs. Every node
computes the same membership from the same snapshot, so the two ends of a session always agree
that it exists.

`node_sessions(node, asn, membership, ...)` is one node's half: a speaker `Peer` per other
member it peers with and per address family both have an InternalIP of (IPv4 session
`node/NAME`, IPv6 session `node/NAME/ipv6`), iBGP, from its own InternalIP of that family to
the other's. Full mesh: every other member. Route reflection: a reflector peers with every
other member (the non-reflectors as its clients, `routeReflectorClient`), a client only with
the reflectors. Each session's import rules accept exactly the pod CIDRs that can come over it
(the other node's own, or on a session to a reflector every other member's), so a node still
accepts nothing else. The node's own pod CIDRs go to every one of its node sessions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from controller.domain.objects import ANNOTATION_ASN, BGPNodePeering, Node, Secret
from controller.domain.reasons import ObjectRef, Reason, ReasonCode
from speaker.api.schema import (
    DEFAULT_PORT,
    FAMILY_IPV4,
    FAMILY_IPV6,
    GracefulRestart,
    ImportRule,
    Peer,
    family_of,
    prefix_sort_key,
)

SESSION_PREFIX: Final = "node/"  # a BGPPeer's name (a DNS subdomain) never contains "/"
IPV6_SUFFIX: Final = "/ipv6"
UINT32_MAX: Final = 0xFFFFFFFF
MAX_PASSWORD_BYTES: Final = 80
_FAMILIES: Final = (FAMILY_IPV4, FAMILY_IPV6)


class Role(enum.StrEnum):
    """What the other node of a session is to this one."""

    Mesh = "Mesh"  # a full-mesh peer
    RouteReflector = "RouteReflector"  # our reflector (or, between reflectors, another one)
    RouteReflectorClient = "RouteReflectorClient"  # our client: we reflect routes for it


def session_name(node: str, family: str) -> str:
    return (
        f"{SESSION_PREFIX}{node}"
        if family == FAMILY_IPV4
        else f"{SESSION_PREFIX}{node}{IPV6_SUFFIX}"
    )


def session_node(name: str) -> str | None:
    """The other node of a node session's name, None for any other peer (a BGPPeer's)."""
    if not name.startswith(SESSION_PREFIX):
        return None
    rest = name[len(SESSION_PREFIX) :]
    return rest.removesuffix(IPV6_SUFFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A node as its peers see it: only what a session to it needs."""

    name: str
    ref: ObjectRef
    asn: int | None  # None: its kubgp.io/asn annotation is invalid (it has no state either)
    addresses: Mapping[str, str]  # family -> its first InternalIP of that family
    pod_cidrs: Mapping[str, tuple[str, ...]]  # family -> its pod CIDRs
    reflector: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """Who is in which BGPNodePeering; the same for every node."""

    peering_of: Mapping[str, BGPNodePeering]  # node name -> the peering it is a member of
    members: Mapping[str, tuple[Member, ...]]  # peering name -> members, by node name
    shadowed: Mapping[str, tuple[BGPNodePeering, ...]]  # node -> peerings selecting it too
    pod_cidrs: Mapping[tuple[str, str], tuple[str, ...]]  # (peering, family) -> all, sorted

    @property
    def empty(self) -> bool:
        return not self.peering_of


NO_MEMBERSHIP: Final = Membership(peering_of={}, members={}, shadowed={}, pod_cidrs={})


def node_asn(node: Node, default_asn: int) -> int | None:
    raw = node.annotations.get(ANNOTATION_ASN)
    if raw is None:
        return default_asn
    if not raw.isdigit() or not 1 <= int(raw) <= UINT32_MAX:
        return None
    return int(raw)


def _member(node: Node, default_asn: int, reflector: bool) -> Member:
    addresses: dict[str, str] = {}
    for ip in node.internal_ips:
        addresses.setdefault(family_of(ip), ip)
    cidrs: dict[str, list[str]] = {}
    for cidr in node.pod_cidrs:
        cidrs.setdefault(family_of(cidr), []).append(cidr)
    return Member(
        name=node.name,
        ref=node.ref,
        asn=node_asn(node, default_asn),
        addresses=addresses,
        pod_cidrs={f: tuple(c) for f, c in cidrs.items()},
        reflector=reflector,
    )


def membership(
    nodes: Mapping[str, Node], peerings: Sequence[BGPNodePeering], default_asn: int
) -> Membership:
    """Each node's BGPNodePeering (the first by name that selects it); `peerings` sorted."""
    if not peerings:
        return NO_MEMBERSHIP
    peering_of: dict[str, BGPNodePeering] = {}
    shadowed: dict[str, list[BGPNodePeering]] = {}
    members: dict[str, list[Member]] = {p.name: [] for p in peerings}
    for name in sorted(nodes):
        node = nodes[name]
        for peering in peerings:
            if not peering.node_selector.matches(node.labels):
                continue
            if name in peering_of:
                shadowed.setdefault(name, []).append(peering)
                continue
            peering_of[name] = peering
            selector = peering.reflector_selector
            reflector = selector is not None and selector.matches(node.labels)
            members[peering.name].append(_member(node, default_asn, reflector))
    pod_cidrs: dict[tuple[str, str], tuple[str, ...]] = {}
    for peering_name, group in members.items():
        for family in _FAMILIES:
            every = {c for m in group for c in m.pod_cidrs.get(family, ())}
            pod_cidrs[(peering_name, family)] = tuple(sorted(every, key=prefix_sort_key))
    return Membership(
        peering_of=peering_of,
        members={k: tuple(v) for k, v in members.items()},
        shadowed={k: tuple(v) for k, v in shadowed.items()},
        pod_cidrs=pod_cidrs,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSession:
    peer: Peer
    node: str  # the other node
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSessions:
    """One node's node-to-node sessions and what goes with them."""

    peering: BGPNodePeering | None  # the one it is a member of
    reflector: bool
    sessions: tuple[NodeSession, ...]  # by peer name
    cluster_id: str | None  # set on a reflector when the peering names one
    pod_targets: tuple[tuple[str, tuple[str, ...]], ...]  # (own pod CIDR, session names)
    reasons: tuple[Reason, ...]

    @property
    def peers(self) -> tuple[Peer, ...]:
        return tuple(s.peer for s in self.sessions)


NO_SESSIONS: Final = NodeSessions(
    peering=None, reflector=False, sessions=(), cluster_id=None, pod_targets=(), reasons=()
)


SecretKey = tuple[str, str]


def _password(
    peering: BGPNodePeering,
    secrets: Mapping[SecretKey, Secret],
    unreadable: Mapping[SecretKey, str],
) -> tuple[bool, str | None, Reason | None]:
    """(usable, password, why not): a missing Secret or key drops every session, never runs one
    without its password."""
    ref = peering.password_secret_ref
    if ref is None:
        return True, None, None
    key = (ref.namespace, ref.name)
    where = f"Secret {ref.namespace}/{ref.name}"
    secret = secrets.get(key)
    if secret is None:
        detail = unreadable.get(key) or f"{where} not found"
        return False, None, Reason(ReasonCode.PeerSecretMissing, peering.ref, detail)
    password = secret.data.get(ref.key)
    if password is None:
        detail = f"{where} has no key {ref.key!r}"
        return False, None, Reason(ReasonCode.PeerSecretMissing, peering.ref, detail)
    if not password or len(password.encode()) > MAX_PASSWORD_BYTES:
        detail = f"{where} key {ref.key!r}: password must be 1..80 bytes"
        return False, None, Reason(ReasonCode.InvalidObject, peering.ref, detail)
    return True, password, None


def _accept(cidrs: Sequence[str]) -> tuple[ImportRule, ...]:
    return tuple(ImportRule(action="accept", prefix=c) for c in cidrs)


def node_sessions(
    node: Node,
    asn: int,
    *,
    members: Membership,
    peerings: Sequence[BGPNodePeering],
    secrets: Mapping[SecretKey, Secret],
    unreadable: Mapping[SecretKey, str],
    taken: frozenset[str] = frozenset(),
) -> NodeSessions:
    """`node`'s sessions to the other members of its BGPNodePeering; `asn` is its own ASN,
    `taken` the peer addresses its BGPPeers use already (a BGPPeer wins)."""
    reasons: list[Reason] = []
    peering = members.peering_of.get(node.name)
    for unused in peerings:
        if unused is peering:
            continue
        if unused in members.shadowed.get(node.name, ()):
            assert peering is not None
            detail = (
                f"node {node.name} is a member of BGPNodePeering {peering.name} (the first by "
                "name that selects it) only"
            )
            reasons.append(Reason(ReasonCode.NodePeeringConflict, unused.ref, detail))
        else:
            detail = "nodeSelector does not match"
            reasons.append(Reason(ReasonCode.NotSelected, unused.ref, detail))
    if peering is None:
        return NodeSessions(
            peering=None, reflector=False, sessions=(), cluster_id=None, pod_targets=(),
            reasons=tuple(reasons),
        )  # fmt: skip
    group = members.members[peering.name]
    me = next(m for m in group if m.name == node.name)
    usable, password, why = _password(peering, secrets, unreadable)
    if why is not None:
        reasons.append(why)
    reflection = peering.reflector_selector is not None
    if reflection and not any(m.reflector for m in group):
        detail = "routeReflectors.nodeSelector selects none of the members: no node sessions"
        reasons.append(Reason(ReasonCode.NoNodeSession, peering.ref, detail))
    # The pod CIDRs a session to a reflector may bring: every other member's.
    others_cidrs: dict[str, tuple[ImportRule, ...]] = {}
    for family in _FAMILIES:
        own = set(me.pod_cidrs.get(family, ()))
        every = members.pod_cidrs.get((peering.name, family), ())
        others_cidrs[family] = _accept([c for c in every if c not in own])
    sessions: list[NodeSession] = []
    for other in group if usable else ():
        if other.name == node.name:
            continue
        if reflection and not me.reflector and not other.reflector:
            continue  # clients peer only with reflectors
        if other.asn != asn:
            shown = (
                "an invalid kubgp.io/asn annotation" if other.asn is None else f"ASN {other.asn}"
            )
            detail = f"has {shown}, this node {asn}: node peering is iBGP, in one ASN"
            reasons.append(Reason(ReasonCode.NoNodeSession, other.ref, detail))
            continue
        if me.reflector and not other.reflector:
            role = Role.RouteReflectorClient
        elif reflection:
            role = Role.RouteReflector
        else:
            role = Role.Mesh
        common = [f for f in _FAMILIES if f in me.addresses and f in other.addresses]
        if not common:
            detail = (
                f"no InternalIP of a family node {node.name} has one of "
                f"({', '.join(sorted(me.addresses)) or 'none'})"
            )
            reasons.append(Reason(ReasonCode.NoNodeSession, other.ref, detail))
            continue
        for family in common:
            address = other.addresses[family]
            if address in taken:
                detail = f"its address {address} is a BGPPeer's on this node; that one is kept"
                reasons.append(Reason(ReasonCode.NoNodeSession, other.ref, detail))
                continue
            if role is Role.RouteReflector:
                rules = others_cidrs[family]
            else:
                rules = _accept(other.pod_cidrs.get(family, ()))
            peer = Peer(
                name=session_name(other.name, family),
                address=address,
                asn=asn,
                port=DEFAULT_PORT,
                source_address=me.addresses[family],
                hold_time=peering.hold_time,
                keepalive_time=peering.keepalive_time,
                connect_retry_time=peering.connect_retry_time,
                password=password,
                graceful_restart=GracefulRestart(
                    enabled=peering.graceful_restart, restart_time=peering.restart_time
                ),
                families=(family,),
                import_rules=rules,
                bfd=peering.bfd,
                route_reflector_client=role is Role.RouteReflectorClient,
            )
            sessions.append(NodeSession(peer=peer, node=other.name, role=role))
    sessions.sort(key=lambda s: s.peer.name)
    targets: list[tuple[str, tuple[str, ...]]] = []
    for family in _FAMILIES:
        names = tuple(s.peer.name for s in sessions if s.peer.families == (family,))
        if names:
            targets.extend((cidr, names) for cidr in me.pod_cidrs.get(family, ()))
    return NodeSessions(
        peering=peering,
        reflector=me.reflector,
        sessions=tuple(sessions),
        cluster_id=peering.cluster_id if me.reflector else None,
        pod_targets=tuple(targets),
        reasons=tuple(reasons),
    )


__all__ = [
    "NO_MEMBERSHIP",
    "NO_SESSIONS",
    "Member",
    "Membership",
    "NodeSession",
    "NodeSessions",
    "Role",
    "membership",
    "node_asn",
    "node_sessions",
    "session_name",
    "session_node",
]
