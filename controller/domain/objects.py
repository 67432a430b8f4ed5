"""Typed, frozen views of the Kubernetes objects the planner reads, parsed from raw dicts.

`parse_object(raw)` returns a view or raises `InvalidObjectError` naming the object and the
field; the planner turns that into an `InvalidObject` reason, it never crashes a plan. Only the
fields the planner uses are kept (of the annotations, only `kubgp.io/` ones), in compact form:
an EndpointSlice keeps only which nodes have a ready or a serving-but-terminating endpoint.
Addresses are stored in canonical `ipaddress` spelling; namespaces, node names, label keys and
values are interned (`sys.intern`), so that 10,000 Services in 50 namespaces hold 50 namespace
strings, not 10,000.

Fields are read with speaker.api.fields (the desired state's and the control protocol's reader
too), the Kubernetes way: a null field is an absent one, and fields we do not read are not ours
to refuse. Parsing is the bulk of building a snapshot, so the hot fields take the common case
first (a canonical IPv4 address or network recognised by a regular expression instead of
`ipaddress`, conditions and names checked inline) and fall back to those readers, which name
the bad field, only when the common case does not hold: the messages are theirs.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from controller.domain.reasons import ObjectRef
from speaker.api.communities import community, large_community
from speaker.api.fields import (
    FieldError,
    any_string,
    boolean,
    integer,
    ip_address,
    mapping,
    one_of,
    prefix,
    sequence,
    string,
)
from speaker.api.schema import (
    BFD_INTERVALS,
    BFD_MULTIPLIERS,
    DEFAULT_BFD_INTERVAL,
    DEFAULT_BFD_MULTIPLIER,
    FAMILIES,
    FAMILY_IPV4,
    Bfd,
    ImportRule,
    family_of,
    parse_import_rules,
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


# --- reading fields: speaker.api.fields, a null field read as an absent one -------------------

T = TypeVar("T")

_EMPTY: Final[Mapping[str, object]] = {}
# A dotted quad as `ipaddress` prints it (no leading zeros, each part 0..255): already canonical.
_CANONICAL_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    r"(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
    re.ASCII,
).fullmatch
_CANONICAL_LENGTH = re.compile(r"[1-9]?[0-9]", re.ASCII).fullmatch
_intern = sys.intern


def _map(value: object, path: str) -> Mapping[str, object]:
    if type(value) is dict:
        return value
    return _EMPTY if value is None else mapping(value, path)


def _seq(value: object, path: str) -> Sequence[object]:
    if type(value) is list:
        return value
    return () if value is None else sequence(value, path)


def _strings(value: object, path: str) -> tuple[str, ...]:
    items = _seq(value, path)
    for i, v in enumerate(items):
        if type(v) is not str or not v:
            string(v, f"{path}[{i}]")  # raises, naming the item
    return tuple(items)  # type: ignore[arg-type]  # every item was checked above


def _str_map(value: object, path: str, keep: str | None = None) -> dict[str, str]:
    """The mapping's entries (every value a string), keys and values interned; with `keep`,
    only the keys starting with it."""
    out: dict[str, str] = {}
    for k, v in _map(value, path).items():
        text = v if type(v) is str else any_string(v, f"{path}.{k}")
        if keep is None or k.startswith(keep):
            out[_intern(k)] = _intern(text)
    return out


def _ip(value: object, path: str) -> str:
    """`ip_address`, a canonical dotted quad recognised without `ipaddress`."""
    if type(value) is str and _CANONICAL_IPV4(value) is not None:
        return value
    return ip_address(value, path)


def _ips(value: object, path: str) -> tuple[str, ...]:
    return tuple(_ip(v, f"{path}[{i}]") for i, v in enumerate(_seq(value, path)))


def _prefix(value: object, path: str) -> str:
    """`prefix`, a canonical IPv4 network (no host bits) recognised without `ipaddress`."""
    if type(value) is str:
        address, slash, length = value.partition("/")
        if slash and _CANONICAL_IPV4(address) and _CANONICAL_LENGTH(length):
            a, b, c, d = address.split(".")
            number = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
            bits = int(length)
            if bits <= 32 and not number & ((1 << (32 - bits)) - 1):
                return value
    return prefix(value, path)


def _int(value: object, path: str, lo: int, hi: int, default: int) -> int:
    return default if value is None else integer(value, path, lo, hi)


def _opt_int(value: object, path: str, lo: int, hi: int) -> int | None:
    return None if value is None else integer(value, path, lo, hi)


def _bool(value: object, path: str, default: bool) -> bool:
    return default if value is None else boolean(value, path)


def _opt_string(value: object, path: str) -> str | None:
    return None if value is None else string(value, path)


def _opt_ip(value: object, path: str) -> str | None:
    return None if value is None else _ip(value, path)


def _selector(value: object, path: str) -> LabelSelector:
    raw = _map(value, path)
    labels = _str_map(raw.get("matchLabels"), f"{path}.matchLabels")
    reqs: list[Requirement] = []
    for i, expr in enumerate(_seq(raw.get("matchExpressions"), f"{path}.matchExpressions")):
        epath = f"{path}.matchExpressions[{i}]"
        e = _map(expr, epath)
        op = string(e.get("operator"), f"{epath}.operator")
        values = frozenset(_strings(e.get("values"), f"{epath}.values"))
        if op in ("In", "NotIn") and not values:
            raise FieldError(f"{epath}.values", f"must not be empty for {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise FieldError(f"{epath}.values", f"must be empty for {op}")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise FieldError(f"{epath}.operator", f"unknown operator {op!r}")
        reqs.append(Requirement(string(e.get("key"), f"{epath}.key"), op, values))
    return LabelSelector(tuple(sorted(labels.items())), tuple(reqs))


def _ref(raw: Mapping[str, object], kind: str, namespaced: bool) -> ObjectRef:
    meta = raw.get("metadata")
    if type(meta) is not dict and not isinstance(meta, Mapping):
        meta = _EMPTY
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidObjectError(ObjectRef(kind, "", "?"), "metadata.name: missing")
    ns = ""
    if namespaced:
        namespace = meta.get("namespace")
        ns = _intern(namespace) if isinstance(namespace, str) and namespace else "default"
    return ObjectRef(kind, ns, name)


KUBGP_ANNOTATIONS: Final = f"{GROUP}/"  # the only annotations views keep


def _view(
    raw: Mapping[str, object],
    kind: str,
    read: Callable[[ObjectRef, Mapping[str, object]], T],
    *,
    namespaced: bool,
) -> T:
    """`read(ref, raw)`, its FieldError made an InvalidObjectError naming the object."""
    ref = _ref(raw, kind, namespaced)
    try:
        return read(ref, raw)
    except FieldError as err:
        raise InvalidObjectError(ref, str(err)) from None


# --- core objects -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    ref: ObjectRef
    labels: Mapping[str, str]
    annotations: Mapping[str, str]  # kubgp.io/ ones only
    pod_cidrs: tuple[str, ...]
    internal_ips: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.ref.name


def parse_node(raw: Mapping[str, object]) -> Node:
    return _view(raw, "Node", _read_node, namespaced=False)


def _read_node(ref: ObjectRef, raw: Mapping[str, object]) -> Node:
    meta = _map(raw.get("metadata"), "metadata")
    spec = _map(raw.get("spec"), "spec")
    status = _map(raw.get("status"), "status")
    cidrs = _strings(spec.get("podCIDRs"), "spec.podCIDRs")
    if not cidrs and spec.get("podCIDR") is not None:
        cidrs = (string(spec.get("podCIDR"), "spec.podCIDR"),)
    pod_cidrs = tuple(_prefix(c, f"spec.podCIDRs[{i}]") for i, c in enumerate(cidrs))
    internal: list[str] = []
    for i, a in enumerate(_seq(status.get("addresses"), "status.addresses")):
        addr = _map(a, f"status.addresses[{i}]")
        if addr.get("type") == "InternalIP":
            internal.append(_ip(addr.get("address"), f"status.addresses[{i}].address"))
    return Node(
        ref=ref,
        labels=_str_map(meta.get("labels"), "metadata.labels"),
        annotations=_str_map(
            meta.get("annotations"), "metadata.annotations", keep=KUBGP_ANNOTATIONS
        ),
        pod_cidrs=pod_cidrs,
        internal_ips=tuple(internal),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    ref: ObjectRef
    labels: Mapping[str, str]
    annotations: Mapping[str, str]  # kubgp.io/ ones only
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


_SERVICE_TYPES: Final = frozenset({"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"})
_TRAFFIC_POLICIES: Final = frozenset({"Cluster", "Local"})


def parse_service(raw: Mapping[str, object]) -> Service:
    return _view(raw, "Service", _read_service, namespaced=True)


def _read_service(ref: ObjectRef, raw: Mapping[str, object]) -> Service:
    meta = _map(raw.get("metadata"), "metadata")
    spec = _map(raw.get("spec"), "spec")
    status = _map(raw.get("status"), "status")
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type not in _SERVICE_TYPES:
        raise FieldError("spec.type", f"unknown type {svc_type!r}")
    raw_cluster = _strings(spec.get("clusterIPs"), "spec.clusterIPs")
    if not raw_cluster and spec.get("clusterIP") is not None:
        raw_cluster = (string(spec.get("clusterIP"), "spec.clusterIP"),)
    headless = "None" in raw_cluster
    cluster_ips = () if headless else _ips(raw_cluster, "spec.clusterIPs")
    external = _ips(spec.get("externalIPs"), "spec.externalIPs")
    lb = _map(status.get("loadBalancer"), "status.loadBalancer")
    lb_ips: list[str] = []
    for i, ing in enumerate(_seq(lb.get("ingress"), "status.loadBalancer.ingress")):
        ingress = _map(ing, f"status.loadBalancer.ingress[{i}]")
        if ingress.get("ip") is not None:
            lb_ips.append(_ip(ingress.get("ip"), f"status.loadBalancer.ingress[{i}].ip"))
    etp = spec.get("externalTrafficPolicy") or "Cluster"
    itp = spec.get("internalTrafficPolicy") or "Cluster"
    if etp not in _TRAFFIC_POLICIES or itp not in _TRAFFIC_POLICIES:
        for path, value in (("externalTrafficPolicy", etp), ("internalTrafficPolicy", itp)):
            if value not in _TRAFFIC_POLICIES:
                raise FieldError(f"spec.{path}", f"must be Cluster or Local, not {value!r}")
    return Service(
        ref=ref,
        labels=_str_map(meta.get("labels"), "metadata.labels"),
        annotations=_str_map(
            meta.get("annotations"), "metadata.annotations", keep=KUBGP_ANNOTATIONS
        ),
        type=str(svc_type),
        cluster_ips=cluster_ips,
        headless=headless,
        external_ips=external,
        load_balancer_ips=tuple(lb_ips),
        load_balancer_class=_opt_string(spec.get("loadBalancerClass"), "spec.loadBalancerClass"),
        external_traffic_local=etp == "Local",
        internal_traffic_local=itp == "Local",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSlice:
    """Only what locality needs: which nodes have a ready endpoint of the Service, and which a
    serving but terminating one (each sorted, each name once). Endpoints without a nodeName
    are on no node."""

    ref: ObjectRef
    service_name: str
    ready_nodes: tuple[str, ...]
    terminating_nodes: tuple[str, ...]  # serving and terminating (ready or not)

    @property
    def service_key(self) -> tuple[str, str]:
        return (self.ref.namespace, self.service_name)


def parse_endpoint_slice(raw: Mapping[str, object]) -> EndpointSlice:
    return _view(raw, "EndpointSlice", _read_endpoint_slice, namespaced=True)


def _read_endpoint_slice(ref: ObjectRef, raw: Mapping[str, object]) -> EndpointSlice:
    meta = _map(raw.get("metadata"), "metadata")
    labels = _str_map(meta.get("labels"), "metadata.labels")
    if SERVICE_NAME_LABEL not in labels:
        raise FieldError(f"metadata.labels.{SERVICE_NAME_LABEL}", "missing")
    ready: set[str] = set()
    terminating: set[str] = set()
    for i, e in enumerate(_seq(raw.get("endpoints"), "endpoints")):
        ep = _map(e, f"endpoints[{i}]")
        cond = _map(ep.get("conditions"), f"endpoints[{i}].conditions")
        # discovery/v1: nil ready and nil serving mean true; nil terminating means false.
        is_ready = cond.get("ready")
        if type(is_ready) is not bool:
            is_ready = _bool(is_ready, f"endpoints[{i}].conditions.ready", True)
        serving = cond.get("serving")
        if type(serving) is not bool:
            serving = _bool(serving, f"endpoints[{i}].conditions.serving", is_ready)
        is_terminating = cond.get("terminating")
        if type(is_terminating) is not bool:
            is_terminating = _bool(is_terminating, f"endpoints[{i}].conditions.terminating", False)
        node = ep.get("nodeName")
        if node is None:
            continue
        if type(node) is not str or not node:
            node = string(node, f"endpoints[{i}].nodeName")
        if is_ready:
            ready.add(node)
        if serving and is_terminating:
            terminating.add(node)
    return EndpointSlice(
        ref=ref,
        service_name=labels[SERVICE_NAME_LABEL],
        ready_nodes=tuple(sorted(map(_intern, ready))),
        terminating_nodes=tuple(sorted(map(_intern, terminating))),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Secret:
    ref: ObjectRef
    data: Mapping[str, str]

    @property
    def key(self) -> tuple[str, str]:
        return (self.ref.namespace, self.ref.name)


def parse_secret(raw: Mapping[str, object]) -> Secret:
    return _view(raw, "Secret", _read_secret, namespaced=True)


def _read_secret(ref: ObjectRef, raw: Mapping[str, object]) -> Secret:
    data: dict[str, str] = {}
    for k, v in _str_map(raw.get("data"), "data").items():
        try:
            data[k] = base64.b64decode(v, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise FieldError(f"data.{k}", "is not base64 of UTF-8 text") from None
    data.update(_str_map(raw.get("stringData"), "stringData"))  # as kubectl apply would
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
    import_rules: tuple[ImportRule, ...] = ()

    @property
    def name(self) -> str:
        return self.ref.name


def parse_bgp_peer(raw: Mapping[str, object]) -> BGPPeer:
    return _view(raw, "BGPPeer", _read_bgp_peer, namespaced=False)


def _read_bgp_peer(ref: ObjectRef, raw: Mapping[str, object]) -> BGPPeer:
    meta = _map(raw.get("metadata"), "metadata")
    spec = _map(raw.get("spec"), "spec")
    address = _ip(spec.get("peerAddress"), "spec.peerAddress")
    hold, keepalive, retry = _timers(spec)
    secret_ref = _secret_ref(spec)
    gr = _map(spec.get("gracefulRestart"), "spec.gracefulRestart")
    families = tuple(
        one_of(f, f"spec.families[{i}]", FAMILIES)
        for i, f in enumerate(_seq(spec.get("families"), "spec.families"))
    ) or (family_of(address),)
    bfd = _bfd(spec)
    source = _opt_ip(spec.get("sourceAddress"), "spec.sourceAddress")
    if source is not None and family_of(source) != family_of(address):
        raise FieldError("spec.sourceAddress", "must be of the same address family as peerAddress")
    return BGPPeer(
        ref=ref,
        labels=_str_map(meta.get("labels"), "metadata.labels"),
        peer_address=address,
        peer_asn=integer(spec.get("peerASN"), "spec.peerASN", 1, UINT32_MAX),
        local_asn=_opt_int(spec.get("localASN"), "spec.localASN", 1, UINT32_MAX),
        port=_int(spec.get("port"), "spec.port", 1, 65535, 179),
        node_selector=_selector(spec.get("nodeSelector"), "spec.nodeSelector"),
        hold_time=hold,
        keepalive_time=keepalive,
        connect_retry_time=retry,
        password_secret_ref=secret_ref,
        ebgp_multihop=_int(spec.get("ebgpMultihop"), "spec.ebgpMultihop", 1, 255, 1),
        ttl_security=_bool(spec.get("ttlSecurity"), "spec.ttlSecurity", False),
        passive=_bool(spec.get("passive"), "spec.passive", False),
        source_address=source,
        graceful_restart=_bool(gr.get("enabled"), "spec.gracefulRestart.enabled", False),
        restart_time=_int(
            gr.get("restartTimeSeconds"), "spec.gracefulRestart.restartTimeSeconds", 0, 4095, 120
        ),
        families=tuple(sorted(set(families))),
        max_prefixes=_int(spec.get("maxPrefixes"), "spec.maxPrefixes", 0, UINT32_MAX, 0),
        bfd=bfd,
        import_rules=_import_rules(spec.get("import")),
    )


def _import_rules(raw: object) -> tuple[ImportRule, ...]:
    """spec.import: the speaker's import rules, spelled as the CRD spells ASNs (`originASN`)."""
    if raw is None:
        return ()
    rules = _seq(raw, "spec.import")
    docs = [
        {("originAsn" if k == "originASN" else k): v for k, v in r.items()}
        if isinstance(r, Mapping)
        else r
        for r in rules
    ]
    try:
        return parse_import_rules(docs, "spec.import")
    except FieldError as err:
        raise FieldError(err.path.replace("originAsn", "originASN"), err.detail) from None


def _secret_ref(spec: Mapping[str, object]) -> SecretKeyRef | None:
    if spec.get("passwordSecretRef") is None:
        return None
    s = _map(spec.get("passwordSecretRef"), "spec.passwordSecretRef")
    return SecretKeyRef(
        namespace=string(s.get("namespace"), "spec.passwordSecretRef.namespace"),
        name=string(s.get("name"), "spec.passwordSecretRef.name"),
        key=string(s.get("key"), "spec.passwordSecretRef.key"),
    )


def _timers(spec: Mapping[str, object]) -> tuple[int, int, int]:
    """(hold, keepalive, connect retry) seconds, checked as RFC 4271 and the CRDs say."""
    hold = _int(spec.get("holdTimeSeconds"), "spec.holdTimeSeconds", 0, 65535, 90)
    if 0 < hold < 3:
        raise FieldError("spec.holdTimeSeconds", "must be 0 or at least 3")
    keepalive = _int(
        spec.get("keepaliveTimeSeconds"), "spec.keepaliveTimeSeconds", 0, 65535, hold // 3
    )
    if (hold == 0 and keepalive != 0) or (hold > 0 and not 0 < keepalive < hold):
        raise FieldError(
            "spec.keepaliveTimeSeconds", "must be below holdTimeSeconds (0 when it is 0)"
        )
    retry = _int(spec.get("connectRetryTimeSeconds"), "spec.connectRetryTimeSeconds", 1, 65535, 5)
    return hold, keepalive, retry


def _bfd(spec: Mapping[str, object]) -> Bfd | None:
    if spec.get("bfd") is None:
        return None
    b = _map(spec.get("bfd"), "spec.bfd")
    lo, hi = BFD_INTERVALS
    return Bfd(
        min_tx=_int(b.get("minTxMilliseconds"), "spec.bfd.minTxMilliseconds", lo, hi,
                    DEFAULT_BFD_INTERVAL),
        min_rx=_int(b.get("minRxMilliseconds"), "spec.bfd.minRxMilliseconds", lo, hi,
                    DEFAULT_BFD_INTERVAL),
        multiplier=_int(b.get("multiplier"), "spec.bfd.multiplier", *BFD_MULTIPLIERS,
                        DEFAULT_BFD_MULTIPLIER),
    )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class BGPNodePeering:
    """Nodes that exchange their pod CIDRs over iBGP (docs/in-cluster-routing.md): a full mesh
    of the members, or, with `reflector_selector`, route reflectors and their clients."""

    ref: ObjectRef
    node_selector: LabelSelector
    reflector_selector: LabelSelector | None  # None: full mesh
    cluster_id: str | None  # RFC 4456 CLUSTER_ID of the reflectors; None: each its router id
    hold_time: int
    keepalive_time: int
    connect_retry_time: int
    password_secret_ref: SecretKeyRef | None
    graceful_restart: bool
    restart_time: int
    bfd: Bfd | None

    @property
    def name(self) -> str:
        return self.ref.name


def parse_bgp_node_peering(raw: Mapping[str, object]) -> BGPNodePeering:
    return _view(raw, "BGPNodePeering", _read_bgp_node_peering, namespaced=False)


def _read_bgp_node_peering(ref: ObjectRef, raw: Mapping[str, object]) -> BGPNodePeering:
    spec = _map(raw.get("spec"), "spec")
    hold, keepalive, retry = _timers(spec)
    reflector_selector: LabelSelector | None = None
    cluster_id: str | None = None
    if spec.get("routeReflectors") is not None:
        rr = _map(spec.get("routeReflectors"), "spec.routeReflectors")
        if rr.get("nodeSelector") is None:
            raise FieldError("spec.routeReflectors.nodeSelector", "required")
        reflector_selector = _selector(rr.get("nodeSelector"), "spec.routeReflectors.nodeSelector")
        if reflector_selector.is_empty:
            raise FieldError(
                "spec.routeReflectors.nodeSelector",
                "must not be empty (an empty selector would make every member a reflector)",
            )
        cluster_id = _opt_ip(rr.get("clusterId"), "spec.routeReflectors.clusterId")
        if cluster_id is not None and family_of(cluster_id) != FAMILY_IPV4:
            raise FieldError("spec.routeReflectors.clusterId", "must be an IPv4 dotted quad")
    gr = _map(spec.get("gracefulRestart"), "spec.gracefulRestart")
    return BGPNodePeering(
        ref=ref,
        node_selector=_selector(spec.get("nodeSelector"), "spec.nodeSelector"),
        reflector_selector=reflector_selector,
        cluster_id=cluster_id,
        hold_time=hold,
        keepalive_time=keepalive,
        connect_retry_time=retry,
        password_secret_ref=_secret_ref(spec),
        graceful_restart=_bool(gr.get("enabled"), "spec.gracefulRestart.enabled", False),
        restart_time=_int(
            gr.get("restartTimeSeconds"), "spec.gracefulRestart.restartTimeSeconds", 0, 4095, 120
        ),
        bfd=_bfd(spec),
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


def _each(value: object, path: str, item: Callable[[object, str], str]) -> tuple[str, ...]:
    return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(_seq(value, path)))


def parse_bgp_advertisement(raw: Mapping[str, object]) -> BGPAdvertisement:
    return _view(raw, "BGPAdvertisement", _read_bgp_advertisement, namespaced=False)


def _read_bgp_advertisement(ref: ObjectRef, raw: Mapping[str, object]) -> BGPAdvertisement:
    spec = _map(raw.get("spec"), "spec")
    kinds = _strings(spec.get("serviceAddresses"), "spec.serviceAddresses")
    for i, kind in enumerate(kinds):
        if kind not in SERVICE_ADDRESS_KINDS:
            raise FieldError(
                f"spec.serviceAddresses[{i}]", f"must be one of {SERVICE_ADDRESS_KINDS}"
            )
    return BGPAdvertisement(
        ref=ref,
        pod_cidrs=_bool(spec.get("podCIDRs"), "spec.podCIDRs", False),
        service_addresses=frozenset(kinds),
        service_selector=_selector(spec.get("serviceSelector"), "spec.serviceSelector"),
        namespaces=frozenset(_strings(spec.get("namespaces"), "spec.namespaces")),
        node_selector=_selector(spec.get("nodeSelector"), "spec.nodeSelector"),
        peer_selector=_selector(spec.get("peerSelector"), "spec.peerSelector"),
        aggregation_length_ipv4=_int(
            spec.get("aggregationLengthIPv4"), "spec.aggregationLengthIPv4", 0, 32, 32
        ),
        aggregation_length_ipv6=_int(
            spec.get("aggregationLengthIPv6"), "spec.aggregationLengthIPv6", 0, 128, 128
        ),
        communities=tuple(
            sorted(set(_each(spec.get("communities"), "spec.communities", community)))
        ),
        large_communities=tuple(
            sorted(
                set(_each(spec.get("largeCommunities"), "spec.largeCommunities", large_community))
            )
        ),
        local_preference=_opt_int(
            spec.get("localPreference"), "spec.localPreference", 0, UINT32_MAX
        ),
        med=_opt_int(spec.get("med"), "spec.med", 0, UINT32_MAX),
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
    return _view(raw, "LoadBalancerIPPool", _read_load_balancer_ip_pool, namespaced=False)


def _read_load_balancer_ip_pool(ref: ObjectRef, raw: Mapping[str, object]) -> LoadBalancerIPPool:
    spec = _map(raw.get("spec"), "spec")
    cidrs = tuple(
        prefix(c, f"spec.cidrs[{i}]") for i, c in enumerate(_seq(spec.get("cidrs"), "spec.cidrs"))
    )
    ranges: list[tuple[str, str]] = []
    for i, item in enumerate(_seq(spec.get("ranges"), "spec.ranges")):
        rng = _map(item, f"spec.ranges[{i}]")
        start = ip_address(rng.get("start"), f"spec.ranges[{i}].start")
        end = ip_address(rng.get("end"), f"spec.ranges[{i}].end")
        if family_of(start) != family_of(end):
            raise FieldError(f"spec.ranges[{i}]", "start and end must be of one address family")
        if int(ipaddress.ip_address(start)) > int(ipaddress.ip_address(end)):
            raise FieldError(f"spec.ranges[{i}]", "start must not be after end")
        ranges.append((start, end))
    if not cidrs and not ranges:
        raise FieldError("spec", "a pool needs at least one CIDR or range")
    return LoadBalancerIPPool(
        ref=ref,
        cidrs=cidrs,
        ranges=tuple(ranges),
        service_selector=_selector(spec.get("serviceSelector"), "spec.serviceSelector"),
        namespaces=frozenset(_strings(spec.get("namespaces"), "spec.namespaces")),
        auto_assign=_bool(spec.get("autoAssign"), "spec.autoAssign", True),
        avoid_buggy_ips=_bool(spec.get("avoidBuggyIPs"), "spec.avoidBuggyIPs", False),
    )


KubeObject = (
    Node
    | Service
    | EndpointSlice
    | Secret
    | BGPPeer
    | BGPAdvertisement
    | BGPNodePeering
    | LoadBalancerIPPool
)

PARSERS: Final[Mapping[tuple[str, str], Callable[[Mapping[str, object]], KubeObject]]] = {
    ("v1", "Node"): parse_node,
    ("v1", "Service"): parse_service,
    ("v1", "Secret"): parse_secret,
    ("discovery.k8s.io/v1", "EndpointSlice"): parse_endpoint_slice,
    (CRD_API_VERSION, "BGPPeer"): parse_bgp_peer,
    (CRD_API_VERSION, "BGPAdvertisement"): parse_bgp_advertisement,
    (CRD_API_VERSION, "BGPNodePeering"): parse_bgp_node_peering,
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
