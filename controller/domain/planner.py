"""The controller's heart: `plan(snapshot, node_name) -> Plan(state, reasons)`, with no I/O.

From a `Snapshot` of the cluster it computes one node's desired speaker state
(`speaker.api.schema.DesiredState`) and a `Reason` for everything it left out or altered. The rules,
in the order they apply (docs/planner.md has the full table):

- Node: ASN from the `kubgp.io/asn` annotation, else `default_asn`; router id from
  `kubgp.io/router-id`, else the node's first IPv4 InternalIP. If either is invalid or missing the
  plan has no state (`state is None`): the agent must send nothing, so the speaker keeps what it
  has. Unknown node: no state either.
- BGPPeer: kept when its nodeSelector selects the node; a `passwordSecretRef` whose Secret or key
  is missing drops the peer (`PeerSecretMissing`), never a session without its password.
- BGPAdvertisement: applies when its nodeSelector selects the node and its peerSelector selects at
  least one kept peer; an empty peerSelector leaves the speaker's `peers` absent (every peer).
- Prefixes: pod CIDRs of the node; Service LoadBalancer ingress IPs (type LoadBalancer, class
  unset or `kubgp.io/bgp`), externalIPs and clusterIPs, each cut to the advertisement's
  aggregation length; a prefix no selected peer's family carries is dropped (`NoAddressFamily`).
- Traffic policy Local (external for LoadBalancer/External IPs, internal for ClusterIPs): only
  with a ready endpoint on this node; with only serving-but-terminating ones the prefix is kept
  with `asPathPrepend = DRAIN_AS_PATH_PREPEND` so the ToR prefers other nodes while it drains.
- Several advertisements yielding one prefix merge: peers union, communities and large
  communities union, highest localPreference, lowest MED, smallest AS-path prepend.

`NodePlanner` is the same function with memory: it caches each Service's contribution by the
identity of its (immutable) views, so replanning after one Service change costs a pass over
cached entries, not a recomputation.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Final, NamedTuple

from controller.domain.objects import (
    ADDRESS_EXTERNAL,
    ADDRESS_LOAD_BALANCER,
    ANNOTATION_ADVERTISE,
    ANNOTATION_ASN,
    ANNOTATION_ROUTER_ID,
    LOAD_BALANCER_CLASS,
    SERVICE_ADDRESS_KINDS,
    BGPAdvertisement,
    BGPPeer,
    EndpointSlice,
    Node,
    Service,
)
from controller.domain.reasons import ObjectRef, Reason, ReasonCode
from controller.domain.snapshot import Key, Snapshot
from speaker.api.schema import (
    DEFAULT_PORT,
    FAMILY_IPV4,
    FAMILY_IPV6,
    Advertisement,
    DesiredState,
    GracefulRestart,
    Listen,
    Peer,
    family_of,
    prefix_sort_key,
)

DEFAULT_ASN: Final = 64512
DRAIN_AS_PATH_PREPEND: Final = 3
UINT32_MAX: Final = 0xFFFFFFFF
MAX_PASSWORD_BYTES: Final = 80


class Plan(NamedTuple):
    """`state` None means: no valid state for this node; send nothing (the speaker keeps its
    last state). An empty `DesiredState` (no peers) means: withdraw everything."""

    state: DesiredState | None
    reasons: tuple[Reason, ...]


def plan(snapshot: Snapshot, node_name: str, *, default_asn: int = DEFAULT_ASN) -> Plan:
    """One node's desired speaker state and the reasons for what it left out. Pure."""
    return NodePlanner(node_name, default_asn=default_asn).plan(snapshot)


@dataclass(frozen=True, slots=True)
class _AdContext:
    """An advertisement as it applies to this node: the speaker peers it goes to (None = all)
    and the families those peers carry."""

    ad: BGPAdvertisement
    peers: tuple[str, ...] | None
    families: frozenset[str]


class _Local(Enum):
    READY = 1
    DRAINING = 2
    NONE = 3


# What one Service contributes to one prefix: the prefix, the advertisements (as they apply to
# this node) that announce it, and the AS-path prepend. The Advertisement value is built once
# per prefix, from the union of every contributing Service's contexts (`_remerge`), not once
# per Service.
_Contribution = tuple[str, tuple[_AdContext, ...], int]
_NOTHING: Final[tuple[_Contribution, ...]] = ()


class _ServiceEntry(NamedTuple):
    """One Service's contribution, valid while its inputs are the very same objects."""

    service: Service
    slices: tuple[EndpointSlice, ...]
    ad_names: tuple[str, ...]
    contributions: Sequence[_Contribution]  # never changed once the entry is made
    reasons: tuple[Reason, ...]


class NodePlanner:
    """`plan()` for one node, remembering per-Service results between calls.

    A Service's cached contribution is reused while its view, its EndpointSlice tuple and the
    names of the advertisements selecting it are the very same objects as last time (snapshots
    share unchanged views) and the node's advertisement context is equal; the merged prefix
    table and its sorted order are updated only where a contribution changed. Results are
    always those of a fresh `plan()` (a property test checks this).
    """

    def __init__(self, node_name: str, *, default_asn: int = DEFAULT_ASN) -> None:
        self.node_name = node_name
        self.default_asn = default_asn
        self._reset(None)

    def _reset(self, context: tuple[_AdContext, ...] | None) -> None:
        self._context = context
        self._entries: dict[Key, _ServiceEntry] = {}
        self._contributions: dict[str, dict[Key, _Contribution]] = {}
        # Tuples of contexts are interned, so that equal ones are identical and their merged
        # attributes are computed once: (ctx,) per context, `_with(contexts, ctx)` for the rest,
        # all keyed by id (every interned tuple stays alive in these dicts).
        self._alone: dict[int, tuple[_AdContext, ...]] = {id(c): (c,) for c in context or ()}
        self._with_memo: dict[tuple[int, int], tuple[_AdContext, ...]] = {}
        self._attributes: dict[int, _Attributes] = {}
        self._merged: dict[str, Advertisement] = {}
        self._order: list[str] = []  # keys of _merged, in prefix order
        self._reasons: tuple[Reason, ...] = ()
        self._kinds_memo: dict[tuple[str, ...], _ByKind | None] = {}
        self._token: object = None  # the snapshot the caches describe

    def plan(self, snapshot: Snapshot) -> Plan:
        reasons: list[Reason] = list(snapshot.invalid.values())
        node = snapshot.nodes.get(self.node_name)
        if node is None:
            ref_reason = Reason(
                ReasonCode.NodeNotFound,
                _node_ref(self.node_name),
                "no valid Node object of that name",
            )
            return Plan(None, (ref_reason, *reasons))
        identity = _node_identity(node, self.default_asn, reasons)
        if identity is None:
            return Plan(None, tuple(reasons))
        asn, router_id = identity

        peers = self._peers(snapshot, node, reasons)
        contexts = self._advertisement_contexts(snapshot, node, peers, reasons)
        pod_advertisements: dict[str, Advertisement] = {}
        self._pod_cidrs(node, contexts, pod_advertisements, reasons)

        service_contexts = tuple(c for c in contexts if c.ad.service_addresses)
        if service_contexts != self._context:
            self._reset(service_contexts)
        self._update_services(snapshot)
        reasons.extend(self._reasons)

        merged = self._merged
        order = self._order
        if pod_advertisements:
            merged = dict(merged)
            order = list(order)
            for prefix, adv in pod_advertisements.items():
                old = merged.get(prefix)
                if old is None:
                    bisect.insort(order, prefix, key=prefix_sort_key)
                    merged[prefix] = adv
                else:
                    merged[prefix] = _merge(old, adv)

        speaker_peers = tuple(p for _, p in peers.values())
        listen = None
        if any(p.passive for p in speaker_peers):
            listen = Listen(address=_listen_address(node), port=DEFAULT_PORT)
        state = DesiredState(
            router_id=router_id,
            asn=asn,
            listen=listen,
            peers=speaker_peers,
            advertisements=tuple([merged[p] for p in order]),
        )
        return Plan(state, tuple(reasons))

    def _update_services(self, snapshot: Snapshot) -> None:
        entries = self._entries
        contexts = {c.ad.name: c for c in self._context or ()}
        kinds_memo = self._kinds_memo
        dirty: set[str] = set()
        reasons_changed = False
        slices_by_service = snapshot.slices_by_service
        ads_for_service = snapshot.ads_for_service
        services = snapshot.services
        all_contributions = self._contributions
        candidates: Iterable[tuple[Key, Service | None]] = services.items()
        if snapshot.previous_token is self._token and snapshot.changed_services is not None:
            # only these can differ from last time
            candidates = [(k, services.get(k)) for k in snapshot.changed_services]
        self._token = snapshot.token
        for key, service in candidates:
            if service is None:
                continue  # removed: handled below
            slices = slices_by_service.get(key, ())
            ad_names = ads_for_service.get(key, ())
            old = entries.get(key) if entries else None
            if (
                old is not None
                and old.service is service
                and old.slices is slices
                and old.ad_names is ad_names
            ):
                continue
            by_kind = kinds_memo.get(ad_names)
            if by_kind is None:
                by_kind = kinds_memo[ad_names] = _by_kind(
                    [contexts[n] for n in ad_names if n in contexts]
                )
            found, service_reasons = self._service(service, slices, by_kind, bool(contexts))
            entry = _ServiceEntry(service, slices, ad_names, found, service_reasons)
            if old is not None:
                self._withdraw(key, old, dirty)
                reasons_changed = reasons_changed or old.reasons != service_reasons
            else:
                reasons_changed = reasons_changed or bool(service_reasons)
            for contribution in found:
                prefix = contribution[0]
                contributors = all_contributions.get(prefix)
                if contributors is None:
                    all_contributions[prefix] = {key: contribution}
                else:
                    contributors[key] = contribution
                dirty.add(prefix)
            entries[key] = entry
        if len(entries) > len(snapshot.services):
            for key in [k for k in entries if k not in snapshot.services]:
                old = entries.pop(key)
                self._withdraw(key, old, dirty)
                reasons_changed = reasons_changed or bool(old.reasons)
        if len(dirty) > len(self._order) // 8:
            # Many changes (a first plan): merge, then sort once instead of inserting each.
            merged = self._merged
            attributes = self._attributes
            for prefix in dirty:
                contributors = all_contributions.get(prefix)
                if contributors is not None and len(contributors) == 1:
                    # the common case, inlined: one Service announces the prefix
                    for _, announcing, prepend in contributors.values():
                        attrs = attributes.get(id(announcing))
                        if attrs is None:
                            attrs = attributes[id(announcing)] = _merged_attributes(announcing)
                        merged[prefix] = _make_advertisement(prefix, attrs, prepend)
                else:
                    self._remerge(prefix, insert=False)
            self._order = sorted(merged, key=prefix_sort_key)
        else:
            for prefix in dirty:
                self._remerge(prefix, insert=True)
        if reasons_changed:
            self._reasons = tuple(r for k in snapshot.services for r in entries[k].reasons)

    def _withdraw(self, key: Key, entry: _ServiceEntry, dirty: set[str]) -> None:
        for prefix, _, _ in entry.contributions:
            del self._contributions[prefix][key]
            dirty.add(prefix)

    def _remerge(self, prefix: str, *, insert: bool) -> None:
        contributors = self._contributions.get(prefix)
        had = prefix in self._merged
        if not contributors:
            self._contributions.pop(prefix, None)
            if had:
                del self._merged[prefix]
                if insert:
                    key = prefix_sort_key(prefix)
                    del self._order[bisect.bisect_left(self._order, key, key=prefix_sort_key)]
            return
        it = iter(contributors.values())
        _, contexts, prepend = next(it)
        for _, other, other_prepend in it:
            if other is not contexts:
                for ctx in other:
                    contexts = self._with(contexts, ctx)
            prepend = min(prepend, other_prepend)
        attributes = self._attributes.get(id(contexts))
        if attributes is None:
            attributes = self._attributes[id(contexts)] = _merged_attributes(contexts)
        self._merged[prefix] = _make_advertisement(prefix, attributes, prepend)
        if insert and not had:
            bisect.insort(self._order, prefix, key=prefix_sort_key)

    def _with(self, contexts: tuple[_AdContext, ...], ctx: _AdContext) -> tuple[_AdContext, ...]:
        """The interned tuple of `contexts` (interned) and `ctx`."""
        key = (id(contexts), id(ctx))
        out = self._with_memo.get(key)
        if out is None:
            out = contexts if any(c is ctx for c in contexts) else (*contexts, ctx)
            self._with_memo[key] = out
        return out

    # --- peers and advertisements ----------------------------------------------------------

    def _peers(
        self, snapshot: Snapshot, node: Node, reasons: list[Reason]
    ) -> dict[str, tuple[BGPPeer, Peer]]:
        out: dict[str, tuple[BGPPeer, Peer]] = {}
        for bgp_peer in snapshot.peers:
            if not bgp_peer.node_selector.matches(node.labels):
                reasons.append(
                    Reason(ReasonCode.NotSelected, bgp_peer.ref, "nodeSelector does not match")
                )
                continue
            password: str | None = None
            ref = bgp_peer.password_secret_ref
            if ref is not None:
                secret = snapshot.secrets.get((ref.namespace, ref.name))
                where = f"Secret {ref.namespace}/{ref.name}"
                if secret is None:
                    reasons.append(
                        Reason(ReasonCode.PeerSecretMissing, bgp_peer.ref, f"{where} not found")
                    )
                    continue
                password = secret.data.get(ref.key)
                if password is None:
                    reasons.append(
                        Reason(
                            ReasonCode.PeerSecretMissing,
                            bgp_peer.ref,
                            f"{where} has no key {ref.key!r}",
                        )
                    )
                    continue
                if not password or len(password.encode()) > MAX_PASSWORD_BYTES:
                    reasons.append(
                        Reason(
                            ReasonCode.InvalidObject,
                            bgp_peer.ref,
                            f"{where} key {ref.key!r}: password must be 1..80 bytes",
                        )
                    )
                    continue
            out[bgp_peer.name] = (
                bgp_peer,
                Peer(
                    name=bgp_peer.name,
                    address=bgp_peer.peer_address,
                    port=bgp_peer.port,
                    asn=bgp_peer.peer_asn,
                    local_asn=bgp_peer.local_asn,
                    source_address=bgp_peer.source_address,
                    passive=bgp_peer.passive,
                    hold_time=bgp_peer.hold_time,
                    keepalive_time=bgp_peer.keepalive_time,
                    connect_retry_time=bgp_peer.connect_retry_time,
                    password=password,
                    ebgp_multihop=bgp_peer.ebgp_multihop,
                    ttl_security=bgp_peer.ttl_security,
                    graceful_restart=GracefulRestart(
                        enabled=bgp_peer.graceful_restart, restart_time=bgp_peer.restart_time
                    ),
                    families=bgp_peer.families,
                    max_prefixes=bgp_peer.max_prefixes,
                    bfd=bgp_peer.bfd,
                ),
            )
        return out

    def _advertisement_contexts(
        self,
        snapshot: Snapshot,
        node: Node,
        peers: Mapping[str, tuple[BGPPeer, Peer]],
        reasons: list[Reason],
    ) -> tuple[_AdContext, ...]:
        out: list[_AdContext] = []
        for ad in snapshot.advertisements:
            if not ad.node_selector.matches(node.labels):
                reasons.append(
                    Reason(ReasonCode.NotSelected, ad.ref, "nodeSelector does not match")
                )
                continue
            chosen = [(n, p) for n, (bp, p) in peers.items() if ad.peer_selector.matches(bp.labels)]
            if not chosen:
                reasons.append(
                    Reason(
                        ReasonCode.NoPeerSelected,
                        ad.ref,
                        f"peerSelector selects none of this node's {len(peers)} peer(s)",
                    )
                )
                continue
            families = frozenset(f for _, p in chosen for f in p.families)
            names = None if ad.peer_selector.is_empty else tuple(sorted(n for n, _ in chosen))
            out.append(_AdContext(ad, names, families))
        return tuple(out)

    def _pod_cidrs(
        self,
        node: Node,
        contexts: Iterable[_AdContext],
        merged: dict[str, Advertisement],
        reasons: list[Reason],
    ) -> None:
        wanting = [c for c in contexts if c.ad.pod_cidrs]
        if wanting and not node.pod_cidrs:
            reasons.append(Reason(ReasonCode.NoPodCIDR, node.ref, "spec.podCIDRs is empty"))
        for ctx in wanting:
            for cidr in node.pod_cidrs:
                if family_of(cidr) not in ctx.families:
                    reasons.append(_no_family(node.ref, cidr, ctx))
                    continue
                adv = _advertisement(cidr, (ctx,), 0)
                old = merged.get(cidr)
                merged[cidr] = adv if old is None else _merge(old, adv)

    # --- services ------------------------------------------------------------------------------

    def _service(
        self,
        service: Service,
        slices: tuple[EndpointSlice, ...],
        by_kind: _ByKind | None,
        any_context: bool,
    ) -> tuple[Sequence[_Contribution], tuple[Reason, ...]]:
        ref = service.ref
        if service.annotations.get(ANNOTATION_ADVERTISE) == "false":
            opted_out = Reason(ReasonCode.OptedOut, ref, f"annotation {ANNOTATION_ADVERTISE}")
            return _NOTHING, (opted_out,)
        if by_kind is None:
            if not any_context:
                return _NOTHING, ()
            detail = "no BGPAdvertisement for this node selects it"
            return _NOTHING, (Reason(ReasonCode.ServiceNotSelected, ref, detail),)
        reasons: list[Reason] | None = None
        alone = self._alone
        # A Service yields a handful of prefixes: a list searched linearly beats a dict here.
        found: list[_Contribution] = []
        local: _Local | None = None
        for kind, wanting in by_kind:
            addresses, traffic_local, why = _addresses(service, kind)
            if why is not None:
                reasons = [why] if reasons is None else [*reasons, why]
                continue
            if not addresses:
                continue
            prepend = 0
            if traffic_local:
                if local is None:
                    local = _local_state(slices, self.node_name)
                if local is _Local.NONE:
                    why = Reason(ReasonCode.NoLocalReadyEndpoint, ref, _NO_LOCAL[kind])
                    reasons = [why] if reasons is None else [*reasons, why]
                    continue
                if local is _Local.DRAINING:
                    prepend = DRAIN_AS_PATH_PREPEND
                    why = Reason(ReasonCode.DrainingTerminatingEndpoint, ref, _DRAINING[kind])
                    reasons = [why] if reasons is None else [*reasons, why]
            for ctx in wanting:
                ad = ctx.ad
                for address in addresses:
                    if ":" in address:
                        prefix = _prefix_of(address, ad.aggregation_length_ipv6)
                        family = FAMILY_IPV6
                    else:
                        prefix = _prefix_of(address, ad.aggregation_length_ipv4)
                        family = FAMILY_IPV4
                    if family not in ctx.families:
                        why = _no_family(ref, prefix, ctx)
                        reasons = [why] if reasons is None else [*reasons, why]
                        continue
                    for i, (seen, contexts, seen_prepend) in enumerate(found):
                        if seen == prefix:
                            found[i] = (
                                prefix,
                                self._with(contexts, ctx),
                                min(seen_prepend, prepend),
                            )
                            break
                    else:
                        found.append((prefix, alone[id(ctx)], prepend))
        if reasons is None:
            return found or _NOTHING, ()
        if len(reasons) > 1:
            return found or _NOTHING, tuple(dict.fromkeys(reasons))
        return found or _NOTHING, tuple(reasons)


_ByKind = tuple[tuple[str, tuple[_AdContext, ...]], ...]


def _by_kind(selecting: list[_AdContext]) -> _ByKind | None:
    """For each Service address kind, the advertisements (of those selecting a Service) that
    want it; None when no advertisement selects the Service."""
    if not selecting:
        return None
    out = []
    for kind in SERVICE_ADDRESS_KINDS:
        wanting = tuple(c for c in selecting if kind in c.ad.service_addresses)
        if wanting:
            out.append((kind, wanting))
    return tuple(out)


_NO_LOCAL: Final = {
    kind: f"{kind}: traffic policy Local and no ready endpoint on this node"
    for kind in SERVICE_ADDRESS_KINDS
}
_DRAINING: Final = {
    kind: f"{kind}: only terminating endpoints here; AS path prepended {DRAIN_AS_PATH_PREPEND}x"
    for kind in SERVICE_ADDRESS_KINDS
}


def _node_ref(name: str) -> ObjectRef:
    return ObjectRef("Node", "", name)


def _node_identity(node: Node, default_asn: int, reasons: list[Reason]) -> tuple[int, str] | None:
    """The node's (ASN, router id), or None with a reason."""
    asn = default_asn
    raw_asn = node.annotations.get(ANNOTATION_ASN)
    if raw_asn is not None:
        if not raw_asn.isdigit() or not 1 <= int(raw_asn) <= UINT32_MAX:
            detail = f"annotation {ANNOTATION_ASN}={raw_asn!r}: must be 1..4294967295"
            reasons.append(Reason(ReasonCode.InvalidObject, node.ref, detail))
            return None
        asn = int(raw_asn)
    raw_id = node.annotations.get(ANNOTATION_ROUTER_ID)
    if raw_id is not None:
        try:
            return asn, str(ipaddress.IPv4Address(raw_id))
        except ValueError:
            detail = f"annotation {ANNOTATION_ROUTER_ID}={raw_id!r}: must be an IPv4 dotted quad"
            reasons.append(Reason(ReasonCode.InvalidObject, node.ref, detail))
            return None
    for ip in node.internal_ips:
        if family_of(ip) == FAMILY_IPV4:
            return asn, ip
    detail = f"no IPv4 InternalIP and no {ANNOTATION_ROUTER_ID} annotation"
    reasons.append(Reason(ReasonCode.NoRouterId, node.ref, detail))
    return None


def _listen_address(node: Node) -> str:
    ipv4 = [ip for ip in node.internal_ips if family_of(ip) == FAMILY_IPV4]
    return (ipv4 or list(node.internal_ips) or ["0.0.0.0"])[0]


def _no_family(ref: ObjectRef, prefix: str, ctx: _AdContext) -> Reason:
    return Reason(
        ReasonCode.NoAddressFamily,
        ref,
        f"{prefix}: no peer selected by BGPAdvertisement {ctx.ad.name} carries {family_of(prefix)}",
    )


class _Attributes(NamedTuple):
    """What an Advertisement carries besides its prefix and AS-path prepend."""

    peers: tuple[str, ...] | None
    communities: tuple[str, ...]
    large_communities: tuple[str, ...]
    local_preference: int | None
    med: int | None


def _merged_attributes(contexts: Sequence[_AdContext]) -> _Attributes:
    """The attributes of a prefix that several BGPAdvertisements select: what `_merge` gives
    for their advertisements, without building the intermediate values (a view's communities
    are sorted and unique, so one advertisement's equal their union)."""
    if len(contexts) == 1:
        ad = contexts[0].ad
        return _Attributes(
            contexts[0].peers, ad.communities, ad.large_communities, ad.local_preference, ad.med
        )
    peers: tuple[str, ...] | None = None
    if all(c.peers is not None for c in contexts):
        peers = tuple(sorted({p for c in contexts for p in c.peers or ()}))
    prefs = [c.ad.local_preference for c in contexts if c.ad.local_preference is not None]
    meds = [c.ad.med for c in contexts if c.ad.med is not None]
    return _Attributes(
        peers,
        tuple(sorted({x for c in contexts for x in c.ad.communities})),
        tuple(sorted({x for c in contexts for x in c.ad.large_communities})),
        max(prefs) if prefs else None,
        min(meds) if meds else None,
    )


def _make_advertisement(prefix: str, a: _Attributes, prepend: int) -> Advertisement:
    return Advertisement(
        prefix=prefix,
        peers=a.peers,
        communities=a.communities,
        large_communities=a.large_communities,
        local_preference=a.local_preference,
        med=a.med,
        as_path_prepend=prepend,
    )


def _advertisement(prefix: str, contexts: Sequence[_AdContext], prepend: int) -> Advertisement:
    return _make_advertisement(prefix, _merged_attributes(contexts), prepend)


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a if a == b else tuple(sorted({*a, *b}))


def _pick(a: int | None, b: int | None, best: Callable[[int, int], int]) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return best(a, b)


def _merge(a: Advertisement, b: Advertisement) -> Advertisement:
    """One prefix from several advertisements (or Services): see the module docstring."""
    if a == b:
        return a
    peers = None if a.peers is None or b.peers is None else _union(a.peers, b.peers)
    return Advertisement(
        prefix=a.prefix,
        peers=peers,
        communities=_union(a.communities, b.communities),
        large_communities=_union(a.large_communities, b.large_communities),
        local_preference=_pick(a.local_preference, b.local_preference, max),
        med=_pick(a.med, b.med, min),
        as_path_prepend=min(a.as_path_prepend, b.as_path_prepend),
    )


def _addresses(service: Service, kind: str) -> tuple[tuple[str, ...], bool, Reason | None]:
    """(addresses, traffic policy is Local, reason they are unavailable) for one address kind."""
    ref = service.ref
    if kind == ADDRESS_LOAD_BALANCER:
        if service.type != "LoadBalancer":
            return (), False, None
        lb_class = service.load_balancer_class
        if lb_class is not None and lb_class != LOAD_BALANCER_CLASS:
            detail = f"loadBalancerClass {lb_class!r} is not {LOAD_BALANCER_CLASS!r}"
            return (), False, Reason(ReasonCode.ForeignLoadBalancerClass, ref, detail)
        if not service.load_balancer_ips:
            detail = "status.loadBalancer.ingress has no IP yet"
            return (), False, Reason(ReasonCode.NoAddressAssigned, ref, detail)
        return service.load_balancer_ips, service.external_traffic_local, None
    if kind == ADDRESS_EXTERNAL:
        return service.external_ips, service.external_traffic_local, None
    if service.headless:
        return (), False, Reason(ReasonCode.HeadlessService, ref, "clusterIP is None")
    return service.cluster_ips, service.internal_traffic_local, None


def _local_state(slices: tuple[EndpointSlice, ...], node_name: str) -> _Local:
    draining = False
    for s in slices:
        for ep in s.endpoints:
            if ep.node_name == node_name:
                if ep.ready:
                    return _Local.READY
                if ep.serving and ep.terminating:
                    draining = True
    return _Local.DRAINING if draining else _Local.NONE


@lru_cache(maxsize=1 << 16)
def _prefix_of(address: str, length: int) -> str:
    return str(ipaddress.ip_network(f"{address}/{length}", strict=False))
