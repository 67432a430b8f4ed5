"""Known answers from real daemons: every message BIRD 2.0.12, GoBGP 3.10.0 and FRR 8.4.4 sent
to a capture peer (tests/data/bgp-captures/, made by capture.py there; README.md says how).

Each message must decode, carry the values capture.py configured (repeated below as the known
answers), and re-encode to the captured bytes. Where a daemon encodes something validly but not
as we do, the round trip compares with the bytes rewritten to our form by a helper here that
changes only that, and a test pins exactly which daemon does what, so neither the round trip nor
the list of exceptions can drift silently.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest

from speaker.api.communities import community_value, large_community_value
from speaker.bgp.wire.attributes import (
    AS_SEQUENCE,
    EXTENDED_LENGTH,
    AsPathAttribute,
    CommunitiesAttribute,
    LargeCommunitiesAttribute,
    LocalPrefAttribute,
    MpReachNlriAttribute,
    MpUnreachNlriAttribute,
    MultiExitDiscAttribute,
    NextHopAttribute,
    Origin,
    OriginAttribute,
)
from speaker.bgp.wire.capabilities import (
    AddPathCapability,
    Capability,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    FourOctetASCapability,
    FQDNCapability,
    GracefulRestartCapability,
    LongLivedGracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
    UnknownCapability,
)
from speaker.bgp.wire.context import AFI_IPV4, AS_TRANS, IPV4_UNICAST, IPV6_UNICAST
from speaker.bgp.wire.errors import CeaseSubcode, ErrorCode
from speaker.bgp.wire.framing import Framer
from speaker.bgp.wire.messages import Keepalive, Message, Notification, Open, Update, decode_all
from speaker.bgp.wire.nlri import Prefix

CAPTURES = Path(__file__).resolve().parents[2] / "data" / "bgp-captures"
DAEMONS = ("bird", "gobgp", "frr")

# What capture.py configured.
DAEMON_ASN = 4200000001
DAEMON_ROUTER_ID = "198.51.100.1"
HOLD_TIME = 90
NEXT_HOP4 = "192.0.2.10"
NEXT_HOP6 = "2001:db8::10"
ROUTES: dict[str, tuple[tuple[str, ...], tuple[str, ...], int | None]] = {
    "10.1.0.0/24": (("65001:100", "65001:7"), ("4200000001:1:2",), 42),
    "10.1.1.0/24": ((), (), None),
    "10.1.2.0/24": ((), (), None),
    "2001:db8:1::/48": (("65001:6",), ("4200000001:6:6",), 6),
    "2001:db8:2::/48": ((), (), None),
}
WITHDRAWN = {"10.1.2.0/24", "2001:db8:2::/48"}
SHUTDOWN_MESSAGE = "kubgp capture: planned maintenance"

# Capabilities exactly as each daemon sent them, in its order.
GR_V4_V6 = ((1, 1, 0), (2, 1, 0))
CAPABILITIES: dict[str, tuple[Capability, ...]] = {
    "bird": (
        MultiprotocolCapability(1, 1),
        MultiprotocolCapability(2, 1),
        RouteRefreshCapability(),
        GracefulRestartCapability(flags=0, restart_time=120, families=GR_V4_V6),
        FourOctetASCapability(DAEMON_ASN),
        EnhancedRouteRefreshCapability(),
    ),
    "gobgp": (
        RouteRefreshCapability(),
        FQDNCapability("vm", ""),  # the capture machine's hostname: GoBGP sends it unasked
        MultiprotocolCapability(1, 1),
        MultiprotocolCapability(2, 1),
        FourOctetASCapability(DAEMON_ASN),
        GracefulRestartCapability(flags=0, restart_time=120, families=GR_V4_V6),
        ExtendedNextHopCapability(((1, 1, 2),)),  # IPv4 unicast with an IPv6 next hop
    ),
    "frr": (
        MultiprotocolCapability(1, 1),
        MultiprotocolCapability(2, 1),
        UnknownCapability(128, b""),  # the pre-standard (Cisco) route refresh code
        RouteRefreshCapability(),
        EnhancedRouteRefreshCapability(),
        FourOctetASCapability(DAEMON_ASN),
        ExtendedMessageCapability(),
        AddPathCapability(((1, 1, 1), (2, 1, 1))),  # receive, both families
        FQDNCapability("frr", ""),  # FRR's configured hostname (the lab names it "frr")
        # R and N bits (RFC 4724 restarting, RFC 8538 notification): FRR sets R on start-up.
        GracefulRestartCapability(flags=0xC, restart_time=120, families=GR_V4_V6),
        # LLGR with F set and a stale time of 0, both families (sent though unconfigured).
        LongLivedGracefulRestartCapability(((1, 1, 0x80, 0), (2, 1, 0x80, 0))),
    ),
}

# FRR's `network` statement gives a route MED 0 when no route-map sets one; the others send none.
UNSET_MED = {"bird": None, "gobgp": None, "frr": 0}

# How each daemon's last message ends the session.
NOTIFICATIONS = {
    "bird": Notification(code=ErrorCode.Cease, subcode=CeaseSubcode.AdministrativeShutdown),
    "gobgp": Notification(code=ErrorCode.Cease, subcode=CeaseSubcode.PeerDeConfigured),
    # Administrative shutdown of the neighbour with an RFC 8203 communication (see capture.py).
    "frr": Notification.shutdown(CeaseSubcode.AdministrativeShutdown, SHUTDOWN_MESSAGE),
}

# Valid encodings that differ from ours (RFC 4271 §4.3 lets a sender set Extended Length on a
# short attribute; RFC 5492 §4 lets it put several capabilities in one optional parameter).
# We set Extended Length only when the value needs it, and send one capability per parameter.
EXTENDED_LENGTH_ON_SHORT = {
    "bird": {MpReachNlriAttribute.TYPE, MpUnreachNlriAttribute.TYPE},
    "gobgp": set(),
    "frr": {AsPathAttribute.TYPE, MpReachNlriAttribute.TYPE, MpUnreachNlriAttribute.TYPE},
}
CAPABILITIES_IN_ONE_PARAMETER = {"bird": True, "gobgp": True, "frr": False}


@dataclass(frozen=True)
class Captured:
    label: str
    raw: bytes


def load(daemon: str) -> list[Captured]:
    """The .hex file: comment lines, each message's line after the comment naming it."""
    out: list[Captured] = []
    label = ""
    for line in (CAPTURES / f"{daemon}.hex").read_text().splitlines():
        if line.startswith("#"):
            label = line[1:].strip()
        elif line.strip():
            out.append(Captured(label, bytes.fromhex(line)))
    return out


def decoded(daemon: str) -> list[Message]:
    out = []
    for captured in load(daemon):
        (message,) = decode_all(captured.raw)
        out.append(message)
    return out


def updates(daemon: str) -> list[Update]:
    return [m for m in decoded(daemon) if isinstance(m, Update)]


# -- rewriting a capture into our encoding, changing nothing else ----------------------------


def short_attribute_lengths(raw: bytes) -> tuple[bytes, set[int]]:
    """The UPDATE with Extended Length cleared on attributes shorter than 256 octets, and the
    type codes that had it."""
    body = raw[19:]
    w_len = int.from_bytes(body[:2], "big")
    a_at = 2 + w_len
    a_len = int.from_bytes(body[a_at : a_at + 2], "big")
    attrs, nlri = body[a_at + 2 : a_at + 2 + a_len], body[a_at + 2 + a_len :]
    out = b""
    types: set[int] = set()
    i = 0
    while i < len(attrs):
        start = i
        flags, code = attrs[i], attrs[i + 1]
        if flags & EXTENDED_LENGTH:
            length = int.from_bytes(attrs[i + 2 : i + 4], "big")
            value = attrs[i + 4 : i + 4 + length]
            i += 4 + length
        else:
            length = attrs[i + 2]
            value = attrs[i + 3 : i + 3 + length]
            i += 3 + length
        if flags & EXTENDED_LENGTH and length < 256:
            types.add(code)
            out += bytes((flags & ~EXTENDED_LENGTH, code, length)) + value
        else:
            out += attrs[start:i]
    body = body[:a_at] + len(out).to_bytes(2, "big") + out + nlri
    return raw[:16] + (19 + len(body)).to_bytes(2, "big") + raw[18:19] + body, types


def one_capability_per_parameter(raw: bytes) -> tuple[bytes, bool]:
    """The OPEN with each capability in its own optional parameter, and whether any parameter
    held more than one."""
    head, params = raw[19:28], raw[29:]
    out = b""
    grouped = False
    i = 0
    while i < len(params):
        p_len = params[i + 1]
        caps = params[i + 2 : i + 2 + p_len]
        j = 0
        while j < len(caps):
            c_len = caps[j + 1]
            out += bytes((2, 2 + c_len)) + caps[j : j + 2 + c_len]
            j += 2 + c_len
        grouped |= j != 0 and caps[1] + 2 != len(caps)
        i += 2 + p_len
    body = head + bytes((len(out),)) + out
    return raw[:16] + (19 + len(body)).to_bytes(2, "big") + raw[18:19] + body, grouped


def ours(raw: bytes) -> bytes:
    if raw[18] == Open.TYPE:
        return one_capability_per_parameter(raw)[0]
    if raw[18] == Update.TYPE:
        return short_attribute_lengths(raw)[0]
    return raw


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("daemon", DAEMONS)
def test_every_captured_message_round_trips(daemon: str) -> None:
    for captured in load(daemon):
        (message,) = decode_all(captured.raw)
        # Rewritten to our form, the bytes decode to the same value ...
        assert decode_all(ours(captured.raw)) == [message], captured.label
        # ... and that is exactly what we encode.
        assert message.encode() == ours(captured.raw), captured.label


@pytest.mark.parametrize("daemon", DAEMONS)
def test_where_each_daemon_encodes_differently_from_us(daemon: str) -> None:
    extended: set[int] = set()
    grouped = False
    for captured in load(daemon):
        if captured.raw[18] == Update.TYPE:
            extended |= short_attribute_lengths(captured.raw)[1]
        elif captured.raw[18] == Open.TYPE:
            grouped |= one_capability_per_parameter(captured.raw)[1]
    assert extended == EXTENDED_LENGTH_ON_SHORT[daemon]
    assert grouped == CAPABILITIES_IN_ONE_PARAMETER[daemon]
    if not extended and not grouped:  # then the round trip above was on the bytes as captured
        assert all(decode_all(c.raw)[0].encode() == c.raw for c in load(daemon))


@pytest.mark.parametrize("daemon", DAEMONS)
def test_the_stream_frames_the_same_whole_and_byte_by_byte(daemon: str) -> None:
    stream = b"".join(c.raw for c in load(daemon))
    whole = Framer()
    whole.feed(stream)
    trickle = Framer()
    one_by_one: list[tuple[int, bytes]] = []
    for i in range(len(stream)):
        trickle.feed(stream[i : i + 1])
        one_by_one.extend(trickle)
    expected = [(c.raw[18], c.raw[19:]) for c in load(daemon)]
    assert list(whole) == expected
    assert one_by_one == expected


@pytest.mark.parametrize("daemon", DAEMONS)
def test_session_shape_open_keepalive_updates_notification(daemon: str) -> None:
    messages = decoded(daemon)
    assert isinstance(messages[0], Open)
    assert isinstance(messages[1], Keepalive)
    assert all(isinstance(m, Update | Keepalive) for m in messages[2:-1])
    assert messages[-1] == NOTIFICATIONS[daemon]


@pytest.mark.parametrize("daemon", DAEMONS)
def test_open(daemon: str) -> None:
    opened = decoded(daemon)[0]
    assert isinstance(opened, Open)
    assert opened.version == 4
    # RFC 6793 §4.1: a 4-octet AS in the capability, AS_TRANS in My Autonomous System.
    assert (opened.my_as, opened.asn) == (AS_TRANS, DAEMON_ASN)
    assert opened.hold_time == HOLD_TIME
    assert opened.bgp_id == int(ipaddress.IPv4Address(DAEMON_ROUTER_ID))
    assert opened.capabilities == CAPABILITIES[daemon]


def _text(afi: int, prefixes: tuple[Prefix, ...]) -> list[str]:
    width = 4 if afi == AFI_IPV4 else 16
    return [str(ipaddress.ip_network((p[1:].ljust(width, b"\0"), p[0]))) for p in prefixes]


@dataclass(frozen=True)
class Seen:
    """A route as an UPDATE announced it, its attributes in the form capture.py configured."""

    next_hop: str
    origin: int
    as_path: tuple[tuple[int, tuple[int, ...]], ...]
    communities: tuple[int, ...]
    large_communities: tuple[tuple[int, int, int], ...]
    med: int | None


def _announced(update: Update) -> dict[str, Seen]:
    if not update.nlri and update.mp_reach is None:
        return {}
    attrs = {type(a): a for a in update.attributes}
    assert LocalPrefAttribute not in attrs  # eBGP: never sent (RFC 4271 §5.1.5)
    origin = attrs[OriginAttribute]
    path = attrs[AsPathAttribute]
    communities = attrs.get(CommunitiesAttribute)
    large = attrs.get(LargeCommunitiesAttribute)
    med = attrs.get(MultiExitDiscAttribute)
    assert isinstance(origin, OriginAttribute) and isinstance(path, AsPathAttribute)
    assert communities is None or isinstance(communities, CommunitiesAttribute)
    assert large is None or isinstance(large, LargeCommunitiesAttribute)
    assert med is None or isinstance(med, MultiExitDiscAttribute)

    def seen(next_hop: str) -> Seen:
        return Seen(
            next_hop=next_hop,
            origin=origin.value,
            as_path=path.segments,
            # Sorted: BIRD and FRR send communities in numeric order, GoBGP as configured.
            communities=tuple(sorted(communities.values)) if communities else (),
            large_communities=tuple(sorted(large.values)) if large else (),
            med=med.value if med else None,
        )

    out: dict[str, Seen] = {}
    if update.nlri:
        next_hop = attrs[NextHopAttribute]
        assert isinstance(next_hop, NextHopAttribute)
        for prefix in _text(AFI_IPV4, update.nlri):
            out[prefix] = seen(str(ipaddress.IPv4Address(next_hop.address)))
    reach = update.mp_reach
    if reach is not None:
        assert reach.family == IPV6_UNICAST
        assert reach.next_hop_link_local is None  # an IPv4 session: the global address only
        for prefix in _text(reach.afi, reach.nlri):
            out[prefix] = seen(str(ipaddress.IPv6Address(reach.next_hop_global)))
    return out


def _expected(daemon: str, prefix: str) -> Seen:
    communities, large, med = ROUTES[prefix]
    return Seen(
        next_hop=NEXT_HOP6 if ":" in prefix else NEXT_HOP4,
        origin=Origin.IGP,
        as_path=((AS_SEQUENCE, (DAEMON_ASN,)),),  # 4-octet ASNs: both OPENs had capability 65
        communities=tuple(sorted(community_value(c) for c in communities)),
        large_communities=tuple(sorted(large_community_value(c) for c in large)),
        med=med if med is not None else UNSET_MED[daemon],
    )


@pytest.mark.parametrize("daemon", DAEMONS)
def test_every_configured_route_arrives_once_with_its_attributes(daemon: str) -> None:
    announced: dict[str, Seen] = {}
    for update in updates(daemon):
        for prefix, seen in _announced(update).items():
            assert prefix not in announced, f"{prefix} announced twice"
            announced[prefix] = seen
    assert announced == {prefix: _expected(daemon, prefix) for prefix in ROUTES}


@pytest.mark.parametrize("daemon", DAEMONS)
def test_routes_sharing_attributes_share_an_update(daemon: str) -> None:
    by_nlri = [sorted(_text(AFI_IPV4, u.nlri)) for u in updates(daemon) if u.nlri]
    assert ["10.1.1.0/24", "10.1.2.0/24"] in by_nlri


@pytest.mark.parametrize("daemon", DAEMONS)
def test_end_of_rib_follows_each_familys_routes(daemon: str) -> None:
    messages = updates(daemon)
    eors = {u.end_of_rib: i for i, u in enumerate(messages) if u.end_of_rib is not None}
    assert set(eors) == {IPV4_UNICAST, IPV6_UNICAST}
    # RFC 4724 §2: IPv4 End-of-RIB is an empty UPDATE; IPv6 a lone, empty MP_UNREACH_NLRI.
    assert messages[eors[IPV4_UNICAST]] == Update()
    assert messages[eors[IPV6_UNICAST]] == Update(
        attributes=(MpUnreachNlriAttribute(afi=2, safi=1),)
    )
    for i, update in enumerate(messages):
        for prefix in _announced(update):
            family = IPV6_UNICAST if ":" in prefix else IPV4_UNICAST
            assert i < eors[family], f"{prefix} after its End-of-RIB"


@pytest.mark.parametrize("daemon", DAEMONS)
def test_withdrawals_after_the_initial_feed(daemon: str) -> None:
    messages = updates(daemon)
    last_eor = max(i for i, u in enumerate(messages) if u.end_of_rib is not None)
    withdrawals = [u for u in messages if u.withdrawn or (u.mp_unreach and u.mp_unreach.withdrawn)]
    # IPv4 in the classic Withdrawn Routes field, IPv6 in MP_UNREACH_NLRI, nothing else in either.
    assert withdrawals == [
        Update(withdrawn=(bytes((24, 10, 1, 2)),)),
        Update(
            attributes=(
                MpUnreachNlriAttribute(
                    afi=2, safi=1, withdrawn=(bytes.fromhex("30 20010db80002"),)
                ),
            )
        ),
    ]
    assert all(messages.index(w) > last_eor for w in withdrawals)
    withdrawn = {p for w in withdrawals for p in _text(AFI_IPV4, w.withdrawn)}
    withdrawn |= {p for w in withdrawals if w.mp_unreach for p in _text(2, w.mp_unreach.withdrawn)}
    assert withdrawn == WITHDRAWN


def test_frr_shutdown_communication_rfc8203() -> None:
    notification = decoded("frr")[-1]
    assert isinstance(notification, Notification)
    assert notification.shutdown_message == SHUTDOWN_MESSAGE
