"""OPEN: the one we send, the checks on the peer's, and what the two agree on.

`build_open(config, restarting=)` is our OPEN: a multiprotocol capability per configured
family, route refresh, extended message (RFC 8654) when configured, 4-octet AS (always), and
graceful restart (RFC 4724) when configured: the restart time, the forwarding bit for every
family (unless `forwarding` is false), and the R bit when `restarting`.

`check_open(config, opened)` raises `BGPError` (an OPEN Message Error NOTIFICATION) for what
the codec cannot judge alone: Bad Peer AS (2/2), an iBGP peer with our BGP Identifier (2/3,
RFC 6286 §2.2), no common address family (2/7, RFC 5492 §5, our MP capabilities as data).
Hold times of 1 and 2 seconds are refused by the decoder already (2/6).

`negotiate(local, remote, ebgp=)` combines both OPENs into `Negotiated`: the decode (`rx`) and
encode (`tx`) contexts, families, hold time, route refresh, the peer's graceful restart
capability. ADD-PATH is directional (RFC 7911 §4): we decode path identifiers for a family when
we said "receive" and the peer said "send", and encode them when the reverse holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from speaker.bgp.session.config import SessionConfig
from speaker.bgp.wire.capabilities import (
    ADD_PATH_RECEIVE,
    ADD_PATH_SEND,
    GR_FORWARDING,
    GR_RESTART,
    AddPathCapability,
    Capability,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    FourOctetASCapability,
    GracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
)
from speaker.bgp.wire.context import IPV4_UNICAST, DecodeContext, Family, family_name
from speaker.bgp.wire.errors import BGPError, ErrorCode, OPENMessageErrorSubcode
from speaker.bgp.wire.messages import Open


def build_open(config: SessionConfig, *, restarting: bool = False, forwarding: bool = True) -> Open:
    """Our OPEN for `config`; `restarting` sets the graceful restart R bit (RFC 4724 §3) and
    `forwarding` the F bit of every family: whether we kept the forwarding state of the routes
    we received across the restart (the runtime knows; docs/route-import.md)."""
    caps: list[Capability] = [
        MultiprotocolCapability(afi=a, safi=s) for a, s in sorted(config.families)
    ]
    caps.append(RouteRefreshCapability())
    if config.extended_message:
        caps.append(ExtendedMessageCapability())
    if config.graceful_restart:
        f_bit = GR_FORWARDING if forwarding else 0
        families = tuple((a, s, f_bit) for a, s in sorted(config.families))
        flags = GR_RESTART if restarting else 0
        caps.append(
            GracefulRestartCapability(
                flags=flags, restart_time=config.restart_time, families=families
            )
        )
    return Open.create(
        asn=config.local_asn,
        hold_time=config.hold_time,
        bgp_id=config.router_id,
        capabilities=tuple(caps),
    )


def families_of(message: Open) -> frozenset[Family]:
    """The families an OPEN offers: its multiprotocol capabilities, else IPv4 unicast (RFC 4760
    §8: without any multiprotocol capability, IPv4 unicast is implied)."""
    mp = {(c.afi, c.safi) for c in message.capabilities if isinstance(c, MultiprotocolCapability)}
    return frozenset(mp) if mp else frozenset({IPV4_UNICAST})


def check_open(config: SessionConfig, opened: Open) -> None:
    """Raise the OPEN Message Error for a peer OPEN this session cannot accept."""
    if opened.asn != config.peer_asn:
        raise BGPError(
            ErrorCode.OPENMessageError,
            OPENMessageErrorSubcode.BadPeerAS,
            reason=f"peer AS {opened.asn}, expected {config.peer_asn}",
        )
    if not config.ebgp and opened.bgp_id == config.router_id:
        # RFC 6286 §2.2: unique within the AS.
        raise BGPError(
            ErrorCode.OPENMessageError,
            OPENMessageErrorSubcode.BadBGPIdentifier,
            reason="iBGP peer uses our BGP identifier",
        )
    if not families_of(opened) & config.families:
        # RFC 5492 §5: data = the capabilities we require and the peer lacks.
        required = b"".join(
            MultiprotocolCapability(afi=a, safi=s).encode() for a, s in sorted(config.families)
        )
        names = ", ".join(family_name(f) for f in sorted(config.families))
        raise BGPError(
            ErrorCode.OPENMessageError,
            OPENMessageErrorSubcode.UnsupportedCapability,
            required,
            reason=f"no common address family (we need one of {names})",
        )


def _add_path(message: Open) -> dict[Family, int]:
    out: dict[Family, int] = {}
    for cap in message.capabilities:
        if isinstance(cap, AddPathCapability):
            for afi, safi, mode in cap.entries:
                out[(afi, safi)] = mode
    return out


def _has(message: Open, cls: type) -> bool:
    return any(isinstance(c, cls) for c in message.capabilities)


def graceful_restart_of(message: Open) -> GracefulRestartCapability | None:
    return next((c for c in message.capabilities if isinstance(c, GracefulRestartCapability)), None)


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
    """Combine our OPEN and the peer's (`check_open` has accepted the peer's)."""
    four = _has(local, FourOctetASCapability) and _has(remote, FourOctetASCapability)
    extended = _has(local, ExtendedMessageCapability) and _has(remote, ExtendedMessageCapability)
    families = families_of(local) & families_of(remote)
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
    return Negotiated(
        rx=DecodeContext(four_octet_as=four, add_path=rx, extended_message=extended, ebgp=ebgp),
        tx=DecodeContext(four_octet_as=four, add_path=tx, extended_message=extended, ebgp=ebgp),
        families=families,
        hold_time=min(local.hold_time, remote.hold_time),
        route_refresh=_has(local, RouteRefreshCapability) and _has(remote, RouteRefreshCapability),
        enhanced_route_refresh=_has(local, EnhancedRouteRefreshCapability)
        and _has(remote, EnhancedRouteRefreshCapability),
        peer_graceful_restart=graceful_restart_of(remote),
    )


__all__ = [
    "Negotiated",
    "build_open",
    "check_open",
    "families_of",
    "graceful_restart_of",
    "negotiate",
]
