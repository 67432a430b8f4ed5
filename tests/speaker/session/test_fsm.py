"""The sans-IO FSM, two sessions back to back in memory: no sockets, a hand-driven clock."""

from __future__ import annotations

from speaker.bgp.rib.adj_rib_out import PathAttributes
from speaker.bgp.session.fsm import (
    IdleReason,
    RouteRefreshServed,
    Send,
    Session,
    SessionConfig,
    State,
    collision_keeps_outgoing,
)
from speaker.bgp.session.inbound import Outcome
from speaker.bgp.wire.attributes import AsPathAttribute, OriginAttribute
from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST, Family
from speaker.bgp.wire.errors import CeaseSubcode, ErrorCode, OPENMessageErrorSubcode
from speaker.bgp.wire.messages import Keepalive, Notification, Open, RouteRefresh, Update
from speaker.bgp.wire.nlri import Prefix, prefix_from_int
from tests.speaker.session.back_to_back import Wire

V4 = frozenset({IPV4_UNICAST})
A_ID, B_ID = 0x0A000001, 0x0A000002


def config(local: int, peer: int, rid: int, **kw: object) -> SessionConfig:
    base: dict[str, object] = {
        "local_asn": local,
        "peer_asn": peer,
        "router_id": rid,
        "families": V4,
        "hold_time": 9,
        "keepalive_time": 3,
        "connect_retry_time": 1.0,
    }
    base.update(kw)
    return SessionConfig(**base)  # type: ignore[arg-type]


def pair(
    a_kw: dict[str, object] | None = None, b_kw: dict[str, object] | None = None
) -> tuple[Wire, Session, Session]:
    a = Session(config(65001, 65002, A_ID, **(a_kw or {})), name="a", rng=lambda: 0.0)
    b_kw = {"passive": True, **(b_kw or {})}
    b = Session(config(65002, 65001, B_ID, **b_kw), name="b", rng=lambda: 0.0)
    wire = Wire()
    wire.pair(a, b)
    wire.feed(b, b.start(wire.now))
    wire.feed(a, a.start(wire.now))
    return wire, a, b


def hosts(n: int, base: int = 0x0A000000) -> list[Prefix]:
    return [prefix_from_int(base + i, 32, 32) for i in range(n)]


def table(
    prefixes: list[Prefix], attrs: PathAttributes
) -> dict[Family, dict[Prefix, PathAttributes]]:
    return {IPV4_UNICAST: dict.fromkeys(prefixes, attrs)}


ATTRS = PathAttributes((OriginAttribute(0), AsPathAttribute.sequence(65001)))
ATTRS2 = PathAttributes((OriginAttribute(0), AsPathAttribute.sequence(65001, 65001)))


def notifications(wire: Wire, s: Session) -> list[Notification]:
    return [m for m in wire.messages(s) if isinstance(m, Notification)]


def test_sessions_establish_and_negotiate_the_smaller_hold_time() -> None:
    wire, a, b = pair(b_kw={"hold_time": 30, "keepalive_time": 10})
    assert (a.state, b.state) == (State.Established, State.Established)
    neg = a.negotiated
    assert neg is not None and neg.hold_time == 9 and neg.families == V4
    assert [c.new for s, c in wire.changes if s is a] == [
        State.Connect,
        State.OpenSent,
        State.OpenConfirm,
        State.Established,
    ]
    # b was passive: Active, then straight to OpenSent on the incoming connection.
    assert next(c.new for s, c in wire.changes if s is b) == State.Active


def test_keepalives_keep_the_session_up_and_hold_timer_fires_when_the_peer_freezes() -> None:
    wire, a, b = pair()
    wire.advance(60, a, b)
    assert (a.state, b.state) == (State.Established, State.Established)
    assert sum(isinstance(m, Keepalive) for m in wire.messages(a)) >= 60 // 3
    wire.frozen.add(id(b))
    wire.advance(10, a, b)
    idle = [c for s, c in wire.changes if s is a and c.new is State.Idle]
    assert [c.reason for c in idle] == [IdleReason.HoldTimerExpired]
    assert a.state is State.Connect and a.last_reason is IdleReason.HoldTimerExpired
    assert [(n.code, n.subcode) for n in notifications(wire, a)] == [
        (ErrorCode.HoldTimerExpired, 0)
    ]
    # The frozen peer thaws, reads the NOTIFICATION and does not answer it.
    wire.thaw(b)
    assert b.last_reason is IdleReason.NotificationReceived
    assert "HoldTimerExpired" in b.last_error
    assert notifications(wire, b) == []
    # a restarts by itself after the back-off and the session comes back.
    wire.advance(5, a, b)
    assert (a.state, b.state) == (State.Established, State.Established)


def test_hold_time_zero_means_no_keepalives_and_no_hold_timer() -> None:
    wire, a, b = pair(a_kw={"hold_time": 0, "keepalive_time": 0})
    assert a.state is State.Established and a.next_deadline() is None and b.next_deadline() is None
    before = len(wire.sent)
    wire.advance(1000, a, b)
    assert len(wire.sent) == before and a.state is State.Established


def test_initial_table_then_end_of_rib_then_only_the_difference() -> None:
    wire, a, b = pair()
    wire.feed(a, a.set_routes(table(hosts(3000), ATTRS)))
    assert a.state is State.Established
    assert b.rib_in.count(IPV4_UNICAST) == 3000
    # a fresh session sends the whole table, packed, then End-of-RIB.
    wire3 = Wire()
    a3 = Session(config(65001, 65002, A_ID, extended_message=False), rng=lambda: 0.0)
    b3 = Session(config(65002, 65001, B_ID, passive=True), rng=lambda: 0.0)
    wire3.pair(a3, b3)
    a3.set_routes(table(hosts(3000), ATTRS))
    wire3.feed(b3, b3.start(0))
    wire3.feed(a3, a3.start(0))
    updates = [m for m in wire3.messages(a3) if isinstance(m, Update)]
    assert updates[-1].end_of_rib == IPV4_UNICAST
    assert sum(len(u.nlri) for u in updates) == 3000
    assert len(updates) - 1 == -(-3000 // 810)  # packed: 810 /32s per 4096-octet UPDATE
    assert b3.eor_received == {IPV4_UNICAST} and b3.rib_in.count(IPV4_UNICAST) == 3000

    # change: withdraw 100, add 50, re-attribute 10; exactly that goes on the wire.
    wire.sent.clear()
    new = table(hosts(2900)[10:], ATTRS)[IPV4_UNICAST]
    new.update(dict.fromkeys(hosts(10), ATTRS2))
    new.update(dict.fromkeys(hosts(50, 0x0B000000), ATTRS))
    wire.feed(a, a.set_routes({IPV4_UNICAST: new}))
    updates = [m for m in wire.messages(a) if isinstance(m, Update)]
    assert sorted(p for u in updates for p in u.withdrawn) == sorted(hosts(3000)[2900:])
    announced = [p for u in updates for p in u.nlri]
    assert sorted(announced) == sorted(hosts(10) + hosts(50, 0x0B000000))
    assert b.rib_in.routes[IPV4_UNICAST].keys() == new.keys()
    assert b.rib_in.routes[IPV4_UNICAST][hosts(1)[0]].attributes[1] == ATTRS2.attributes[1]
    # the same state again sends nothing.
    wire.sent.clear()
    wire.feed(a, a.set_routes({IPV4_UNICAST: dict(new)}))
    assert wire.sent == []


def test_routes_go_only_to_negotiated_families() -> None:
    wire, a, b = pair(a_kw={"families": frozenset({IPV4_UNICAST, IPV6_UNICAST})})
    v6 = prefix_from_int(0x20010DB8 << 96, 64, 128)
    nh6 = bytes.fromhex("20010db8000000000000000000000001")
    wire.feed(a, a.set_routes({
        IPV4_UNICAST: dict.fromkeys(hosts(2), ATTRS),
        IPV6_UNICAST: {v6: PathAttributes(ATTRS.attributes, nh6)},
    }))  # fmt: skip
    assert a.families == V4
    assert b.rib_in.count(IPV4_UNICAST) == 2 and b.rib_in.count(IPV6_UNICAST) == 0


def test_ipv6_over_ipv4_session_with_mp_bgp() -> None:
    both = frozenset({IPV4_UNICAST, IPV6_UNICAST})
    wire, a, b = pair(a_kw={"families": both}, b_kw={"families": both})
    v6 = prefix_from_int(0x20010DB8 << 96, 64, 128)
    wire.feed(a, a.set_routes({IPV6_UNICAST: {v6: ATTRS}}))
    path = b.rib_in.routes[IPV6_UNICAST][v6]
    assert path.next_hop == bytes(10) + b"\xff\xff\x7f\x00\x00\x01"  # IPv4-mapped next-hop self
    assert b.eor_received == {IPV4_UNICAST, IPV6_UNICAST}


def test_route_refresh_resends_the_family() -> None:
    wire, a, b = pair()
    wire.feed(a, a.set_routes(table(hosts(5), ATTRS)))
    wire.sent.clear()
    wire.feed(b, b.request_refresh(IPV4_UNICAST))
    assert [type(m) for m in wire.messages(b)] == [RouteRefresh]
    assert sorted(p for m in wire.messages(a) if isinstance(m, Update) for p in m.nlri) == hosts(5)
    assert a.refreshes_served == 1
    # A family that was not negotiated is ignored (RFC 2918 §4).
    wire.sent.clear()
    conn = b.established
    assert conn is not None
    wire.feed(b, [Send(conn.id, RouteRefresh(afi=2, safi=1).encode())])
    assert [type(m) for m in wire.messages(a)] == [] and a.refreshes_served == 1


def test_route_refresh_served_names_the_family_and_what_was_resent_for_it() -> None:
    both = frozenset({IPV4_UNICAST, IPV6_UNICAST})
    wire, a, b = pair(a_kw={"families": both}, b_kw={"families": both})
    v6 = prefix_from_int(0x20010DB8 << 96, 64, 128)
    wire.feed(
        a, a.set_routes({IPV4_UNICAST: dict.fromkeys(hosts(5), ATTRS), IPV6_UNICAST: {v6: ATTRS}})
    )
    wire.sent.clear()
    wire.feed(b, b.request_refresh(IPV6_UNICAST))
    served = [e for e in wire.of(a) if isinstance(e, RouteRefreshServed)]
    assert served == [RouteRefreshServed(IPV6_UNICAST, 1)]
    resent = [m for m in wire.messages(a) if isinstance(m, Update)]
    assert [m.mp_reach.nlri for m in resent if m.mp_reach] == [(v6,)] and len(resent) == 1


def test_bad_peer_as_is_rejected_and_the_notification_is_not_answered() -> None:
    wire, a, b = pair(b_kw={"peer_asn": 65099})
    assert b.last_reason is IdleReason.OpenRejected and "BadPeerAS" in b.last_error
    assert [(n.code, n.subcode) for n in notifications(wire, b)] == [
        (ErrorCode.OPENMessageError, OPENMessageErrorSubcode.BadPeerAS)
    ]
    assert a.last_reason is IdleReason.NotificationReceived and "BadPeerAS" in a.last_error
    assert notifications(wire, a) == []


def test_ibgp_peer_with_our_identifier_is_rejected() -> None:
    a = Session(config(65001, 65001, A_ID), rng=lambda: 0.0)
    b = Session(config(65001, 65001, A_ID, passive=True), rng=lambda: 0.0)
    wire = Wire()
    wire.pair(a, b)
    wire.feed(b, b.start(0))
    wire.feed(a, a.start(0))
    codes = {(n.code, n.subcode) for s in (a, b) for n in notifications(wire, s)}
    assert codes == {(ErrorCode.OPENMessageError, OPENMessageErrorSubcode.BadBGPIdentifier)}


def test_no_common_family_is_unsupported_capability() -> None:
    wire, a, b = pair(b_kw={"families": frozenset({IPV6_UNICAST})})
    # Both read the other's OPEN in OpenSent, so both refuse, each naming what it needs.
    (from_a,) = notifications(wire, a)
    (from_b,) = notifications(wire, b)
    unsupported = (ErrorCode.OPENMessageError, OPENMessageErrorSubcode.UnsupportedCapability)
    assert (from_a.code, from_a.subcode) == (from_b.code, from_b.subcode) == unsupported
    assert from_a.data == bytes.fromhex("010400010001")  # MP capability, IPv4 unicast
    assert from_b.data == bytes.fromhex("010400020001")  # MP capability, IPv6 unicast
    assert a.state is not State.Established and a.last_reason is not None


def test_unexpected_message_in_open_sent_is_an_fsm_error() -> None:
    b = Session(config(65002, 65001, B_ID, passive=True), rng=lambda: 0.0)
    b.start(0)
    conn, _ = b.accept(0, local_address=b"\x7f\0\0\2")
    assert conn is not None
    events = b.data_received(conn, Keepalive().encode(), 0)
    sent = [e for e in events if hasattr(e, "data")]
    assert sent[-1].data[19:22] == bytes((5, 1, 4))  # FSM error, OpenSent, data = type 4
    assert b.last_reason is IdleReason.FiniteStateMachineError


def test_max_prefixes_over_the_limit_is_cease_1() -> None:
    wire, a, b = pair(b_kw={"max_prefixes": 100})
    wire.feed(a, a.set_routes(table(hosts(100), ATTRS)))
    assert b.state is State.Established
    wire.feed(a, a.set_routes(table(hosts(101), ATTRS)))
    assert b.last_reason is IdleReason.MaxPrefixesExceeded
    (n,) = notifications(wire, b)
    assert (n.code, n.subcode, n.data) == (6, 1, bytes.fromhex("000101") + (100).to_bytes(4, "big"))
    assert len(b.rib_in) == 0


def test_administrative_shutdown_carries_the_message_and_stays_down() -> None:
    wire, a, b = pair()
    wire.feed(a, a.stop(wire.now, message="maintenance"))
    assert a.state is State.Idle and a.last_reason is IdleReason.AdministrativeShutdown
    assert "maintenance" in b.last_error and b.last_reason is IdleReason.NotificationReceived
    wire.advance(100, a, b)
    assert a.state is State.Idle and a.next_deadline() is None


def test_unreachable_peer_is_retried_with_backoff() -> None:
    a = Session(config(65001, 65002, A_ID), rng=lambda: 1.0)
    b = Session(config(65002, 65001, B_ID, passive=True), rng=lambda: 0.0)
    wire = Wire()
    wire.pair(a, b)
    wire.refuse.add(id(b))
    wire.feed(a, a.start(0))
    assert a.state.name == "Active"
    times = []
    for _ in range(5):
        deadline = a.next_deadline()
        assert deadline is not None
        times.append(deadline)
        wire.advance(deadline - wire.now, a)
    gaps = [round(t2 - t1, 3) for t1, t2 in zip([0.0, *times], times, strict=False)]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    wire.refuse.clear()
    wire.feed(b, b.start(wire.now))
    wire.advance(8, a, b)
    assert a.state == State.Established


def test_collision_rule() -> None:
    assert collision_keeps_outgoing(local_id=2, remote_id=1, local_asn=1, remote_asn=9)
    assert not collision_keeps_outgoing(local_id=1, remote_id=2, local_asn=9, remote_asn=1)
    # RFC 6286: equal identifiers, the larger AS keeps the connection it opened.
    assert collision_keeps_outgoing(local_id=5, remote_id=5, local_asn=65002, remote_asn=65001)
    assert not collision_keeps_outgoing(local_id=5, remote_id=5, local_asn=65001, remote_asn=65002)


def _simultaneous(a_id: int, b_id: int) -> tuple[Wire, Session, Session]:
    """Both sides connect at once: each has an outgoing and an incoming connection."""
    a = Session(config(65001, 65002, a_id), name="a", rng=lambda: 0.0)
    b = Session(config(65002, 65001, b_id), name="b", rng=lambda: 0.0)
    wire = Wire()
    wire.pair(a, b)
    a_events = a.start(0)
    b_events = b.start(0)
    wire._queue.extend([(a, e) for e in a_events] + [(b, e) for e in b_events])
    wire.run()
    return wire, a, b


def test_collision_keeps_the_connection_opened_by_the_higher_identifier() -> None:
    for a_id, b_id, a_wins in [(A_ID, B_ID, False), (B_ID, A_ID, True), (A_ID, A_ID, False)]:
        wire, a, b = _simultaneous(a_id, b_id)
        assert (a.state, b.state) == (State.Established, State.Established)
        ceases = [n for s in (a, b) for n in notifications(wire, s)]
        assert ceases and all(
            (n.code, n.subcode) == (ErrorCode.Cease, CeaseSubcode.ConnectionCollisionResolution)
            for n in ceases
        )
        conn = a.established
        assert conn is not None and conn.outgoing is a_wins
        assert len(a.connection_ids()) == 1 and len(b.connection_ids()) == 1


def test_open_carries_families_route_refresh_and_4_octet_as() -> None:
    wire, a, _b = pair(a_kw={"local_asn": 4200000001}, b_kw={"peer_asn": 4200000001})
    assert a.state is State.Established
    opened = next(m for m in wire.messages(a) if isinstance(m, Open))
    assert opened.my_as == 23456 and opened.asn == 4200000001


def test_ebgp_path_not_starting_with_the_peer_as_is_treated_as_withdraw() -> None:
    wire, a, b = pair()
    wire.feed(a, a.set_routes(table(hosts(3), ATTRS)))
    assert b.rib_in.count(IPV4_UNICAST) == 3
    # The same prefixes again, now with a path whose first AS is not a's: withdrawn at b.
    foreign = PathAttributes((OriginAttribute(0), AsPathAttribute.sequence(65099, 65001)))
    wire.feed(a, a.set_routes(table(hosts(3)[:2], foreign)))
    assert b.rib_in.count(IPV4_UNICAST) == 0  # two treated as withdraw, one withdrawn
    assert b.inbound.counts.updates[Outcome.TreatAsWithdraw] == 1 and b.state is State.Established


def test_hold_time_of_one_or_two_seconds_is_unacceptable() -> None:
    b = Session(config(65002, 65001, B_ID, passive=True), rng=lambda: 0.0)
    b.start(0)
    conn, _ = b.accept(0, local_address=b"\x7f\0\0\2")
    assert conn is not None
    bad = Open.create(asn=65001, hold_time=3, bgp_id=A_ID).encode()
    bad = bad[:22] + (2).to_bytes(2, "big") + bad[24:]  # hold time field = 2
    events = b.data_received(conn, bad, 0)
    sent = [e.data for e in events if isinstance(e, Send)]
    assert sent[-1][19:21] == bytes((ErrorCode.OPENMessageError, 6))  # Unacceptable Hold Time
    assert b.last_reason is IdleReason.OpenRejected and b.state == State.Idle
