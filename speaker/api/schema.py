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
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass, field
from functools import lru_cache
from typing import Any, Final

from speaker.api import routes as _routes
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
from speaker.api.routes import (
    AttributeInterner,
    RouteAttributes,
    Routes,
    fast_nlri,
    nlri_text,
)

API_VERSION: Final = "kubgp.io/speaker/v1"

FAMILY_IPV4: Final = _routes.FAMILY_IPV4
FAMILY_IPV6: Final = _routes.FAMILY_IPV6
FAMILIES: Final = _routes.FAMILIES


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

    @property
    def attributes(self) -> RouteAttributes:
        """Everything but the prefix."""
        return RouteAttributes(
            peers=self.peers,
            next_hop=self.next_hop,
            communities=self.communities,
            large_communities=self.large_communities,
            local_preference=self.local_preference,
            med=self.med,
            as_path_prepend=self.as_path_prepend,
        )

    @classmethod
    def of(cls, prefix: str, attrs: RouteAttributes) -> Advertisement:
        return cls(
            prefix=prefix,
            peers=attrs.peers,
            next_hop=attrs.next_hop,
            communities=attrs.communities,
            large_communities=attrs.large_communities,
            local_preference=attrs.local_preference,
            med=attrs.med,
            as_path_prepend=attrs.as_path_prepend,
        )


@lru_cache(maxsize=1 << 17)
def prefix_sort_key(prefix: str) -> tuple[int, int, int]:
    """Numeric order of a prefix: IPv4 before IPv6, then by address, then by length."""
    net = ipaddress.ip_network(prefix, strict=False)
    return (net.version, int(net.network_address), net.prefixlen)


def _advertisement_key(adv: Advertisement) -> tuple[int, int, int]:
    return prefix_sort_key(adv.prefix)


def _peer_key(peer: Peer) -> str:
    return peer.name


def nlri_of(prefix: str) -> tuple[str, bytes]:
    """(family, NLRI key) of a valid prefix (`speaker.api.routes`); ValueError if it is not
    one."""
    found = fast_nlri(prefix)
    if found is None:
        found = fast_nlri(str(ipaddress.ip_network(prefix)))
        if found is None:  # pragma: no cover - ip_network's text is canonical
            raise ValueError(f"not a prefix: {prefix!r}")
    return found


def routes_of(advertisements: Iterable[Advertisement]) -> Routes:
    """The compact form of advertisements (later ones replace earlier ones with the prefix)."""
    tables: dict[str, dict[bytes, RouteAttributes]] = {FAMILY_IPV4: {}, FAMILY_IPV6: {}}
    interned: dict[RouteAttributes, RouteAttributes] = {}
    for adv in advertisements:
        family, key = nlri_of(adv.prefix)
        attrs = adv.attributes
        tables[family][key] = interned.setdefault(attrs, attrs)
    return Routes.of(tables)


class DesiredState:
    """The whole desired state of one speaker, immutable. Peers are kept sorted by name.

    The advertisements live in one of two forms: `advertisements`, a tuple of `Advertisement`
    sorted by prefix (what a planner builds), or `routes`, the compact form
    (`speaker.api.routes.Routes`: what parsing gives and what the speaker runs on). Each is
    made from the other on demand; a state parsed from a document never holds `Advertisement`
    objects unless asked for them, and then builds them afresh each time. Two states with the
    same content compare equal whatever form they hold.

    The speaker's control server moves its applied state's `routes` forward in place when it
    applies a delta (`speaker.api.ipc.apply_delta_in_place`); nothing else changes a state."""

    __slots__ = (
        "_advertisements",
        "_routes",
        "always_compare_med",
        "asn",
        "cluster_id",
        "fib",
        "listen",
        "peers",
        "router_id",
    )

    router_id: str
    asn: int
    listen: Listen | None
    peers: tuple[Peer, ...]
    fib: Fib | None
    always_compare_med: bool  # MED compared across neighbouring ASes (route selection)
    cluster_id: str | None  # RFC 4456 CLUSTER_ID, IPv4 dotted quad; None: the router id
    _advertisements: tuple[Advertisement, ...] | None
    _routes: Routes | None

    def __init__(
        self,
        *,
        router_id: str,
        asn: int,
        listen: Listen | None = None,
        peers: tuple[Peer, ...] = (),
        advertisements: tuple[Advertisement, ...] = (),
        fib: Fib | None = None,
        always_compare_med: bool = False,
        cluster_id: str | None = None,
        routes: Routes | None = None,
    ) -> None:
        if routes is not None and advertisements:
            raise ValueError("give advertisements or routes, not both")
        setattr_ = object.__setattr__
        setattr_(self, "router_id", router_id)
        setattr_(self, "asn", asn)
        setattr_(self, "listen", listen)
        sorted_peers = tuple(sorted(peers, key=_peer_key))
        setattr_(self, "peers", sorted_peers if sorted_peers != peers else peers)
        setattr_(self, "fib", fib)
        setattr_(self, "always_compare_med", always_compare_med)
        setattr_(self, "cluster_id", cluster_id)
        if routes is not None:
            setattr_(self, "_routes", routes)
            setattr_(self, "_advertisements", None)
        else:
            advs = tuple(advertisements)
            if not _is_sorted(advs):
                advs = tuple(sorted(advs, key=_advertisement_key))
            setattr_(self, "_advertisements", advs)
            setattr_(self, "_routes", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    @property
    def advertisements(self) -> tuple[Advertisement, ...]:
        """Every advertisement, sorted by prefix (built afresh from `routes` when the state
        holds the compact form)."""
        if self._advertisements is not None:
            return self._advertisements
        assert self._routes is not None
        return tuple(
            Advertisement.of(nlri_text(family, key), attrs)
            for family, key, attrs in self._routes.items()
        )

    @property
    def routes(self) -> Routes:
        """The compact form (built once from `advertisements` when the state holds those)."""
        routes = self._routes
        if routes is None:
            assert self._advertisements is not None
            routes = routes_of(self._advertisements)
            object.__setattr__(self, "_routes", routes)
        return routes

    @property
    def route_count(self) -> int:
        if self._advertisements is not None:
            return len(self._advertisements)
        assert self._routes is not None
        return len(self._routes)

    def with_routes(self, routes: Routes) -> DesiredState:
        """This state's head (everything but the advertisements) with `routes`."""
        return self.replace(routes=routes)

    def replace(self, **changes: Any) -> DesiredState:
        """A copy with the named fields changed (what `dataclasses.replace` does for the other
        types of the contract); the advertisements are kept in the form this state holds them
        unless `advertisements` or `routes` is given."""
        fields: dict[str, Any] = {
            "router_id": self.router_id,
            "asn": self.asn,
            "listen": self.listen,
            "peers": self.peers,
            "fib": self.fib,
            "always_compare_med": self.always_compare_med,
            "cluster_id": self.cluster_id,
        }
        unknown = set(changes) - set(fields) - {"advertisements", "routes"}
        if unknown:
            raise TypeError(f"DesiredState has no field {sorted(unknown)[0]!r}")
        if "advertisements" not in changes and "routes" not in changes:
            if self._advertisements is not None:
                fields["advertisements"] = self._advertisements
            else:
                assert self._routes is not None
                fields["routes"] = self._routes.copy()  # states are moved forward in place
        fields.update(changes)
        return DesiredState(**fields)

    def _head(self) -> tuple[object, ...]:
        return (
            self.router_id,
            self.asn,
            self.listen,
            self.peers,
            self.fib,
            self.always_compare_med,
            self.cluster_id,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DesiredState):
            return NotImplemented
        if self is other:
            return True
        if self._head() != other._head():
            return False
        if self._advertisements is not None and other._advertisements is not None:
            return self._advertisements == other._advertisements
        return self.routes == other.routes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"DesiredState(router_id={self.router_id!r}, asn={self.asn}, listen={self.listen!r}, "
            f"peers={self.peers!r}, advertisements=<{self.route_count}>, fib={self.fib!r}, "
            f"always_compare_med={self.always_compare_med}, cluster_id={self.cluster_id!r})"
        )

    def to_dict(self, *, compact: bool = False) -> dict[str, object]:
        """The canonical document. `compact`: advertisements grouped by attribute set, each
        group's prefixes in `prefixes`, default values left out (docs/performance.md); a
        speaker before proto 2 does not read it."""
        doc: dict[str, object] = {
            "apiVersion": API_VERSION,
            "routerId": self.router_id,
            "asn": self.asn,
        }
        if self.listen is not None:
            doc["listen"] = {"address": self.listen.address, "port": self.listen.port}
        doc["peers"] = [_peer_to_dict(p) for p in self.peers]
        if compact:
            doc["advertisements"] = groups_to_dict(self.routes)
        else:
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


def groups_to_dict(routes: Routes) -> list[dict[str, object]]:
    """Advertisements in the compact form: one entry per attribute set with its `prefixes`,
    only the values that are not the defaults."""
    out: list[dict[str, object]] = []
    for attrs, members in routes.groups():
        entry: dict[str, object] = {"prefixes": [nlri_text(f, k) for f, k in members]}
        entry.update(attributes_to_dict(attrs, compact=True))
        out.append(entry)
    return out


def attributes_to_dict(a: RouteAttributes, *, compact: bool) -> dict[str, object]:
    doc: dict[str, object] = {}
    if a.peers is not None:
        doc["peers"] = list(a.peers)
    if not compact or a.next_hop != "self":
        doc["nextHop"] = a.next_hop
    if not compact or a.communities:
        doc["communities"] = list(a.communities)
    if not compact or a.large_communities:
        doc["largeCommunities"] = list(a.large_communities)
    if a.local_preference is not None:
        doc["localPreference"] = a.local_preference
    if a.med is not None:
        doc["med"] = a.med
    if not compact or a.as_path_prepend:
        doc["asPathPrepend"] = a.as_path_prepend
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
    doc.update(attributes_to_dict(a.attributes, compact=False))
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
_GROUP_KEYS = ("prefixes", *_ADVERTISEMENT_KEYS[1:])
_FAST_KEYS: Final = frozenset(_ADVERTISEMENT_KEYS)


def parse_advertisement(
    value: object, path: str, peer_names: Collection[str] | None = None
) -> Advertisement:
    """One advertisement of one prefix at `path`; its `peers` must be among `peer_names` unless
    that is None (a delta's are checked against the applied state, speaker.api.ipc)."""
    f = _Fields(value, path, _ADVERTISEMENT_KEYS)
    prefix = _prefix(f.required("prefix"), f.at("prefix"))
    attrs = _read_attributes(f, peer_names, family_of(prefix))
    return Advertisement.of(prefix, attrs)


def _read_attributes(
    f: _Fields, peer_names: Collection[str] | None, family: str | None
) -> RouteAttributes:
    """The attribute fields of an advertisement entry, read field by field (every error with
    its exact key path). `family`: the prefix's, which an explicit next hop must share (None:
    checked per prefix by the caller)."""
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
            if family is not None and family_of(next_hop) != family:
                raise SchemaError(
                    f.at("nextHop"),
                    f"must be 'self' or an address of the prefix's family ({family})",
                )
    local_pref = f.raw("localPreference")
    med = f.raw("med")
    return RouteAttributes(
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


def _str_items(value: object) -> tuple[str, ...] | None:
    """A list of strings as a tuple; None for anything else (the exact reader says why)."""
    if type(value) is not list:
        return None
    for item in value:
        if type(item) is not str:
            return None
    return tuple(value)


_NOT_FAST: Final = object()
# the types a raw attribute value may have to be looked up by (a list or an object is not
# hashable: such a value is an error, which the exact readers report)
_SCALAR: Final = frozenset({str, int, float, bool, type(None)})
_HOST32: Final = b"\x20"
_AF_INET: Final = _routes._AF_INET  # socket's, through routes (the one allowed importer)
_pton = _routes._pton


class AdvertisementReader:
    """Reads advertisement entries, one prefix each (`prefix`) or grouped (`prefixes`), into
    per-family tables of NLRI keys (`speaker.api.routes`).

    Fast where a document is well formed: an entry whose keys are all known and whose values
    have the usual types is read without building a field reader; its attribute values are
    looked up by their raw form (types included, so `1` never stands for `true`) among those
    already read, and each prefix goes through `fast_nlri`. Anything else, and every error,
    goes through the exact per-field readers, so the messages are the same as ever."""

    def __init__(
        self,
        peer_names: Collection[str] | None,
        interner: AttributeInterner | None = None,
        *,
        tables: dict[str, dict[bytes, RouteAttributes]] | None = None,
    ) -> None:
        self.peer_names = peer_names
        self.tables = tables if tables is not None else {FAMILY_IPV4: {}, FAMILY_IPV6: {}}
        # How many prefixes each attribute set has, per family, counted as they are read.
        self.counts: dict[str, Counter[RouteAttributes]] = {f: Counter() for f in self.tables}
        self._interner = interner if interner is not None else AttributeInterner()
        # raw attribute values (with their types) -> (attributes, the next hop's family)
        self._seen: dict[tuple[object, ...], tuple[RouteAttributes, str | None]] = {}

    def routes(self) -> Routes:
        return Routes.of(self.tables, self.counts)

    def reset(self) -> None:
        """Start afresh (new tables), keeping the attribute sets read so far."""
        self.tables = {FAMILY_IPV4: {}, FAMILY_IPV6: {}}
        self.counts = {f: Counter() for f in self.tables}

    def _intern(self, attrs: RouteAttributes) -> tuple[RouteAttributes, str | None]:
        attrs = self._interner.intern(attrs)
        return attrs, None if attrs.next_hop == "self" else family_of(attrs.next_hop)

    def _raw_key(self, entry: dict[str, object]) -> tuple[object, ...] | object:
        get = entry.get
        peers = get("peers", _NOT_FAST)
        if peers is not _NOT_FAST:
            peers = _str_items(peers)
            if peers is None:
                return _NOT_FAST
        communities = get("communities", ())
        if communities != ():
            communities = _str_items(communities)
            if communities is None:
                return _NOT_FAST
        large = get("largeCommunities", ())
        if large != ():
            large = _str_items(large)
            if large is None:
                return _NOT_FAST
        next_hop = get("nextHop", "self")
        local_pref = get("localPreference")
        med = get("med")
        prepend = get("asPathPrepend", 0)
        scalar = _SCALAR
        if not (
            type(next_hop) in scalar
            and type(local_pref) in scalar
            and type(med) in scalar
            and type(prepend) in scalar
        ):
            return _NOT_FAST
        return (peers, next_hop, type(next_hop), communities, large, local_pref,
                type(local_pref), med, type(med), prepend, type(prepend))  # fmt: skip

    def _attributes(
        self, entry: object, path: str, keys: tuple[str, ...], family: str | None
    ) -> tuple[RouteAttributes, str | None]:
        raw = self._raw_key(entry) if type(entry) is dict else _NOT_FAST
        if raw is not _NOT_FAST:
            assert isinstance(raw, tuple)
            found = self._seen.get(raw)
            if found is not None:
                return found
        f = _Fields(entry, path, keys)
        found = self._intern(_read_attributes(f, self.peer_names, family))
        if raw is not _NOT_FAST:
            assert isinstance(raw, tuple)
            self._seen[raw] = found
        return found

    def attributes(self, value: object, path: str) -> RouteAttributes:
        """A mapping of attribute fields alone (no prefix), read exactly and interned."""
        f = _Fields(value, path, _GROUP_KEYS[1:])
        return self._intern(_read_attributes(f, self.peer_names, None))[0]

    def entry(self, value: object, path: str) -> None:
        """One entry of an advertisements list at `path`."""
        if type(value) is dict and "prefixes" in value:
            self._group(value, path)
            return
        if type(value) is dict and value.keys() <= _FAST_KEYS:
            prefix = value.get("prefix")
            found = fast_nlri(prefix) if type(prefix) is str else None
            if found is not None:
                family, key = found
                attrs, hop_family = self._attributes(value, path, _ADVERTISEMENT_KEYS, family)
                if hop_family is None or hop_family == family:
                    self._put(family, key, attrs, f"{path}.prefix")
                    return
        # The exact path: the first error in the entry, with its key path.
        adv = parse_advertisement(value, path, self.peer_names)
        family, key = nlri_of(adv.prefix)
        attrs, _ = self._intern(adv.attributes)
        self._put(family, key, attrs, f"{path}.prefix")

    def _put(self, family: str, key: bytes, attrs: RouteAttributes, path: str) -> None:
        table = self.tables[family]
        if key in table:
            raise SchemaError(path, f"duplicate prefix {nlri_text(family, key)}")
        table[key] = attrs
        self.counts[family][attrs] += 1

    def _group(self, value: dict[str, object], path: str) -> None:
        if "prefix" in value:
            raise SchemaError(path, "has both prefix and prefixes; give one")
        attrs, hop_family = self._attributes(value, path, _GROUP_KEYS, None)
        where = f"{path}.prefixes"
        texts = _list(value["prefixes"], where)
        if not texts:
            raise SchemaError(where, "must name at least one prefix")
        if hop_family != FAMILY_IPV6 and self._v4_hosts(texts, attrs):
            return
        tables = self.tables
        v4 = tables[FAMILY_IPV4]
        v6 = tables[FAMILY_IPV6]
        added = {FAMILY_IPV4: len(v4), FAMILY_IPV6: len(v6)}
        for i, text in enumerate(texts):
            found = fast_nlri(text) if type(text) is str else None
            if found is None:
                found = nlri_of(_prefix(text, f"{where}[{i}]"))
            family, key = found
            if hop_family is not None and family != hop_family:
                raise SchemaError(
                    f"{where}[{i}]",
                    f"is not of the family of nextHop {attrs.next_hop} ({hop_family})",
                )
            table = v4 if family == FAMILY_IPV4 else v6
            if key in table:
                raise SchemaError(f"{where}[{i}]", f"duplicate prefix {nlri_text(family, key)}")
            table[key] = attrs
        for family, before in added.items():
            if len(tables[family]) > before:
                self.counts[family][attrs] += len(tables[family]) - before

    def _v4_hosts(self, texts: Sequence[object], attrs: RouteAttributes) -> bool:
        """A group of IPv4 host routes in canonical spelling (the usual bulk), read in one
        pass; False (nothing read) for anything else."""
        try:
            keys = [_HOST32 + _pton(_AF_INET, t[:-3]) for t in texts if t[-3:] == "/32"]  # type: ignore[index]
        except (TypeError, OSError, ValueError, UnicodeError):
            return False
        if len(keys) != len(texts):
            return False
        fresh = dict.fromkeys(keys, attrs)
        table = self.tables[FAMILY_IPV4]
        if len(fresh) != len(keys) or (table and not table.keys().isdisjoint(fresh)):
            return False  # a duplicate: the prefix-by-prefix path names it
        if table:
            table.update(fresh)
        else:
            self.tables[FAMILY_IPV4] = fresh
        self.counts[FAMILY_IPV4][attrs] += len(keys)
        return True

    def read(self, value: object, path: str) -> None:
        """A whole advertisements list."""
        entry = self.entry
        for i, raw in enumerate(_list(value, path)):
            entry(raw, f"{path}[{i}]")


def _or_empty(value: object) -> object:
    return [] if value is None else value


def parse_desired_state(
    doc: Mapping[str, object], *, interner: AttributeInterner | None = None
) -> DesiredState:
    """Validates a decoded desired-state document; raises `SchemaError` naming the key path.
    The result holds the compact form (`DesiredState.routes`); `interner` shares attribute
    sets with states parsed before (the speaker passes its own)."""
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
    reader = AdvertisementReader(peers, interner)
    reader.read(_or_empty(f.raw("advertisements")), "advertisements")
    return DesiredState(
        router_id=router_id,
        asn=asn,
        listen=None if listen is None else _listen(listen, "listen"),
        peers=tuple(peers.values()),
        fib=f.get("fib", _fib, None),
        always_compare_med=f.get("alwaysCompareMed", _bool, False),
        cluster_id=f.get("clusterId", _ipv4, None),
        routes=reader.routes(),
    )
