"""What two OPENs agree on (RFC 4271 §4.2, RFC 5492): the contexts to decode and encode with.

ADD-PATH is directional (RFC 7911 §4): we decode path identifiers for a family when we said
"receive" and the peer said "send", and encode them when the reverse holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from speaker.bgp.wire.capabilities import (
    ADD_PATH_RECEIVE,
    ADD_PATH_SEND,
    AddPathCapability,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    FourOctetASCapability,
    GracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
)
from speaker.bgp.wire.context import IPV4_UNICAST, DecodeContext, Family
from speaker.bgp.wire.messages import Open


def _families(message: Open) -> frozenset[Family]:
    mp = {(c.afi, c.safi) for c in message.capabilities if isinstance(c, MultiprotocolCapability)}
    # RFC 4760 §8 / RFC 4271: without any multiprotocol capability, IPv4 unicast is implied.
    return frozenset(mp) if mp else frozenset({IPV4_UNICAST})


def _add_path(message: Open) -> dict[Family, int]:
    out: dict[Family, int] = {}
    for cap in message.capabilities:
        if isinstance(cap, AddPathCapability):
            for afi, safi, mode in cap.entries:
                out[(afi, safi)] = mode
    return out


def _has(message: Open, cls: type) -> bool:
    return any(isinstance(c, cls) for c in message.capabilities)


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    """The session's agreed parameters. `rx` decodes what the peer sends; `tx` encodes ours."""

    rx: DecodeContext
    tx: DecodeContext
    families: frozenset[Family]
    hold_time: int
    route_refresh: bool
    enhanced_route_refresh: bool
    peer_graceful_restart: GracefulRestartCapability | None


def negotiate(local: Open, remote: Open, *, ebgp: bool = False) -> Negotiated:
    """Combine our OPEN and the peer's; the FSM checks AS, identifier and hold time first."""
    four = _has(local, FourOctetASCapability) and _has(remote, FourOctetASCapability)
    extended = _has(local, ExtendedMessageCapability) and _has(remote, ExtendedMessageCapability)
    families = _families(local) & _families(remote)
    ours, theirs = _add_path(local), _add_path(remote)
    rx = frozenset(
        f
        for f in families
        if ours.get(f, 0) & ADD_PATH_RECEIVE and theirs.get(f, 0) & ADD_PATH_SEND
    )
    tx = frozenset(
        f
        for f in families
        if ours.get(f, 0) & ADD_PATH_SEND and theirs.get(f, 0) & ADD_PATH_RECEIVE
    )
    gr = next((c for c in remote.capabilities if isinstance(c, GracefulRestartCapability)), None)
    return Negotiated(
        rx=DecodeContext(four_octet_as=four, add_path=rx, extended_message=extended, ebgp=ebgp),
        tx=DecodeContext(four_octet_as=four, add_path=tx, extended_message=extended, ebgp=ebgp),
        families=families,
        hold_time=min(local.hold_time, remote.hold_time),
        route_refresh=_has(local, RouteRefreshCapability) and _has(remote, RouteRefreshCapability),
        enhanced_route_refresh=_has(local, EnhancedRouteRefreshCapability)
        and _has(remote, EnhancedRouteRefreshCapability),
        peer_graceful_restart=gr,
    )
