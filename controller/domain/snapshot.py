"""An immutable, pre-indexed view of the cluster for the planner.

`Snapshot.build(raws)` parses raw objects (invalid ones become `InvalidObject` reasons);
`snapshot.apply(upserts=..., deletes=...)` returns a new snapshot that shares every unchanged view
with the old one, so a planner that caches by identity recomputes only what changed. Indexes:
services by (namespace, name) in sorted order, EndpointSlices grouped by their Service, Secrets by
(namespace, name), BGPPeers and BGPAdvertisements sorted by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.domain.objects import (
    BGPAdvertisement,
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    nodes: Mapping[str, Node] = field(default_factory=dict)
    services: Mapping[Key, Service] = field(default_factory=dict)  # in sorted key order
    endpoint_slices: Mapping[Key, EndpointSlice] = field(default_factory=dict)
    slices_by_service: Mapping[Key, tuple[EndpointSlice, ...]] = field(default_factory=dict)
    secrets: Mapping[Key, Secret] = field(default_factory=dict)
    peers: tuple[BGPPeer, ...] = ()
    advertisements: tuple[BGPAdvertisement, ...] = ()
    pools: tuple[LoadBalancerIPPool, ...] = ()
    invalid: Mapping[ObjectRef, Reason] = field(default_factory=dict)  # in sorted ref order
    # Names of the BGPAdvertisements (sorted) whose namespaces and serviceSelector select each
    # Service: node-independent, so kept here rather than recomputed by every node's plan.
    ads_for_service: Mapping[Key, tuple[str, ...]] = field(default_factory=dict)
    # Change tracking for incremental planners: this snapshot's token, the token of the one it
    # was derived from, and the Services whose view, slices or selection changed in between
    # (None: unknown, look at everything).
    token: object = field(default_factory=object, compare=False)
    previous_token: object = field(default=None, compare=False)
    changed_services: frozenset[Key] | None = field(default=None, compare=False)

    @classmethod
    def build(cls, raws: Iterable[Mapping[str, object]]) -> Snapshot:
        return cls().apply(upserts=raws)

    def apply(
        self,
        *,
        upserts: Iterable[Mapping[str, object]] = (),
        deletes: Iterable[ObjectRef] = (),
    ) -> Snapshot:
        """A new snapshot with raw objects added or replaced and objects removed by reference.
        A raw object that does not parse replaces any previous view of it with a reason."""
        b = _Builder(self)
        for ref in deletes:
            b.delete(ref)
        for raw in upserts:
            try:
                view = parse_object(raw)
            except InvalidObjectError as err:
                b.delete(err.ref)
                b.invalid[err.ref] = Reason(ReasonCode.InvalidObject, err.ref, err.detail)
            else:
                b.invalid.pop(view.ref, None)
                if isinstance(view, EndpointSlice):
                    b.delete(view.ref)  # its Service may have changed
                b.put(view)  # replaces in place, so Services keep their sorted order
        return b.finish()

    def objects(self) -> Iterable[KubeObject]:
        yield from self.nodes.values()
        yield from self.services.values()
        yield from self.endpoint_slices.values()
        yield from self.secrets.values()
        yield from self.peers
        yield from self.advertisements
        yield from self.pools


class _Builder:
    """Copy-on-write: each index is copied at most once per `apply`."""

    def __init__(self, base: Snapshot) -> None:
        self.base = base
        self.nodes = dict(base.nodes)
        self.services = dict(base.services)
        self.services_added = False
        self.services_touched: set[Key] = set()
        self.ads_changed = False
        self.endpoint_slices = dict(base.endpoint_slices)
        self.slices_by_service = dict(base.slices_by_service)
        self.slice_groups: dict[Key, dict[str, EndpointSlice]] = {}
        self.secrets = dict(base.secrets)
        self.peers = {p.name: p for p in base.peers}
        self.advertisements = {a.name: a for a in base.advertisements}
        self.pools = {p.ref.name: p for p in base.pools}
        self.invalid = dict(base.invalid)

    def slice_group(self, service: Key) -> dict[str, EndpointSlice]:
        group = self.slice_groups.get(service)
        if group is None:
            old = self.slices_by_service.get(service, ())
            group = self.slice_groups[service] = {s.ref.name: s for s in old}
        return group

    def delete(self, ref: ObjectRef) -> None:
        self.invalid.pop(ref, None)
        key = (ref.namespace, ref.name)
        match ref.kind:
            case "Node":
                self.nodes.pop(ref.name, None)
            case "Service":
                self.services.pop(key, None)
                self.services_touched.add(key)
            case "EndpointSlice":
                old = self.endpoint_slices.pop(key, None)
                if old is not None:
                    self.slice_group(old.service_key).pop(old.ref.name, None)
            case "Secret":
                self.secrets.pop(key, None)
            case "BGPPeer":
                self.peers.pop(ref.name, None)
            case "BGPAdvertisement":
                if self.advertisements.pop(ref.name, None) is not None:
                    self.ads_changed = True
            case "LoadBalancerIPPool":
                self.pools.pop(ref.name, None)
            case _:
                pass

    def put(self, view: KubeObject) -> None:
        key = (view.ref.namespace, view.ref.name)
        match view:
            case Node():
                self.nodes[view.ref.name] = view
            case Service():
                if key not in self.services:
                    self.services_added = True
                self.services[key] = view
                self.services_touched.add(key)
            case EndpointSlice():
                self.endpoint_slices[key] = view
                self.slice_group(view.service_key)[view.ref.name] = view
            case Secret():
                self.secrets[key] = view
            case BGPPeer():
                self.peers[view.ref.name] = view
            case BGPAdvertisement():
                self.advertisements[view.ref.name] = view
                self.ads_changed = True
            case LoadBalancerIPPool():
                self.pools[view.ref.name] = view

    def finish(self) -> Snapshot:
        services = self.services
        if self.services_added:
            services = dict(sorted(services.items()))
        by_service = self.slices_by_service
        for k, group in self.slice_groups.items():
            if group:
                by_service[k] = tuple(group[name] for name in sorted(group))
            else:
                by_service.pop(k, None)
        advertisements = tuple(self.advertisements[k] for k in sorted(self.advertisements))
        if self.ads_changed:
            ads_for_service: dict[Key, tuple[str, ...]] = {}
            touched: Iterable[Key] = services
        else:
            ads_for_service = dict(self.base.ads_for_service)
            touched = self.services_touched
        for key in touched:
            service = services.get(key)
            if service is None:
                ads_for_service.pop(key, None)
                continue
            ads_for_service[key] = tuple(
                a.name for a in advertisements if a.selects_service(service)
            )
        return Snapshot(
            nodes=self.nodes,
            services=services,
            endpoint_slices=self.endpoint_slices,
            slices_by_service=by_service,
            secrets=self.secrets,
            peers=tuple(self.peers[k] for k in sorted(self.peers)),
            advertisements=advertisements,
            pools=tuple(self.pools[k] for k in sorted(self.pools)),
            invalid=dict(sorted(self.invalid.items())),
            ads_for_service=ads_for_service,
            previous_token=self.base.token,
            changed_services=None
            if self.ads_changed
            else frozenset(self.services_touched | self.slice_groups.keys()),
        )
