"""Typed, frozen views of the Kubernetes objects the planner reads, parsed from raw dicts.

`parse_object(raw)` returns a view or raises `InvalidObjectError` naming the object and the
field; the planner turns that into an `InvalidObject` reason, it never crashes a plan. Only the
fields the planner uses are kept. Addresses are stored in canonical `ipaddress` spelling.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from controller.domain.reasons import ObjectRef
from speaker.api.schema import (
    BFD_INTERVALS,
    BFD_MULTIPLIERS,
    DEFAULT_BFD_INTERVAL,
    DEFAULT_BFD_MULTIPLIER,
    FAMILIES,
    WELL_KNOWN_COMMUNITIES,
    Bfd,
    family_of,
)

GROUP: Final = "kubgp.io"
CRD_API_VERSION: Final = "kubgp.io/v1alpha1"

ANNOTATION_ASN: Final = "kubgp.io/asn"
ANNOTATION_ROUTER_ID: Final = "kubgp.io/router-id"
ANNOTATION_ADVERTISE: Final = "kubgp.io/advertise"
ANNOTATION_LB_IPS: Final = "kubgp.io/load-balancer-ips"
LOAD_BALANCER_CLASS: Final = "kubgp.io/bgp"
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"

ADDRESS_LOAD_BALANCER: Final = "LoadBalancerIP"
ADDRESS_EXTERNAL: Final = "ExternalIP"
ADDRESS_CLUSTER: Final = "ClusterIP"
SERVICE_ADDRESS_KINDS: Final = (ADDRESS_LOAD_BALANCER, ADDRESS_EXTERNAL, ADDRESS_CLUSTER)

UINT32_MAX: Final = 0xFFFFFFFF


class InvalidObjectError(ValueError):
    def __init__(self, ref: ObjectRef, message: str) -> None:
        super().__init__(f"{ref}: {message}")
        self.ref = ref
        self.detail = message


# --- label selectors ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """metav1.LabelSelector. The empty selector selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    requirements: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(r.matches(labels) for r in self.requirements)


EVERYTHING: Final = LabelSelector()


class _Reader:
    """Field access with errors that name the object and the field path."""

    def __init__(self, ref: ObjectRef) -> None:
        self.ref = ref

    def fail(self, path: str, message: str) -> InvalidObjectError:
        return InvalidObjectError(self.ref, f"{path}: {message}")

    def mapping(self, value: object, path: str) -> Mapping[str, object]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, "must be a mapping")
        return value

    def seq(self, value: object, path: str) -> Sequence[object]:
        if value is None:
            return ()
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise self.fail(path, "must be a list")
        return value

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, "must be a non-empty string")
        return value

    def opt_string(self, value: object, path: str) -> str | None:
        return None if value is None else self.string(value, path)

    def strings(self, value: object, path: str) -> tuple[str, ...]:
        return tuple(self.string(v, f"{path}[{i}]") for i, v in enumerate(self.seq(value, path)))

    def str_map(self, value: object, path: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.mapping(value, path).items():
            if not isinstance(v, str):
                raise self.fail(f"{path}.{k}", "must be a string")
            out[k] = v
        return out

    def integer(
        self, value: object, path: str, lo: int, hi: int, default: int | None = None
    ) -> int:
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, "must be an integer")
        if not lo <= value <= hi:
            raise self.fail(path, f"must be between {lo} and {hi}")
        return value

    def opt_integer(self, value: object, path: str, lo: int, hi: int) -> int | None:
        return None if value is None else self.integer(value, path, lo, hi)

    def boolean(self, value: object, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, "must be true or false")
        return value

    def ip(self, value: object, path: str) -> str:
        text = self.string(value, path)
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise self.fail(path, f"{text!r} is not an IP address") from None

    def cidr(self, value: object, path: str) -> str:
        text = self.string(value, path)
        if "/" not in text:
            raise self.fail(path, f"{text!r} is not a CIDR (address/length)")
        try:
            return str(ipaddress.ip_network(text, strict=True))
        except ValueError:
            raise self.fail(path, f"{text!r} is not a CIDR without host bits") from None

    def selector(self, value: object, path: str) -> LabelSelector:
        raw = self.mapping(value, path)
        labels = self.str_map(raw.get("matchLabels"), f"{path}.matchLabels")
        reqs: list[Requirement] = []
        for i, expr in enumerate(self.seq(raw.get("matchExpressions"), f"{path}.matchExpressions")):
            epath = f"{path}.matchExpressions[{i}]"
            e = self.mapping(expr, epath)
            op = self.string(e.get("operator"), f"{epath}.operator")
            values = frozenset(self.strings(e.get("values"), f"{epath}.values"))
            if op in ("In", "NotIn") and not values:
                raise self.fail(f"{epath}.values", f"must not be empty for {op}")
            if op in ("Exists", "DoesNotExist") and values:
                raise self.fail(f"{epath}.values", f"must be empty for {op}")
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise self.fail(f"{epath}.operator", f"unknown operator {op!r}")
            reqs.append(Requirement(self.string(e.get("key"), f"{epath}.key"), op, values))
        return LabelSelector(tuple(sorted(labels.items())), tuple(reqs))


def _meta(raw: Mapping[str, object], kind: str, namespaced: bool) -> tuple[ObjectRef, _Reader]:
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise InvalidObjectError(ObjectRef(kind, "", "?"), "metadata.name: missing")
    ns = ""
    if namespaced:
        ns = namespace if isinstance(namespace, str) and namespace else "default"
    ref = ObjectRef(kind, ns, name)
    return ref, _Reader(ref)


# --- core objects -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    ref: ObjectRef
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    pod_cidrs: tuple[str, ...]
    internal_ips: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.ref.name


def parse_node(raw: Mapping[str, object]) -> Node:
    ref, r = _meta(raw, "Node", namespaced=False)
    meta = r.mapping(raw.get("metadata"), "metadata")
    spec = r.mapping(raw.get("spec"), "spec")
    status = r.mapping(raw.get("status"), "status")
    cidrs = r.strings(spec.get("podCIDRs"), "spec.podCIDRs")
    if not cidrs and spec.get("podCIDR") is not None:
        cidrs = (r.string(spec.get("podCIDR"), "spec.podCIDR"),)
    pod_cidrs = tuple(r.cidr(c, f"spec.podCIDRs[{i}]") for i, c in enumerate(cidrs))
    internal: list[str] = []
    for i, a in enumerate(r.seq(status.get("addresses"), "status.addresses")):
        addr = r.mapping(a, f"status.addresses[{i}]")
        if addr.get("type") == "InternalIP":
            internal.append(r.ip(addr.get("address"), f"status.addresses[{i}].address"))
    return Node(
        ref=ref,
        labels=r.str_map(meta.get("labels"), "metadata.labels"),
        annotations=r.str_map(meta.get("annotations"), "metadata.annotations"),
        pod_cidrs=pod_cidrs,
        internal_ips=tuple(internal),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    ref: ObjectRef
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    type: str
    cluster_ips: tuple[str, ...]  # empty when headless
    headless: bool
    external_ips: tuple[str, ...]
    load_balancer_ips: tuple[str, ...]  # status.loadBalancer.ingress[].ip: what IPAM assigned
    load_balancer_class: str | None
    external_traffic_local: bool
    internal_traffic_local: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.ref.namespace, self.ref.name)


def parse_service(raw: Mapping[str, object]) -> Service:
    ref, r = _meta(raw, "Service", namespaced=True)
    meta = r.mapping(raw.get("metadata"), "metadata")
    spec = r.mapping(raw.get("spec"), "spec")
    status = r.mapping(raw.get("status"), "status")
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise r.fail("spec.type", f"unknown type {svc_type!r}")
    raw_cluster = r.strings(spec.get("clusterIPs"), "spec.clusterIPs")
    if not raw_cluster and spec.get("clusterIP") is not None:
        raw_cluster = (r.string(spec.get("clusterIP"), "spec.clusterIP"),)
    headless = "None" in raw_cluster
    cluster_ips = (
        ()
        if headless
        else tuple(r.ip(ip, f"spec.clusterIPs[{i}]") for i, ip in enumerate(raw_cluster))
    )
    external = tuple(
        r.ip(ip, f"spec.externalIPs[{i}]")
        for i, ip in enumerate(r.seq(spec.get("externalIPs"), "spec.externalIPs"))
    )
    lb = r.mapping(status.get("loadBalancer"), "status.loadBalancer")
    lb_ips: list[str] = []
    for i, ing in enumerate(r.seq(lb.get("ingress"), "status.loadBalancer.ingress")):
        ingress = r.mapping(ing, f"status.loadBalancer.ingress[{i}]")
        if ingress.get("ip") is not None:
            lb_ips.append(r.ip(ingress.get("ip"), f"status.loadBalancer.ingress[{i}].ip"))
    etp = spec.get("externalTrafficPolicy") or "Cluster"
    itp = spec.get("internalTrafficPolicy") or "Cluster"
    for path, value in (("externalTrafficPolicy", etp), ("internalTrafficPolicy", itp)):
        if value not in ("Cluster", "Local"):
            raise r.fail(f"spec.{path}", f"must be Cluster or Local, not {value!r}")
    return Service(
        ref=ref,
        labels=r.str_map(meta.get("labels"), "metadata.labels"),
        annotations=r.str_map(meta.get("annotations"), "metadata.annotations"),
        type=str(svc_type),
        cluster_ips=cluster_ips,
        headless=headless,
        external_ips=external,
        load_balancer_ips=tuple(lb_ips),
        load_balancer_class=r.opt_string(spec.get("loadBalancerClass"), "spec.loadBalancerClass"),
        external_traffic_local=etp == "Local",
        internal_traffic_local=itp == "Local",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    node_name: str | None
    ready: bool
    serving: bool
    terminating: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSlice:
    ref: ObjectRef
    service_name: str
    endpoints: tuple[Endpoint, ...]

    @property
    def service_key(self) -> tuple[str, str]:
        return (self.ref.namespace, self.service_name)


def parse_endpoint_slice(raw: Mapping[str, object]) -> EndpointSlice:
    ref, r = _meta(raw, "EndpointSlice", namespaced=True)
    meta = r.mapping(raw.get("metadata"), "metadata")
    labels = r.str_map(meta.get("labels"), "metadata.labels")
    if SERVICE_NAME_LABEL not in labels:
        raise r.fail(f"metadata.labels.{SERVICE_NAME_LABEL}", "missing")
    endpoints: list[Endpoint] = []
    for i, e in enumerate(r.seq(raw.get("endpoints"), "endpoints")):
        ep = r.mapping(e, f"endpoints[{i}]")
        cond = r.mapping(ep.get("conditions"), f"endpoints[{i}].conditions")
        # discovery/v1: nil ready and nil serving mean true; nil terminating means false.
        ready = r.boolean(cond.get("ready"), f"endpoints[{i}].conditions.ready", True)
        serving = r.boolean(cond.get("serving"), f"endpoints[{i}].conditions.serving", ready)
        terminating = r.boolean(
            cond.get("terminating"), f"endpoints[{i}].conditions.terminating", False
        )
        node = ep.get("nodeName")
        endpoints.append(
            Endpoint(
                node_name=r.opt_string(node, f"endpoints[{i}].nodeName"),
                ready=ready,
                serving=serving,
                terminating=terminating,
            )
        )
    return EndpointSlice(
        ref=ref, service_name=labels[SERVICE_NAME_LABEL], endpoints=tuple(endpoints)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Secret:
    ref: ObjectRef
    data: Mapping[str, str]

    @property
    def key(self) -> tuple[str, str]:
        return (self.ref.namespace, self.ref.name)


def parse_secret(raw: Mapping[str, object]) -> Secret:
    ref, r = _meta(raw, "Secret", namespaced=True)
    data: dict[str, str] = {}
    for k, v in r.str_map(raw.get("data"), "data").items():
        try:
            data[k] = base64.b64decode(v, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise r.fail(f"data.{k}", "is not base64 of UTF-8 text") from None
    data.update(r.str_map(raw.get("stringData"), "stringData"))  # as kubectl apply would
    return Secret(ref=ref, data=data)


# --- kubgp.io CRDs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretKeyRef:
    namespace: str
    name: str
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BGPPeer:
    ref: ObjectRef
    labels: Mapping[str, str]
    peer_address: str
    peer_asn: int
    local_asn: int | None
    port: int
    node_selector: LabelSelector
    hold_time: int
    keepalive_time: int
    connect_retry_time: int
    password_secret_ref: SecretKeyRef | None
    ebgp_multihop: int
    ttl_security: bool
    passive: bool
    source_address: str | None
    graceful_restart: bool
    restart_time: int
    families: tuple[str, ...]
    max_prefixes: int
    bfd: Bfd | None = None

    @property
    def name(self) -> str:
        return self.ref.name


def parse_bgp_peer(raw: Mapping[str, object]) -> BGPPeer:
    ref, r = _meta(raw, "BGPPeer", namespaced=False)
    meta = r.mapping(raw.get("metadata"), "metadata")
    spec = r.mapping(raw.get("spec"), "spec")
    address = r.ip(spec.get("peerAddress"), "spec.peerAddress")
    hold = r.integer(spec.get("holdTimeSeconds"), "spec.holdTimeSeconds", 0, 65535, 90)
    if 0 < hold < 3:
        raise r.fail("spec.holdTimeSeconds", "must be 0 or at least 3")
    keepalive = r.integer(
        spec.get("keepaliveTimeSeconds"), "spec.keepaliveTimeSeconds", 0, 65535, hold // 3
    )
    if (hold == 0 and keepalive != 0) or (hold > 0 and not 0 < keepalive < hold):
        raise r.fail("spec.keepaliveTimeSeconds", "must be below holdTimeSeconds (0 when it is 0)")
    secret_ref: SecretKeyRef | None = None
    if spec.get("passwordSecretRef") is not None:
        s = r.mapping(spec.get("passwordSecretRef"), "spec.passwordSecretRef")
        secret_ref = SecretKeyRef(
            namespace=r.string(s.get("namespace"), "spec.passwordSecretRef.namespace"),
            name=r.string(s.get("name"), "spec.passwordSecretRef.name"),
            key=r.string(s.get("key"), "spec.passwordSecretRef.key"),
        )
    gr = r.mapping(spec.get("gracefulRestart"), "spec.gracefulRestart")
    families = r.strings(spec.get("families"), "spec.families") or (family_of(address),)
    for i, fam in enumerate(families):
        if fam not in FAMILIES:
            raise r.fail(f"spec.families[{i}]", f"must be one of {sorted(FAMILIES)}")
    bfd: Bfd | None = None
    if spec.get("bfd") is not None:
        b = r.mapping(spec.get("bfd"), "spec.bfd")
        lo, hi = BFD_INTERVALS
        bfd = Bfd(
            min_tx=r.integer(b.get("minTxMilliseconds"), "spec.bfd.minTxMilliseconds", lo, hi,
                             DEFAULT_BFD_INTERVAL),
            min_rx=r.integer(b.get("minRxMilliseconds"), "spec.bfd.minRxMilliseconds", lo, hi,
                             DEFAULT_BFD_INTERVAL),
            multiplier=r.integer(b.get("multiplier"), "spec.bfd.multiplier", *BFD_MULTIPLIERS,
                                 DEFAULT_BFD_MULTIPLIER),
        )  # fmt: skip
    source = spec.get("sourceAddress")
    if source is not None and family_of(r.ip(source, "spec.sourceAddress")) != family_of(address):
        raise r.fail("spec.sourceAddress", "must be of the same address family as peerAddress")
    return BGPPeer(
        ref=ref,
        labels=r.str_map(meta.get("labels"), "metadata.labels"),
        peer_address=address,
        peer_asn=r.integer(spec.get("peerASN"), "spec.peerASN", 1, UINT32_MAX),
        local_asn=r.opt_integer(spec.get("localASN"), "spec.localASN", 1, UINT32_MAX),
        port=r.integer(spec.get("port"), "spec.port", 1, 65535, 179),
        node_selector=r.selector(spec.get("nodeSelector"), "spec.nodeSelector"),
        hold_time=hold,
        keepalive_time=keepalive,
        connect_retry_time=r.integer(
            spec.get("connectRetryTimeSeconds"), "spec.connectRetryTimeSeconds", 1, 65535, 5
        ),
        password_secret_ref=secret_ref,
        ebgp_multihop=r.integer(spec.get("ebgpMultihop"), "spec.ebgpMultihop", 1, 255, 1),
        ttl_security=r.boolean(spec.get("ttlSecurity"), "spec.ttlSecurity", False),
        passive=r.boolean(spec.get("passive"), "spec.passive", False),
        source_address=None if source is None else r.ip(source, "spec.sourceAddress"),
        graceful_restart=r.boolean(gr.get("enabled"), "spec.gracefulRestart.enabled", False),
        restart_time=r.integer(
            gr.get("restartTimeSeconds"), "spec.gracefulRestart.restartTimeSeconds", 0, 4095, 120
        ),
        families=tuple(sorted(set(families))),
        max_prefixes=r.integer(spec.get("maxPrefixes"), "spec.maxPrefixes", 0, UINT32_MAX, 0),
        bfd=bfd,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BGPAdvertisement:
    ref: ObjectRef
    pod_cidrs: bool
    service_addresses: frozenset[str]
    service_selector: LabelSelector
    namespaces: frozenset[str]  # empty = every namespace
    node_selector: LabelSelector
    peer_selector: LabelSelector
    aggregation_length_ipv4: int
    aggregation_length_ipv6: int
    communities: tuple[str, ...]
    large_communities: tuple[str, ...]
    local_preference: int | None
    med: int | None

    @property
    def name(self) -> str:
        return self.ref.name

    def selects_service(self, service: Service) -> bool:
        if self.namespaces and service.ref.namespace not in self.namespaces:
            return False
        return self.service_selector.matches(service.labels)


def _community(r: _Reader, value: object, path: str) -> str:
    text = r.string(value, path)
    parts = text.split(":")
    if text in WELL_KNOWN_COMMUNITIES or (
        len(parts) == 2 and all(p.isdigit() and int(p) <= 0xFFFF for p in parts)
    ):
        return text if text in WELL_KNOWN_COMMUNITIES else ":".join(str(int(p)) for p in parts)
    raise r.fail(path, f"{text!r} is not 'a:b' (16-bit each) or a well-known community")


def _large_community(r: _Reader, value: object, path: str) -> str:
    text = r.string(value, path)
    parts = text.split(":")
    if len(parts) == 3 and all(p.isdigit() and int(p) <= UINT32_MAX for p in parts):
        return ":".join(str(int(p)) for p in parts)
    raise r.fail(path, f"{text!r} is not 'a:b:c' (32-bit each)")


def _each(
    r: _Reader, value: object, path: str, item: Callable[[_Reader, object, str], str]
) -> tuple[str, ...]:
    return tuple(item(r, v, f"{path}[{i}]") for i, v in enumerate(r.seq(value, path)))


def parse_bgp_advertisement(raw: Mapping[str, object]) -> BGPAdvertisement:
    ref, r = _meta(raw, "BGPAdvertisement", namespaced=False)
    spec = r.mapping(raw.get("spec"), "spec")
    kinds = r.strings(spec.get("serviceAddresses"), "spec.serviceAddresses")
    for i, kind in enumerate(kinds):
        if kind not in SERVICE_ADDRESS_KINDS:
            raise r.fail(f"spec.serviceAddresses[{i}]", f"must be one of {SERVICE_ADDRESS_KINDS}")
    return BGPAdvertisement(
        ref=ref,
        pod_cidrs=r.boolean(spec.get("podCIDRs"), "spec.podCIDRs", False),
        service_addresses=frozenset(kinds),
        service_selector=r.selector(spec.get("serviceSelector"), "spec.serviceSelector"),
        namespaces=frozenset(r.strings(spec.get("namespaces"), "spec.namespaces")),
        node_selector=r.selector(spec.get("nodeSelector"), "spec.nodeSelector"),
        peer_selector=r.selector(spec.get("peerSelector"), "spec.peerSelector"),
        aggregation_length_ipv4=r.integer(
            spec.get("aggregationLengthIPv4"), "spec.aggregationLengthIPv4", 0, 32, 32
        ),
        aggregation_length_ipv6=r.integer(
            spec.get("aggregationLengthIPv6"), "spec.aggregationLengthIPv6", 0, 128, 128
        ),
        communities=tuple(
            sorted(set(_each(r, spec.get("communities"), "spec.communities", _community)))
        ),
        large_communities=tuple(
            sorted(
                set(
                    _each(
                        r, spec.get("largeCommunities"), "spec.largeCommunities", _large_community
                    )
                )
            )
        ),
        local_preference=r.opt_integer(
            spec.get("localPreference"), "spec.localPreference", 0, UINT32_MAX
        ),
        med=r.opt_integer(spec.get("med"), "spec.med", 0, UINT32_MAX),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBalancerIPPool:
    """Read by the cluster controller's IPAM, not by the planner; parsed here so the dry run
    reports an invalid pool."""

    ref: ObjectRef
    cidrs: tuple[str, ...]
    ranges: tuple[tuple[str, str], ...]  # (first, last), inclusive
    service_selector: LabelSelector
    namespaces: frozenset[str]
    auto_assign: bool
    avoid_buggy_ips: bool


def parse_load_balancer_ip_pool(raw: Mapping[str, object]) -> LoadBalancerIPPool:
    ref, r = _meta(raw, "LoadBalancerIPPool", namespaced=False)
    spec = r.mapping(raw.get("spec"), "spec")
    cidrs = tuple(
        r.cidr(c, f"spec.cidrs[{i}]") for i, c in enumerate(r.seq(spec.get("cidrs"), "spec.cidrs"))
    )
    ranges: list[tuple[str, str]] = []
    for i, item in enumerate(r.seq(spec.get("ranges"), "spec.ranges")):
        rng = r.mapping(item, f"spec.ranges[{i}]")
        start = r.ip(rng.get("start"), f"spec.ranges[{i}].start")
        end = r.ip(rng.get("end"), f"spec.ranges[{i}].end")
        if family_of(start) != family_of(end):
            raise r.fail(f"spec.ranges[{i}]", "start and end must be of one address family")
        if int(ipaddress.ip_address(start)) > int(ipaddress.ip_address(end)):
            raise r.fail(f"spec.ranges[{i}]", "start must not be after end")
        ranges.append((start, end))
    if not cidrs and not ranges:
        raise r.fail("spec", "a pool needs at least one CIDR or range")
    return LoadBalancerIPPool(
        ref=ref,
        cidrs=cidrs,
        ranges=tuple(ranges),
        service_selector=r.selector(spec.get("serviceSelector"), "spec.serviceSelector"),
        namespaces=frozenset(r.strings(spec.get("namespaces"), "spec.namespaces")),
        auto_assign=r.boolean(spec.get("autoAssign"), "spec.autoAssign", True),
        avoid_buggy_ips=r.boolean(spec.get("avoidBuggyIPs"), "spec.avoidBuggyIPs", False),
    )


KubeObject = (
    Node | Service | EndpointSlice | Secret | BGPPeer | BGPAdvertisement | LoadBalancerIPPool
)

PARSERS: Final[Mapping[tuple[str, str], Callable[[Mapping[str, object]], KubeObject]]] = {
    ("v1", "Node"): parse_node,
    ("v1", "Service"): parse_service,
    ("v1", "Secret"): parse_secret,
    ("discovery.k8s.io/v1", "EndpointSlice"): parse_endpoint_slice,
    (CRD_API_VERSION, "BGPPeer"): parse_bgp_peer,
    (CRD_API_VERSION, "BGPAdvertisement"): parse_bgp_advertisement,
    (CRD_API_VERSION, "LoadBalancerIPPool"): parse_load_balancer_ip_pool,
}


def is_planner_kind(raw: Mapping[str, object]) -> bool:
    return (raw.get("apiVersion"), raw.get("kind")) in PARSERS


def parse_object(raw: Mapping[str, object]) -> KubeObject:
    """The view of one raw object of a kind the planner reads; `InvalidObjectError` otherwise."""
    api_version, kind = raw.get("apiVersion"), raw.get("kind")
    parser = PARSERS.get((str(api_version), str(kind)))
    if parser is None:
        name = ObjectRef(str(kind), "", "?")
        raise InvalidObjectError(name, f"{api_version}/{kind} is not a kind the planner reads")
    return parser(raw)
