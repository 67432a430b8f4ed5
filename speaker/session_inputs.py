"""From the desired state (`speaker.api.schema`) to what the BGP core works with.

`session_config(state, peer)` gives the FSM's `SessionConfig`. `RouteStore` holds the applied
state's routes for every session: one table per family (`speaker.api.routes.FamilyRoutes`,
prefixes as NLRI keys parsed once by the schema, values the interned attribute sets), shared by
every peer, and per peer and family a `PeerAttributes`, what an attribute set means to that peer
(the `PathAttributes` to send, or None: not for it), worked out once per attribute set. A delta
changes the shared tables in place and the store returns the changed keys for the sessions
(`apply_delta`), so its cost is the delta's size. `RouteTables(state).for_peer(peer)` gives a
peer's plain table, for tests and tools.

Per RFC 4271 §5.1: eBGP prepends the local ASN (plus `asPathPrepend` copies) and sends no
LOCAL_PREF; iBGP sends an empty AS_PATH and LOCAL_PREF (default 100). `asPathPrepend` is not
applied on iBGP: our own ASN in an iBGP path would make the peer drop the route as a loop.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from speaker.api.communities import community_value, large_community_value
from speaker.api.ipc import Delta, apply_delta_in_place
from speaker.api.routes import FAMILY_IPV4, FAMILY_IPV6, AttributeInterner, RouteAttributes
from speaker.api.schema import DesiredState, Peer
from speaker.bgp.rib.adj_rib_out import AttributeInterner as PathInterner
from speaker.bgp.rib.adj_rib_out import Desired, FamilyTable, Nlri, PathAttributes, Resolve, Table
from speaker.bgp.session.fsm import SessionConfig
from speaker.bgp.wire.attributes import (
    AsPathAttribute,
    Attribute,
    CommunitiesAttribute,
    LargeCommunitiesAttribute,
    LocalPrefAttribute,
    MultiExitDiscAttribute,
    OriginAttribute,
)
from speaker.bgp.wire.context import FAMILY_NAMES, Family

DEFAULT_LOCAL_PREFERENCE = 100
_AFI_FAMILY: dict[int, Family] = {1: FAMILY_NAMES["ipv4-unicast"], 2: FAMILY_NAMES["ipv6-unicast"]}


def router_id_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def local_asn(state: DesiredState, peer: Peer) -> int:
    return peer.local_asn if peer.local_asn is not None else state.asn


def session_config(state: DesiredState, peer: Peer) -> SessionConfig:
    return SessionConfig(
        local_asn=local_asn(state, peer),
        peer_asn=peer.asn,
        router_id=router_id_int(state.router_id),
        families=frozenset(FAMILY_NAMES[f] for f in peer.families),
        hold_time=peer.hold_time,
        keepalive_time=peer.keepalive_time,
        connect_retry_time=float(peer.connect_retry_time),
        passive=peer.passive,
        max_prefixes=peer.max_prefixes,
        graceful_restart=peer.graceful_restart.enabled,
        restart_time=peer.graceful_restart.restart_time,
    )


def path_attributes(attrs: RouteAttributes, *, ebgp: bool, asn: int) -> PathAttributes:
    """The attributes an advertisement's attribute set is sent with to one kind of peer."""
    out: list[Attribute] = [OriginAttribute(0)]
    if ebgp:
        out.append(AsPathAttribute.sequence(*([asn] * (1 + attrs.as_path_prepend))))
    else:
        out.append(AsPathAttribute())
    if attrs.med is not None:
        out.append(MultiExitDiscAttribute(attrs.med))
    if not ebgp:
        lp = attrs.local_preference
        out.append(LocalPrefAttribute(DEFAULT_LOCAL_PREFERENCE if lp is None else lp))
    if attrs.communities:
        out.append(CommunitiesAttribute(tuple(map(community_value, attrs.communities))))
    if attrs.large_communities:
        values = tuple(map(large_community_value, attrs.large_communities))
        out.append(LargeCommunitiesAttribute(values))
    next_hop = None
    if attrs.next_hop != "self":
        next_hop = ipaddress.ip_address(attrs.next_hop).packed
    return PathAttributes(tuple(out), next_hop)


_V4 = FAMILY_NAMES[FAMILY_IPV4]
_V6 = FAMILY_NAMES[FAMILY_IPV6]
_CORE_FAMILY: dict[str, Family] = {FAMILY_IPV4: _V4, FAMILY_IPV6: _V6}
_MISSING: Any = object()


class PeerAttributes:
    """What attribute sets mean to one peer in one family (a `Resolve`): the PathAttributes,
    or None when the route is not for it (`peers` leaves it out; an IPv4 route with next hop
    self over an IPv6 session, since RFC 8950 is not implemented). Worked out once per
    attribute set and kept while the peer's inputs stay the same."""

    __slots__ = ("_asn", "_cache", "_ebgp", "_name", "_no_self", "_paths", "inputs")

    def __init__(self, inputs: tuple[object, ...], *, paths: PathInterner) -> None:
        name, asn, ebgp, no_self = inputs
        assert isinstance(name, str) and isinstance(asn, int)
        self.inputs = inputs
        self._name = name
        self._asn = asn
        self._ebgp = bool(ebgp)
        self._no_self = bool(no_self)
        self._paths = paths
        self._cache: dict[RouteAttributes, PathAttributes | None] = {}

    def __call__(self, attrs: RouteAttributes) -> PathAttributes | None:
        found = self._cache.get(attrs, _MISSING)
        if found is _MISSING:
            found = self._work_out(attrs)
            self._cache[attrs] = found
        return found  # type: ignore[no-any-return]

    def _work_out(self, attrs: RouteAttributes) -> PathAttributes | None:
        if attrs.peers is not None and self._name not in attrs.peers:
            return None
        if self._no_self and attrs.next_hop == "self":
            return None
        return self._paths.intern(path_attributes(attrs, ebgp=self._ebgp, asn=self._asn))

    def keep(self, used: set[RouteAttributes]) -> None:
        """Forget attribute sets no longer in use."""
        self._cache = {a: p for a, p in self._cache.items() if a in used}


class RouteStore:
    """The routes every session advertises, for the applied state. `interner` is shared with
    the control socket's parser, so a new state's attribute sets are the objects the store
    already knows (an unchanged route is then an identity check)."""

    def __init__(self, interner: AttributeInterner | None = None) -> None:
        self.interner = interner if interner is not None else AttributeInterner()
        self.state: DesiredState | None = None
        self._tables: dict[Family, FamilyTable] = {}
        self._paths = PathInterner()
        self._resolvers: dict[tuple[str, Family], PeerAttributes] = {}

    def load(self, state: DesiredState) -> None:
        """Take `state`'s routes as they are (shared, not copied) for every session."""
        routes = state.routes
        intern = self.interner.intern
        for family in routes.families.values():
            if any(intern(a) is not a for a in family.counts):
                # Parsed with another interner: share this store's objects (one pass).
                for key, attrs in family.routes.items():
                    family.routes[key] = intern(attrs)
                family.counts = type(family.counts)(family.routes.values())
        used = routes.attribute_sets()
        self.interner.keep(used)
        self.state = state
        self._tables = {_CORE_FAMILY[name]: table for name, table in routes.families.items()}
        wanted = {(p.name, f) for p in state.peers for f in _families(p)}
        self._resolvers = {k: r for k, r in self._resolvers.items() if k in wanted}
        if len(self._paths) > 4 * len(used) + 64:
            self._paths = PathInterner()
            self._resolvers.clear()
        for resolver in self._resolvers.values():
            resolver.keep(used)

    def _resolver(self, state: DesiredState, peer: Peer, family: Family) -> PeerAttributes:
        asn = local_asn(state, peer)
        no_self = family == _V4 and ":" in peer.address
        inputs = (peer.name, asn, asn != peer.asn, no_self)
        found = self._resolvers.get((peer.name, family))
        if found is None or found.inputs != inputs:
            found = PeerAttributes(inputs, paths=self._paths)
            self._resolvers[(peer.name, family)] = found
        return found

    def desired(self, peer: Peer) -> Desired:
        """`peer`'s desired routes: the shared tables of its families, its resolvers."""
        state = self.state
        assert state is not None, "load a state first"
        families = _families(peer)
        tables = {f: self._tables[f] for f in families}
        resolvers: dict[Family, Resolve] = {f: self._resolver(state, peer, f) for f in families}
        return Desired(tables, resolvers)

    def apply_delta(self, delta: Delta) -> dict[Family, list[tuple[Nlri, Any, Any]]]:
        """Apply a delta to the loaded state in place (`IpcError` before any change if it does
        not apply); returns per family the changed keys with their values before and after."""
        state = self.state
        assert state is not None, "load a state first"
        changes = apply_delta_in_place(state, delta)
        return {_CORE_FAMILY[name]: changed for name, changed in changes.items()}


def _families(peer: Peer) -> list[Family]:
    return sorted(FAMILY_NAMES[f] for f in peer.families)


class RouteTables:
    """Every peer's desired table for one desired state, in the plain form (tests, tools)."""

    def __init__(self, state: DesiredState) -> None:
        self._store = RouteStore()
        self._store.load(state)

    def for_peer(self, peer: Peer) -> Table:
        return self._store.desired(peer).plain()
