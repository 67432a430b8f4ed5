"""Plain values the lab speaks in: what a lab router peers with, and a route as it saw it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPV4_UNICAST = "ipv4-unicast"
IPV6_UNICAST = "ipv6-unicast"
FAMILIES = (IPV4_UNICAST, IPV6_UNICAST)

# Session states as RFC 4271 names them; every daemon's own spelling is mapped onto these.
IDLE = "Idle"
CONNECT = "Connect"
ACTIVE = "Active"
OPEN_SENT = "OpenSent"
OPEN_CONFIRM = "OpenConfirm"
ESTABLISHED = "Established"
STATES = (IDLE, CONNECT, ACTIVE, OPEN_SENT, OPEN_CONFIRM, ESTABLISHED)


class LabError(RuntimeError):
    """A lab daemon did not do what was asked; the message carries the daemon's log tail."""


# BFD session states as RFC 5880 names them (each daemon's spelling is mapped onto these).
BFD_STATES = ("AdminDown", "Down", "Init", "Up")


@dataclass(frozen=True, slots=True, kw_only=True)
class BfdTimers:
    """BFD for a lab router's peer: desired min TX and required min RX (ms), multiplier."""

    min_tx: int = 300
    min_rx: int = 300
    multiplier: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerSpec:
    """One BGP neighbour of a lab router, seen from the lab router's side.

    `address`/`port` are where the neighbour is (where the lab router connects to);
    `asn` is the neighbour's AS. `passive` makes the lab router only accept.
    """

    name: str
    address: str
    asn: int
    port: int = 179
    passive: bool = False
    password: str | None = None
    hold_time: int = 90
    graceful_restart: bool = False
    restart_time: int = 120
    families: tuple[str, ...] = (IPV4_UNICAST,)
    # TTL for the lab router's packets; loopback eBGP needs multihop in BIRD and FRR.
    multihop: int = 255
    ttl_security: bool = False
    bfd: BfdTimers | None = None  # BFD on this session (BIRD; FRR with bfdd, in a netns only)
    route_reflector_client: bool = False  # iBGP: the lab router reflects routes for it (RFC 4456)

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.address)
        if not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"peer name {self.name!r}: letters, digits, - and _ only")
        unknown = set(self.families) - set(FAMILIES)
        if unknown or not self.families:
            raise ValueError(f"peer {self.name}: families must be some of {FAMILIES}")
        if self.hold_time != 0 and self.hold_time < 3:
            raise ValueError(f"peer {self.name}: hold time must be 0 or >= 3")

    @property
    def keepalive_time(self) -> int:
        return max(self.hold_time // 3, 1) if self.hold_time else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """A route as a lab router holds it, normalised across daemons.

    Communities are "a:b" strings and large communities "a:b:c", both sorted, so that two
    routes compare equal whichever daemon reported them. `local_pref` is what the peer sent
    where the daemon can tell: GoBGP shows the Adj-RIB-In as received (so it reveals a
    LOCAL_PREF sent over eBGP); BIRD and FRR ignore LOCAL_PREF from eBGP peers, as RFC 4271
    §5.1.5 says, and report None there.
    """

    prefix: str
    next_hop: str | None
    as_path: tuple[int, ...] = ()
    med: int | None = None
    local_pref: int | None = None
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    origin: str | None = None
    originator_id: str | None = None  # ORIGINATOR_ID (RFC 4456), when the route carries one
    cluster_list: tuple[str, ...] = ()  # CLUSTER_LIST, first (most recent) cluster first

    @property
    def family(self) -> str:
        return IPV6_UNICAST if ":" in self.prefix else IPV4_UNICAST


ORIGINS = ("igp", "egp", "incomplete")


@dataclass(slots=True, kw_only=True)
class Origination:
    """A route a lab router originates towards its peers. `as_path`: ASNs the route starts
    with (the router adds its own in front on eBGP); `origin`: igp, egp or incomplete (None:
    the daemon's default); `originator_id` / `cluster_list`: as a route reflector would set
    them (BIRD only, iBGP)."""

    prefix: str
    next_hop: str
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    med: int | None = None
    local_pref: int | None = None
    as_path: tuple[int, ...] = ()
    origin: str | None = None
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.origin is not None and self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, not {self.origin!r}")

    @property
    def family(self) -> str:
        return IPV6_UNICAST if ":" in self.prefix else IPV4_UNICAST


def family_of(prefix_or_address: str) -> str:
    return IPV6_UNICAST if ":" in prefix_or_address else IPV4_UNICAST


def community_str(value: int) -> str:
    """A 32-bit RFC 1997 community as "high:low"."""
    return f"{value >> 16}:{value & 0xFFFF}"
