"""The speaker's desired state, schema `kubgp.io/speaker/v1` (see DESIGN.md).

One document is the standalone config file, the body of an IPC snapshot and the planner's
output. This module is pure: no I/O. `parse_desired_state` turns a decoded YAML/JSON mapping into
frozen values or raises `SchemaError` naming the key path; `DesiredState.to_dict` gives the
canonical camelCase document back (every field written, peers sorted by name, advertisements by
prefix), and `parse_desired_state(state.to_dict()) == state`.

Defaults where DESIGN.md leaves a choice:
- `keepaliveTime` defaults to `holdTime // 3` (0 when `holdTime` is 0).
- `families` defaults to the peer address's own family: `[ipv4-unicast]` for an IPv4 peer,
  `[ipv6-unicast]` for an IPv6 one.
- `gracefulRestart` absent means disabled; `restartTime` defaults to 120 s (0..4095, RFC 4724).
- `bfd` absent means no BFD; present, `minTx`/`minRx` default to 300 ms and `multiplier` to 3
  (FRR's defaults), bounded like FRR's `neighbor bfd`: 50..60000 ms, 2..255.
- An advertisement's `nextHop` defaults to `self`; prefixes are written in their canonical form
  (`ipaddress.ip_network` spelling, e.g. lower-case IPv6).
- The receiving half (docs/route-import.md): `fib` absent means received routes are not
  installed; a peer's `import` absent or empty accepts nothing. Both are written by `to_dict`
  only when present, so documents without them stay as they were.
- Route reflection (RFC 4456, docs/in-cluster-routing.md): `clusterId` absent means the router
  id; a peer's `routeReflectorClient` (iBGP peers only) absent means false. `to_dict` writes
  `clusterId` only when set and `routeReflectorClient` only when true.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from speaker.api.communities import community as _community
from speaker.api.communities import large_community as _large_community
from speaker.api.fields import FieldError, one_of, unique
from speaker.api.fields import Fields as _Fields
from speaker.api.fields import boolean as _bool
from speaker.api.fields import integer as _int
from speaker.api.fields import ip_address as _ip
from speaker.api.fields import ipv4_address as _ipv4
from speaker.api.fields import prefix as _prefix
from speaker.api.fields import sequence as _list
from speaker.api.fields import string as _str
from speaker.api.fields import unique as _str_list

API_VERSION: Final = "kubgp.io/speaker/v1"

FAMILY_IPV4: Final = "ipv4-unicast"
FAMILY_IPV6: Final = "ipv6-unicast"
FAMILIES: Final = frozenset({FAMILY_IPV4, FAMILY_IPV6})

DEFAULT_PORT: Final = 179
DEFAULT_HOLD_TIME: Final = 90
DEFAULT_CONNECT_RETRY_TIME: Final = 5
DEFAULT_EBGP_MULTIHOP: Final = 1
DEFAULT_RESTART_TIME: Final = 120
MAX_AS_PATH_PREPEND: Final = 32
DEFAULT_BFD_INTERVAL: Final = 300  # ms
DEFAULT_BFD_MULTIPLIER: Final = 3
BFD_INTERVALS: Final = (50, 60000)  # ms
BFD_MULTIPLIERS: Final = (2, 255)
UINT16_MAX: Final = 0xFFFF
UINT32_MAX: Final = 0xFFFFFFFF
DEFAULT_FIB_TABLE: Final = 254
DEFAULT_FIB_PROTOCOL: Final = 179  # docs/route-import.md: why not 196
DEFAULT_FIB_METRIC: Final = 20
DEFAULT_MAX_PATHS: Final = 8
MAX_MAX_PATHS: Final = 64
IMPORT_ACTIONS: Final = ("accept", "reject")

IPValue = (
    ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network
)


SchemaError = FieldError
"""A desired-state document that does not follow the schema; the message starts with the key
path (`peers[1].holdTime: ...`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listen:
    address: str
    port: int = DEFAULT_PORT


@dataclass(frozen=True, slots=True, kw_only=True)
class GracefulRestart:
    enabled: bool = False
    restart_time: int = DEFAULT_RESTART_TIME


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportSet:
    """What an accepting import rule changes on the route."""

    local_preference: int | None = None
    add_communities: tuple[str, ...] = ()
    add_large_communities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportRule:
    """One import rule of a peer; every given condition must hold (docs/route-import.md)."""

    action: str  # "accept" or "reject"
    prefix: str | None = None
    ge: int | None = None
    le: int | None = None
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    as_path_contains: tuple[int, ...] = ()
    origin_asn: int | None = None
    set: ImportSet | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fib:
    """Received best paths into the kernel's routing table."""

    table: int = DEFAULT_FIB_TABLE
    protocol: int = DEFAULT_FIB_PROTOCOL
    metric: int = DEFAULT_FIB_METRIC
    max_paths: int = DEFAULT_MAX_PATHS


@dataclass(frozen=True, slots=True, kw_only=True)
class Bfd:
    """BFD for a peer (RFC 5880/5882): desired min TX, required min RX (ms), multiplier."""

    min_tx: int = DEFAULT_BFD_INTERVAL
    min_rx: int = DEFAULT_BFD_INTERVAL
    multiplier: int = DEFAULT_BFD_MULTIPLIER


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    name: str
    address: str
    asn: int
    port: int = DEFAULT_PORT
    local_asn: int | None = None
    source_address: str | None = None
    passive: bool = False
    hold_time: int = DEFAULT_HOLD_TIME
    keepalive_time: int = DEFAULT_HOLD_TIME // 3
    connect_retry_time: int = DEFAULT_CONNECT_RETRY_TIME
    password: str | None = None
    ebgp_multihop: int = DEFAULT_EBGP_MULTIHOP
    ttl_security: bool = False
    graceful_restart: GracefulRestart = field(default_factory=GracefulRestart)
    families: tuple[str, ...] = (FAMILY_IPV4,)
    max_prefixes: int = 0
    import_rules: tuple[ImportRule, ...] = ()
    bfd: Bfd | None = None
    route_reflector_client: bool = False  # RFC 4456: we reflect routes to and from this peer

    def __repr__(self) -> str:
        # Never print a password into a log line.
        shown = "'***'" if self.password is not None else "None"
        return (
            f"Peer(name={self.name!r}, address={self.address!r}, asn={self.asn}, "
            f"port={self.port}, password={shown}, families={self.families!r})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Advertisement:
    prefix: str
    peers: tuple[str, ...] | None = None
    next_hop: str = "self"
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    local_preference: int | None = None
    med: int | None = None
    as_path_prepend: int = 0


@lru_cache(maxsize=1 << 17)
def prefix_sort_key(prefix: str) -> tuple[int, int, int]:
    """Numeric order of a prefix: IPv4 before IPv6, then by address, then by length."""
    net = ipaddress.ip_network(prefix, strict=False)
    return (net.version, int(net.network_address), net.prefixlen)


def _advertisement_key(adv: Advertisement) -> tuple[int, int, int]:
    return prefix_sort_key(adv.prefix)


def _peer_key(peer: Peer) -> str:
    return peer.name


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredState:
    """The whole desired state of one speaker. Construction puts peers and advertisements in
    canonical order, so two states with the same content compare equal."""

    router_id: str
    asn: int
    listen: Listen | None = None
    peers: tuple[Peer, ...] = ()
    advertisements: tuple[Advertisement, ...] = ()
    fib: Fib | None = None
    always_compare_med: bool = False  # MED compared across neighbouring ASes (route selection)
    cluster_id: str | None = None  # RFC 4456 CLUSTER_ID, IPv4 dotted quad; None: the router id

    def __post_init__(self) -> None:
        peers = tuple(sorted(self.peers, key=_peer_key))
        if peers != self.peers:
            object.__setattr__(self, "peers", peers)
        advs = self.advertisements
        if not _is_sorted(advs):
            object.__setattr__(self, "advertisements", tuple(sorted(advs, key=_advertisement_key)))

    def to_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "apiVersion": API_VERSION,
            "routerId": self.router_id,
            "asn": self.asn,
        }
        if self.listen is not None:
            doc["listen"] = {"address": self.listen.address, "port": self.listen.port}
        doc["peers"] = [_peer_to_dict(p) for p in self.peers]
        doc["advertisements"] = [_advertisement_to_dict(a) for a in self.advertisements]
        if self.cluster_id is not None:
            doc["clusterId"] = self.cluster_id
        if self.fib is not None:
            doc["fib"] = {
                "table": self.fib.table,
                "protocol": self.fib.protocol,
                "metric": self.fib.metric,
                "maxPaths": self.fib.max_paths,
            }
        if self.always_compare_med:
            doc["alwaysCompareMed"] = True
        return doc


def _is_sorted(advs: tuple[Advertisement, ...]) -> bool:
    if len(advs) < 2:
        return True
    keys = [prefix_sort_key(a.prefix) for a in advs]
    return all(a < b for a, b in itertools.pairwise(keys))


def _peer_to_dict(p: Peer) -> dict[str, object]:
    doc: dict[str, object] = {"name": p.name, "address": p.address, "port": p.port, "asn": p.asn}
    if p.local_asn is not None:
        doc["localAsn"] = p.local_asn
    if p.source_address is not None:
        doc["sourceAddress"] = p.source_address
    doc["passive"] = p.passive
    doc["holdTime"] = p.hold_time
    doc["keepaliveTime"] = p.keepalive_time
    doc["connectRetryTime"] = p.connect_retry_time
    if p.password is not None:
        doc["password"] = p.password
    doc["ebgpMultihop"] = p.ebgp_multihop
    doc["ttlSecurity"] = p.ttl_security
    doc["gracefulRestart"] = {
        "enabled": p.graceful_restart.enabled,
        "restartTime": p.graceful_restart.restart_time,
    }
    doc["families"] = list(p.families)
    doc["maxPrefixes"] = p.max_prefixes
    if p.import_rules:
        doc["import"] = [_import_rule_to_dict(r) for r in p.import_rules]
    if p.bfd is not None:
        doc["bfd"] = {"minTx": p.bfd.min_tx, "minRx": p.bfd.min_rx, "multiplier": p.bfd.multiplier}
    if p.route_reflector_client:
        doc["routeReflectorClient"] = True
    return doc


def _import_rule_to_dict(r: ImportRule) -> dict[str, object]:
    doc: dict[str, object] = {}
    if r.prefix is not None:
        doc["prefix"] = r.prefix
    if r.ge is not None:
        doc["ge"] = r.ge
    if r.le is not None:
        doc["le"] = r.le
    if r.communities:
        doc["communities"] = list(r.communities)
    if r.large_communities:
        doc["largeCommunities"] = list(r.large_communities)
    if r.as_path_contains:
        doc["asPathContains"] = list(r.as_path_contains)
    if r.origin_asn is not None:
        doc["originAsn"] = r.origin_asn
    doc["action"] = r.action
    if r.set is not None:
        action: dict[str, object] = {}
        if r.set.local_preference is not None:
            action["localPreference"] = r.set.local_preference
        if r.set.add_communities:
            action["addCommunities"] = list(r.set.add_communities)
        if r.set.add_large_communities:
            action["addLargeCommunities"] = list(r.set.add_large_communities)
        doc["set"] = action
    return doc


def _advertisement_to_dict(a: Advertisement) -> dict[str, object]:
    doc: dict[str, object] = {"prefix": a.prefix}
    if a.peers is not None:
        doc["peers"] = list(a.peers)
    doc["nextHop"] = a.next_hop
    doc["communities"] = list(a.communities)
    doc["largeCommunities"] = list(a.large_communities)
    if a.local_preference is not None:
        doc["localPreference"] = a.local_preference
    if a.med is not None:
        doc["med"] = a.med
    doc["asPathPrepend"] = a.as_path_prepend
    return doc


# --- parsing: the readers (_Fields, _int, _str, ...) are speaker.api.fields' ---------------------


def _asn(value: object, path: str) -> int:
    return _int(value, path, 1, UINT32_MAX)


def _port(value: object, path: str) -> int:
    return _int(value, path, 1, UINT16_MAX)


def _uint32(value: object, path: str) -> int:
    return _int(value, path, 0, UINT32_MAX)


def _family(value: object, path: str) -> str:
    return one_of(value, path, FAMILIES)


def family_of(address: str | IPValue) -> str:
    """The unicast family of an address or prefix, as text or as an `ipaddress` value."""
    if isinstance(address, str):
        return FAMILY_IPV6 if ":" in address else FAMILY_IPV4
    return FAMILY_IPV6 if address.version == 6 else FAMILY_IPV4


def _listen(value: object, path: str) -> Listen:
    f = _Fields(value, path, ("address", "port"))
    return Listen(
        address=_ip(f.required("address"), f.at("address")),
        port=f.get("port", _port, DEFAULT_PORT),
    )


def _graceful_restart(value: object, path: str) -> GracefulRestart:
    f = _Fields(value, path, ("enabled", "restartTime"))
    return GracefulRestart(
        enabled=f.get("enabled", _bool, False),
        restart_time=f.get("restartTime", lambda v, p: _int(v, p, 0, 4095), DEFAULT_RESTART_TIME),
    )


def _bfd(value: object, path: str) -> Bfd:
    f = _Fields(value, path, ("minTx", "minRx", "multiplier"))

    def interval(v: object, p: str) -> int:
        return _int(v, p, *BFD_INTERVALS)

    return Bfd(
        min_tx=f.get("minTx", interval, DEFAULT_BFD_INTERVAL),
        min_rx=f.get("minRx", interval, DEFAULT_BFD_INTERVAL),
        multiplier=f.get("multiplier", lambda v, p: _int(v, p, *BFD_MULTIPLIERS), 3),
    )


_PEER_KEYS = (
    "name",
    "address",
    "port",
    "asn",
    "localAsn",
    "sourceAddress",
    "passive",
    "holdTime",
    "keepaliveTime",
    "connectRetryTime",
    "password",
    "ebgpMultihop",
    "ttlSecurity",
    "gracefulRestart",
    "families",
    "maxPrefixes",
    "import",
    "bfd",
    "routeReflectorClient",
)


def _peer(value: object, path: str) -> Peer:
    f = _Fields(value, path, _PEER_KEYS)
    name = _str(f.required("name"), f.at("name"))
    address = _ip(f.required("address"), f.at("address"))
    asn = _asn(f.required("asn"), f.at("asn"))
    hold = f.get("holdTime", lambda v, p: _int(v, p, 0, UINT16_MAX), DEFAULT_HOLD_TIME)
    if 0 < hold < 3:
        raise SchemaError(f.at("holdTime"), "must be 0 or between 3 and 65535")
    keepalive = f.get("keepaliveTime", lambda v, p: _int(v, p, 0, UINT16_MAX), hold // 3)
    if hold == 0 and keepalive != 0:
        raise SchemaError(f.at("keepaliveTime"), "must be 0 when holdTime is 0")
    if hold > 0 and not 0 < keepalive < hold:
        raise SchemaError(f.at("keepaliveTime"), f"must be between 1 and holdTime-1 ({hold - 1})")
    password = f.raw("password")
    if password is not None:
        password = _str(password, f.at("password"))
        if len(password.encode()) > 80:  # TCP_MD5SIG_MAXKEYLEN
            raise SchemaError(f.at("password"), "must be at most 80 bytes (TCP MD5 key limit)")
    default_families: tuple[str, ...] = (family_of(address),)
    families = f.get("families", lambda v, p: _str_list(v, p, _family), default_families)
    if not families:
        raise SchemaError(f.at("families"), "must name at least one family")
    local_asn = f.raw("localAsn")
    source = f.raw("sourceAddress")
    client = f.get("routeReflectorClient", _bool, False)
    return Peer(
        name=name,
        address=address,
        port=f.get("port", _port, DEFAULT_PORT),
        asn=asn,
        local_asn=None if local_asn is None else _asn(local_asn, f.at("localAsn")),
        source_address=None if source is None else _ip(source, f.at("sourceAddress")),
        passive=f.get("passive", _bool, False),
        hold_time=hold,
        keepalive_time=keepalive,
        connect_retry_time=f.get(
            "connectRetryTime", lambda v, p: _int(v, p, 1, UINT16_MAX), DEFAULT_CONNECT_RETRY_TIME
        ),
        password=password,
        ebgp_multihop=f.get("ebgpMultihop", lambda v, p: _int(v, p, 1, 255), 1),
        ttl_security=f.get("ttlSecurity", _bool, False),
        graceful_restart=f.get("gracefulRestart", _graceful_restart, GracefulRestart()),
        families=tuple(sorted(families)),
        max_prefixes=f.get("maxPrefixes", _uint32, 0),
        import_rules=f.get("import", _import_rules, ()),
        bfd=f.get("bfd", _bfd, None),
        route_reflector_client=client,
    )


def _import_set(value: object, path: str) -> ImportSet:
    f = _Fields(value, path, ("localPreference", "addCommunities", "addLargeCommunities"))
    local_pref = f.raw("localPreference")
    return ImportSet(
        local_preference=None
        if local_pref is None
        else _uint32(local_pref, f.at("localPreference")),
        add_communities=f.get("addCommunities", lambda v, p: _str_list(v, p, _community), ()),
        add_large_communities=f.get(
            "addLargeCommunities", lambda v, p: _str_list(v, p, _large_community), ()
        ),
    )


_IMPORT_RULE_KEYS = (
    "prefix",
    "ge",
    "le",
    "communities",
    "largeCommunities",
    "asPathContains",
    "originAsn",
    "action",
    "set",
)


def _import_rule(value: object, path: str) -> ImportRule:
    f = _Fields(value, path, _IMPORT_RULE_KEYS)
    action = _str(f.required("action"), f.at("action"))
    if action not in IMPORT_ACTIONS:
        raise SchemaError(f.at("action"), f"must be one of {list(IMPORT_ACTIONS)}, not {action!r}")
    prefix = None if f.raw("prefix") is None else _prefix(f.raw("prefix"), f.at("prefix"))
    ge = le = None
    if prefix is not None:
        net = ipaddress.ip_network(prefix)
        bits, length = net.max_prefixlen, net.prefixlen
        ge = f.get("ge", lambda v, p: _int(v, p, length, bits), None)
        low = length if ge is None else ge
        le = f.get("le", lambda v, p: _int(v, p, low, bits), None)
    else:
        for key in ("ge", "le"):
            if f.has(key):
                raise SchemaError(f.at(key), "needs a prefix")
    origin = f.raw("originAsn")
    action_set = f.raw("set")
    if action_set is not None and action != "accept":
        raise SchemaError(f.at("set"), "only an accepting rule can set attributes")
    return ImportRule(
        action=action,
        prefix=prefix,
        ge=ge,
        le=le,
        communities=f.get("communities", lambda v, p: _str_list(v, p, _community), ()),
        large_communities=f.get(
            "largeCommunities", lambda v, p: _str_list(v, p, _large_community), ()
        ),
        as_path_contains=f.get("asPathContains", _asn_list, ()),
        origin_asn=None if origin is None else _asn(origin, f.at("originAsn")),
        set=None if action_set is None else _import_set(action_set, f.at("set")),
    )


def _asn_list(value: object, path: str) -> tuple[int, ...]:
    return unique(value, path, _asn)


def _import_rules(value: object, path: str) -> tuple[ImportRule, ...]:
    return tuple(_import_rule(v, f"{path}[{i}]") for i, v in enumerate(_list(value, path)))


def parse_import_rules(value: object, path: str) -> tuple[ImportRule, ...]:
    """A list of import rules in this schema's form (`peers[].import`), for readers of other
    documents that carry the same rules (the BGPPeer CRD's `spec.import`)."""
    return _import_rules(value, path)


def _fib_table(value: object, path: str) -> int:
    table = _int(value, path, 1, UINT32_MAX)
    if table in (253, 255):
        raise SchemaError(
            path, f"table {table} is the kernel's {'default' if table == 253 else 'local'} table"
        )
    return table


def _fib(value: object, path: str) -> Fib:
    f = _Fields(value, path, ("table", "protocol", "metric", "maxPaths"))
    return Fib(
        table=f.get("table", _fib_table, DEFAULT_FIB_TABLE),
        # 0..4 are the kernel's own (unspec, redirect, kernel, boot, static)
        protocol=f.get("protocol", lambda v, p: _int(v, p, 5, 255), DEFAULT_FIB_PROTOCOL),
        metric=f.get("metric", lambda v, p: _int(v, p, 1, UINT32_MAX), DEFAULT_FIB_METRIC),
        max_paths=f.get("maxPaths", lambda v, p: _int(v, p, 1, MAX_MAX_PATHS), DEFAULT_MAX_PATHS),
    )


_ADVERTISEMENT_KEYS = (
    "prefix",
    "peers",
    "nextHop",
    "communities",
    "largeCommunities",
    "localPreference",
    "med",
    "asPathPrepend",
)


def parse_advertisement(
    value: object, path: str, peer_names: Mapping[str, Peer] | None = None
) -> Advertisement:
    """One advertisement at `path`; its `peers` must be among `peer_names` unless that is None
    (a delta's are checked against the applied state, speaker.api.ipc)."""
    f = _Fields(value, path, _ADVERTISEMENT_KEYS)
    prefix = _prefix(f.required("prefix"), f.at("prefix"))
    family = family_of(prefix)
    peers: tuple[str, ...] | None = None
    if f.has("peers"):
        peers = _str_list(f.raw("peers"), f.at("peers"), _str)
        for i, name in enumerate(peers):
            if peer_names is not None and name not in peer_names:
                raise SchemaError(f"{f.at('peers')}[{i}]", f"no peer named {name!r}")
        peers = tuple(sorted(peers))
    next_hop = "self"
    if f.has("nextHop"):
        raw = _str(f.raw("nextHop"), f.at("nextHop"))
        if raw != "self":
            next_hop = _ip(raw, f.at("nextHop"))
            if family_of(next_hop) != family:
                raise SchemaError(
                    f.at("nextHop"),
                    f"must be 'self' or an address of the prefix's family ({family})",
                )
    local_pref = f.raw("localPreference")
    med = f.raw("med")
    return Advertisement(
        prefix=prefix,
        peers=peers,
        next_hop=next_hop,
        communities=f.get("communities", lambda v, p: _str_list(v, p, _community), ()),
        large_communities=f.get(
            "largeCommunities", lambda v, p: _str_list(v, p, _large_community), ()
        ),
        local_preference=None
        if local_pref is None
        else _uint32(local_pref, f.at("localPreference")),
        med=None if med is None else _uint32(med, f.at("med")),
        as_path_prepend=f.get("asPathPrepend", lambda v, p: _int(v, p, 0, MAX_AS_PATH_PREPEND), 0),
    )


def _or_empty(value: object) -> object:
    return [] if value is None else value


def parse_desired_state(doc: Mapping[str, object]) -> DesiredState:
    """Validates a decoded desired-state document; raises `SchemaError` naming the key path."""
    f = _Fields(
        doc,
        "",
        ("apiVersion", "routerId", "asn", "listen", "peers", "advertisements", "fib",
         "alwaysCompareMed", "clusterId"),
    )  # fmt: skip
    if f.has("apiVersion") and f.raw("apiVersion") != API_VERSION:
        raise SchemaError("apiVersion", f"must be {API_VERSION!r}, not {f.raw('apiVersion')!r}")
    router_id = _ipv4(f.required("routerId"), "routerId")
    asn = _asn(f.required("asn"), "asn")
    listen = f.raw("listen")
    peers: dict[str, Peer] = {}
    for i, raw in enumerate(_list(_or_empty(f.raw("peers")), "peers")):
        peer = _peer(raw, f"peers[{i}]")
        if peer.name in peers:
            raise SchemaError(f"peers[{i}].name", f"duplicate peer name {peer.name!r}")
        if peer.route_reflector_client and (peer.local_asn or asn) != peer.asn:
            raise SchemaError(
                f"peers[{i}].routeReflectorClient",
                "only an iBGP peer (asn equal to the local ASN) can be a route reflector client",
            )
        peers[peer.name] = peer
    advertisements: dict[str, Advertisement] = {}
    for i, raw in enumerate(_list(_or_empty(f.raw("advertisements")), "advertisements")):
        adv = parse_advertisement(raw, f"advertisements[{i}]", peers)
        if adv.prefix in advertisements:
            raise SchemaError(f"advertisements[{i}].prefix", f"duplicate prefix {adv.prefix}")
        advertisements[adv.prefix] = adv
    return DesiredState(
        router_id=router_id,
        asn=asn,
        listen=None if listen is None else _listen(listen, "listen"),
        peers=tuple(peers.values()),
        advertisements=tuple(advertisements.values()),
        fib=f.get("fib", _fib, None),
        always_compare_med=f.get("alwaysCompareMed", _bool, False),
        cluster_id=f.get("clusterId", _ipv4, None),
    )
