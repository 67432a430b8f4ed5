"""An immutable, pre-indexed view of the cluster for the planner.

`Snapshot.build(raws)` parses raw objects (invalid ones become `InvalidObject` reasons);
`snapshot.apply(upserts=..., deletes=...)` returns a new snapshot that shares every unchanged view
with the old one, so a planner that caches by identity recomputes only what changed. `parse(raw)`
gives the view (or the reason) alone, so a caller can parse where the object arrives and hand
the snapshot views (`apply(views=...)`), keeping one copy of each object.

Indexes: services by (namespace, name) in sorted order, EndpointSlices grouped by their
Service, Secrets by (namespace, name), BGPPeers and BGPAdvertisements sorted by name, and per
Service its `ServiceFacts`: the node-independent half of planning it (which advertisements
select it, its addresses by kind and why some are unavailable, the nodes with a ready or a
terminating endpoint, aggregated prefixes), computed once per change of the Service, its
EndpointSlices or the advertisements instead of once per node and plan.

Copy-on-write: `apply` copies an index only when the change touches it, so one Service change
on a 10,000-Service snapshot copies the two Service-keyed dicts and nothing else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple, TypeVar

from controller.domain.objects import (
    ADDRESS_CLUSTER,
    ADDRESS_EXTERNAL,
    ADDRESS_LOAD_BALANCER,
    ANNOTATION_ADVERTISE,
    LOAD_BALANCER_CLASS,
    BGPAdvertisement,
    BGPNodePeering,
    BGPPeer,
    EndpointSlice,
    InvalidObjectError,
    KubeObject,
    LoadBalancerIPPool,
    Node,
    Secret,
    Service,
    parse_object,
)
from controller.domain.reasons import ObjectRef, Reason, ReasonCode

Key = tuple[str, str]
Parsed = KubeObject | Reason  # a view, or why the object has none (InvalidObject)
# Per address kind: (unavailable, traffic policy Local, per address: is it IPv6).
KindShape = tuple[bool, bool, tuple[bool, ...]]
# (advertisements selecting the Service, opted out, the three kinds in KINDS order)
Shape = tuple[tuple[str, ...], bool, KindShape, KindShape, KindShape]

# Address kinds in plan order; `ServiceFacts.kinds` and `.addresses` follow it.
KINDS: Final = (ADDRESS_LOAD_BALANCER, ADDRESS_EXTERNAL, ADDRESS_CLUSTER)
# A set of node names this large is a frozenset; smaller ones stay tuples (a scan of a few
# names is as fast as a hash lookup and a tuple is a tenth of the memory).
_SET_FROM: Final = 16

NO_LOCAL_DETAIL: Final = {
    kind: f"{kind}: traffic policy Local and no ready endpoint on this node" for kind in KINDS
}
NOT_SELECTED_DETAIL: Final = "no BGPAdvertisement for this node selects it"


def parse(raw: Mapping[str, object]) -> Parsed:
    """The view of a raw object, or an `InvalidObject` reason naming the bad field."""
    try:
        return parse_object(raw)
    except InvalidObjectError as err:
        return Reason(ReasonCode.InvalidObject, err.ref, err.detail)


class KindFacts(NamedTuple):
    """One address kind of a Service, node-independent: its addresses (empty: nothing, and no
    reason), whether its traffic policy is Local, and why the kind is unavailable (a reason
    code; the planner reports it on nodes where an advertisement wants the kind)."""

    addresses: tuple[str, ...]
    traffic_local: bool
    unavailable: Reason | None


class ServiceFacts(NamedTuple):
    """What every node's plan needs to know about one Service, computed once per change of
    the Service, its EndpointSlices or the BGPAdvertisements. A new `ServiceFacts` object
    means something changed; the same object means nothing did (planners cache by identity).

    `shape` is everything about the Service that decides *how* a node plans it (the
    advertisements selecting it, per kind: available or why not, traffic policy, each
    address's family), interned so that equal shapes are the same object: a planner works out
    what a shape means for its node once, and then applies that to each Service of the shape.
    """

    service: Service
    slices: tuple[EndpointSlice, ...]
    ad_names: tuple[str, ...]  # the BGPAdvertisements that select it, sorted
    kinds: tuple[KindFacts, KindFacts, KindFacts]  # in KINDS order
    ready_nodes: Collection[str]  # with a ready endpoint (only when a kind is traffic-local)
    terminating_nodes: Collection[str]  # with a serving, terminating endpoint (same)
    aggregated: Mapping[tuple[str, int], str]  # (address, length) -> prefix, lengths < host
    shape: Shape
    opted_out: Reason | None
    not_selected: Reason | None  # only when no advertisement at all selects it
    no_local: tuple[Reason | None, Reason | None, Reason | None]  # per kind, when Local


class _AdsForService(Mapping[Key, tuple[str, ...]]):
    """`snapshot.ads_for_service`: the names of the advertisements selecting each Service,
    read from its facts (no index of its own to copy)."""

    def __init__(self, facts: Mapping[Key, ServiceFacts]) -> None:
        self._facts = facts

    def __getitem__(self, key: Key) -> tuple[str, ...]:
        return self._facts[key].ad_names

    def __iter__(self) -> Iterator[Key]:
        return iter(self._facts)

    def __len__(self) -> int:
        return len(self._facts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    nodes: Mapping[str, Node] = field(default_factory=dict)
    services: Mapping[Key, Service] = field(default_factory=dict)  # in sorted key order
    endpoint_slices: Mapping[Key, EndpointSlice] = field(default_factory=dict)
    slices_by_service: Mapping[Key, tuple[EndpointSlice, ...]] = field(default_factory=dict)
    secrets: Mapping[Key, Secret] = field(default_factory=dict)
    # Secrets a caller could not read (say, 403: not granted); the detail tells why. The
    # planner drops a peer needing one, like a missing Secret, with that detail.
    unreadable_secrets: Mapping[Key, str] = field(default_factory=dict)
    peers: tuple[BGPPeer, ...] = ()
    advertisements: tuple[BGPAdvertisement, ...] = ()
    node_peerings: tuple[BGPNodePeering, ...] = ()  # sorted by name
    pools: tuple[LoadBalancerIPPool, ...] = ()
    invalid: Mapping[ObjectRef, Reason] = field(default_factory=dict)  # in sorted ref order
    service_facts: Mapping[Key, ServiceFacts] = field(default_factory=dict)  # services' order
    # Change tracking for incremental planners: this snapshot's token, the token of the one it
    # was derived from, and the Services whose facts changed in between (None: unknown, look
    # at everything).
    token: object = field(default_factory=object, compare=False)
    previous_token: object = field(default=None, compare=False)
    changed_services: frozenset[Key] | None = field(default=None, compare=False)
    # Interned shapes and advertisement-name tuples, shared along a line of snapshots.
    interned: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, raws: Iterable[Mapping[str, object]]) -> Snapshot:
        return cls().apply(upserts=raws)

    @property
    def ads_for_service(self) -> Mapping[Key, tuple[str, ...]]:
        """Names of the BGPAdvertisements (sorted) whose namespaces and serviceSelector select
        each Service."""
        return _AdsForService(self.service_facts)

    def apply(
        self,
        *,
        upserts: Iterable[Mapping[str, object]] = (),
        deletes: Iterable[ObjectRef] = (),
        views: Iterable[Parsed] = (),
        unreadable_secrets: Mapping[Key, str] | None = None,
    ) -> Snapshot:
        """A new snapshot with objects added or replaced (raw `upserts`, or already parsed
        `views`) and objects removed by reference; deletes first. A raw object that does not
        parse (or a `Reason` among `views`) replaces any previous view of it with the reason.
        `unreadable_secrets`, when given, replaces the set of unreadable Secrets."""
        b = _Builder(self)
        for ref in deletes:
            b.delete(ref)
        for raw in upserts:
            b.put(parse(raw))
        for view in views:
            b.put(view)
        if unreadable_secrets is not None and unreadable_secrets != self.unreadable_secrets:
            b.unreadable_secrets = dict(unreadable_secrets)
        return b.finish()

    def objects(self) -> Iterable[KubeObject]:
        yield from self.nodes.values()
        yield from self.services.values()
        yield from self.endpoint_slices.values()
        yield from self.secrets.values()
        yield from self.peers
        yield from self.advertisements
        yield from self.node_peerings
        yield from self.pools


class _Builder:
    """Copy-on-write: each index is copied at most once per `apply`, and only if touched."""

    def __init__(self, base: Snapshot) -> None:
        self.base = base
        self._nodes: dict[str, Node] | None = None
        self._services: dict[Key, Service] | None = None
        self.services_added = False
        self.services_touched: set[Key] = set()
        self.ads_changed = False
        self._endpoint_slices: dict[Key, EndpointSlice] | None = None
        self.slice_groups: dict[Key, dict[str, EndpointSlice]] = {}
        self._secrets: dict[Key, Secret] | None = None
        self.unreadable_secrets: dict[Key, str] | None = None
        self._peers: dict[str, BGPPeer] | None = None
        self._advertisements: dict[str, BGPAdvertisement] | None = None
        self._node_peerings: dict[str, BGPNodePeering] | None = None
        self._pools: dict[str, LoadBalancerIPPool] | None = None
        self._invalid: dict[ObjectRef, Reason] | None = None

    # -- lazily copied indexes --------------------------------------------------------------

    @property
    def nodes(self) -> dict[str, Node]:
        if self._nodes is None:
            self._nodes = dict(self.base.nodes)
        return self._nodes

    @property
    def services(self) -> dict[Key, Service]:
        if self._services is None:
            self._services = dict(self.base.services)
        return self._services

    @property
    def endpoint_slices(self) -> dict[Key, EndpointSlice]:
        if self._endpoint_slices is None:
            self._endpoint_slices = dict(self.base.endpoint_slices)
        return self._endpoint_slices

    @property
    def secrets(self) -> dict[Key, Secret]:
        if self._secrets is None:
            self._secrets = dict(self.base.secrets)
        return self._secrets

    @property
    def peers(self) -> dict[str, BGPPeer]:
        if self._peers is None:
            self._peers = {p.name: p for p in self.base.peers}
        return self._peers

    @property
    def advertisements(self) -> dict[str, BGPAdvertisement]:
        if self._advertisements is None:
            self._advertisements = {a.name: a for a in self.base.advertisements}
        return self._advertisements

    @property
    def node_peerings(self) -> dict[str, BGPNodePeering]:
        if self._node_peerings is None:
            self._node_peerings = {p.name: p for p in self.base.node_peerings}
        return self._node_peerings

    @property
    def pools(self) -> dict[str, LoadBalancerIPPool]:
        if self._pools is None:
            self._pools = {p.ref.name: p for p in self.base.pools}
        return self._pools

    @property
    def invalid(self) -> dict[ObjectRef, Reason]:
        if self._invalid is None:
            self._invalid = dict(self.base.invalid)
        return self._invalid

    def slice_group(self, service: Key) -> dict[str, EndpointSlice]:
        group = self.slice_groups.get(service)
        if group is None:
            old = self.base.slices_by_service.get(service, ())
            group = self.slice_groups[service] = {s.ref.name: s for s in old}
        return group

    # -- changes ------------------------------------------------------------------------------

    def delete(self, ref: ObjectRef) -> None:
        if ref in (self.base.invalid if self._invalid is None else self._invalid):
            del self.invalid[ref]
        key = (ref.namespace, ref.name)
        match ref.kind:
            case "Node":
                if ref.name in self.base.nodes or self._nodes is not None:
                    self.nodes.pop(ref.name, None)
            case "Service":
                if key in self.base.services or self._services is not None:
                    self.services.pop(key, None)
                self.services_touched.add(key)
            case "EndpointSlice":
                if key in self.base.endpoint_slices or self._endpoint_slices is not None:
                    old = self.endpoint_slices.pop(key, None)
                    if old is not None:
                        self.slice_group(old.service_key).pop(old.ref.name, None)
            case "Secret":
                if key in self.base.secrets or self._secrets is not None:
                    self.secrets.pop(key, None)
            case "BGPPeer":
                self.peers.pop(ref.name, None)
            case "BGPAdvertisement":
                if self.advertisements.pop(ref.name, None) is not None:
                    self.ads_changed = True
            case "BGPNodePeering":
                self.node_peerings.pop(ref.name, None)
            case "LoadBalancerIPPool":
                self.pools.pop(ref.name, None)
            case _:
                pass

    def put(self, view: Parsed) -> None:
        if isinstance(view, Reason):
            self.delete(view.ref)
            self.invalid[view.ref] = view
            return
        ref = view.ref
        if ref in (self.base.invalid if self._invalid is None else self._invalid):
            del self.invalid[ref]
        if isinstance(view, Service):
            key = (ref.namespace, ref.name)
            services = self.services
            if key not in services:
                self.services_added = True
            services[key] = view  # replaces in place, so Services keep their sorted order
            self.services_touched.add(key)
        elif isinstance(view, EndpointSlice):
            key = (ref.namespace, ref.name)
            slices = self.endpoint_slices
            old = slices.get(key)
            if old is not None:  # its Service may have changed
                self.slice_group(old.service_key).pop(old.ref.name, None)
            slices[key] = view
            self.slice_group(view.service_key)[ref.name] = view
        elif isinstance(view, Node):
            self.nodes[ref.name] = view
        elif isinstance(view, Secret):
            self.secrets[(ref.namespace, ref.name)] = view
        elif isinstance(view, BGPPeer):
            self.peers[ref.name] = view
        elif isinstance(view, BGPAdvertisement):
            self.advertisements[ref.name] = view
            self.ads_changed = True
        elif isinstance(view, BGPNodePeering):
            self.node_peerings[ref.name] = view
        else:
            self.pools[ref.name] = view

    # -- the new snapshot -------------------------------------------------------------------------

    def finish(self) -> Snapshot:
        base = self.base
        services = base.services if self._services is None else self._services
        if self.services_added:
            services = dict(sorted(services.items()))
        by_service = base.slices_by_service
        if self.slice_groups:
            by_service = dict(by_service)
            for k, group in self.slice_groups.items():
                if len(group) == 1:
                    by_service[k] = tuple(group.values())
                elif group:
                    by_service[k] = tuple([group[name] for name in sorted(group)])
                else:
                    by_service.pop(k, None)
        advertisements = base.advertisements
        if self._advertisements is not None:
            advertisements = tuple(self._advertisements[k] for k in sorted(self._advertisements))
        # The Services whose facts may differ: all of them when the advertisements changed.
        touched: Iterable[Key] = (
            services if self.ads_changed else self.services_touched | self.slice_groups.keys()
        )
        facts: Mapping[Key, ServiceFacts] = base.service_facts
        changed: set[Key] = set()
        if touched:
            computer = _FactsComputer(advertisements, base.interned)
            old_facts = base.service_facts
            new_facts = dict(old_facts) if not self.ads_changed else {}
            for key in touched:
                service = services.get(key)
                if service is None:
                    if new_facts.pop(key, None) is not None:
                        changed.add(key)
                    continue
                old = old_facts.get(key)
                slices = by_service.get(key, ())
                if (
                    old is not None
                    and not self.ads_changed
                    and old.service is service
                    and old.slices is slices
                ):
                    new_facts[key] = old
                    continue
                new_facts[key] = computer.facts(service, slices)
                changed.add(key)
            if self.services_added and not self.ads_changed:
                new_facts = {k: new_facts[k] for k in services}  # the Services' order
            facts = new_facts
        invalid = base.invalid
        if self._invalid is not None:
            invalid = dict(sorted(self._invalid.items()))
        return Snapshot(
            nodes=base.nodes if self._nodes is None else self._nodes,
            services=services,
            endpoint_slices=(
                base.endpoint_slices if self._endpoint_slices is None else self._endpoint_slices
            ),
            slices_by_service=by_service,
            secrets=base.secrets if self._secrets is None else self._secrets,
            unreadable_secrets=(
                base.unreadable_secrets
                if self.unreadable_secrets is None
                else self.unreadable_secrets
            ),
            peers=(
                base.peers
                if self._peers is None
                else tuple(self._peers[k] for k in sorted(self._peers))
            ),
            advertisements=advertisements,
            node_peerings=(
                base.node_peerings
                if self._node_peerings is None
                else tuple(self._node_peerings[k] for k in sorted(self._node_peerings))
            ),
            pools=(
                base.pools
                if self._pools is None
                else tuple(self._pools[k] for k in sorted(self._pools))
            ),
            invalid=invalid,
            service_facts=facts,
            previous_token=base.token,
            changed_services=None if self.ads_changed else frozenset(changed),
            interned=base.interned,
        )


class _FactsComputer:
    """Computes `ServiceFacts` against one set of advertisements."""

    def __init__(
        self, advertisements: tuple[BGPAdvertisement, ...], interned: dict[object, object]
    ) -> None:
        self.interned = interned
        # (name, namespaces or None, selector or None, aggregates to a shorter prefix)
        self.ads = [
            (
                a.name,
                a.namespaces or None,
                None if a.service_selector.is_empty else a.service_selector,
                a.aggregation_length_ipv4 < 32 or a.aggregation_length_ipv6 < 128,
            )
            for a in advertisements
        ]
        self.by_name = {a.name: a for a in advertisements}

    def intern(self, value: _T) -> _T:
        return self.interned.setdefault(value, value)  # type: ignore[return-value]

    def facts(self, service: Service, slices: tuple[EndpointSlice, ...]) -> ServiceFacts:
        ref = service.ref
        namespace = ref.namespace
        labels = service.labels
        selecting = [
            ad
            for ad in self.ads
            if (ad[1] is None or namespace in ad[1]) and (ad[2] is None or ad[2].matches(labels))
        ]
        ad_names = self.intern(tuple([ad[0] for ad in selecting]))
        lb = _load_balancer_facts(service)
        external = (
            KindFacts(service.external_ips, service.external_traffic_local, None)
            if service.external_ips
            else _NO_ADDRESSES
        )
        cluster = _cluster_facts(service)
        kinds = (lb, external, cluster)
        local = (
            (lb.traffic_local and bool(lb.addresses))
            or (external.traffic_local and bool(external.addresses))
            or (cluster.traffic_local and bool(cluster.addresses))
        )
        ready: Collection[str] = ()
        terminating: Collection[str] = ()
        if local:
            if len(slices) == 1:
                ready = _nodes_of(slices[0].ready_nodes)
                terminating = _nodes_of(slices[0].terminating_nodes)
            else:
                ready = _nodes_of(tuple(n for s in slices for n in s.ready_nodes))
                terminating = _nodes_of(tuple(n for s in slices for n in s.terminating_nodes))
        aggregated: Mapping[tuple[str, int], str] = _NO_AGGREGATES
        if any(ad[3] for ad in selecting):
            aggregated = self.aggregated(kinds, [self.by_name[ad[0]] for ad in selecting if ad[3]])
        opted_out_flag = service.annotations.get(ANNOTATION_ADVERTISE) == "false"
        shape: Shape = self.intern(
            (ad_names, opted_out_flag, _kind_shape(lb), _kind_shape(external), _kind_shape(cluster))
        )
        opted_out = not_selected = None
        no_local: tuple[Reason | None, Reason | None, Reason | None] = _NO_REASONS
        if opted_out_flag:
            opted_out = Reason(ReasonCode.OptedOut, ref, f"annotation {ANNOTATION_ADVERTISE}")
        else:
            if not ad_names:
                not_selected = Reason(ReasonCode.ServiceNotSelected, ref, NOT_SELECTED_DETAIL)
            if local:
                no_local = (
                    _no_local(lb, ref, 0),
                    _no_local(external, ref, 1),
                    _no_local(cluster, ref, 2),
                )
        return ServiceFacts(
            service,
            slices,
            ad_names,
            kinds,
            ready,
            terminating,
            aggregated,
            shape,
            opted_out,
            not_selected,
            no_local,
        )

    @staticmethod
    def aggregated(
        kinds: tuple[KindFacts, ...], aggregating: list[BGPAdvertisement]
    ) -> dict[tuple[str, int], str]:
        """The prefixes of the Service's addresses cut to the aggregating advertisements'
        lengths (host lengths are the address itself plus /32 or /128: not kept)."""
        out: dict[tuple[str, int], str] = {}
        for kind, facts in zip(KINDS, kinds, strict=True):
            for ad in aggregating:
                if kind not in ad.service_addresses:
                    continue
                for address in facts.addresses:
                    if ":" in address:
                        length = ad.aggregation_length_ipv6
                        if length < 128 and (address, length) not in out:
                            net = ipaddress.ip_network(f"{address}/{length}", strict=False)
                            out[(address, length)] = str(net)
                    else:
                        length = ad.aggregation_length_ipv4
                        if length < 32:
                            out[(address, length)] = _ipv4_network(address, length)
        return out


def _ipv4_network(address: str, length: int) -> str:
    """`str(ipaddress.ip_network(f"{address}/{length}", strict=False))` for a canonical
    dotted quad, without `ipaddress`."""
    a, b, c, d = address.split(".")
    value = (int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)) & (0xFFFFFFFF << (32 - length))
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}/{length}"


def _kind_shape(kind: KindFacts) -> KindShape:
    addresses = kind.addresses
    if len(addresses) == 1:
        families: tuple[bool, ...] = _IPV6 if ":" in addresses[0] else _IPV4
    else:
        families = tuple([":" in a for a in addresses])
    return (kind.unavailable is not None, kind.traffic_local, families)


def _no_local(kind: KindFacts, ref: ObjectRef, k: int) -> Reason | None:
    if kind.traffic_local and kind.addresses:
        return Reason(ReasonCode.NoLocalReadyEndpoint, ref, NO_LOCAL_DETAIL[KINDS[k]])
    return None


_T = TypeVar("_T")
_NO_AGGREGATES: Final[Mapping[tuple[str, int], str]] = {}
_NO_ADDRESSES: Final = KindFacts((), False, None)
_NO_REASONS: Final = (None, None, None)
_IPV4: Final = (False,)
_IPV6: Final = (True,)


def _nodes_of(names: tuple[str, ...]) -> Collection[str]:
    """Node names to test membership in: a tuple when few, a frozenset when many."""
    if len(names) >= _SET_FROM:
        return frozenset(names)
    return names


def _load_balancer_facts(service: Service) -> KindFacts:
    if service.type != "LoadBalancer":
        return _NO_ADDRESSES
    lb_class = service.load_balancer_class
    if lb_class is not None and lb_class != LOAD_BALANCER_CLASS:
        detail = f"loadBalancerClass {lb_class!r} is not {LOAD_BALANCER_CLASS!r}"
        why = Reason(ReasonCode.ForeignLoadBalancerClass, service.ref, detail)
        return KindFacts((), False, why)
    if not service.load_balancer_ips:
        detail = "status.loadBalancer.ingress has no IP yet"
        return KindFacts((), False, Reason(ReasonCode.NoAddressAssigned, service.ref, detail))
    return KindFacts(service.load_balancer_ips, service.external_traffic_local, None)


def _cluster_facts(service: Service) -> KindFacts:
    if service.headless:
        why = Reason(ReasonCode.HeadlessService, service.ref, "clusterIP is None")
        return KindFacts((), False, why)
    return KindFacts(service.cluster_ips, service.internal_traffic_local, None)
