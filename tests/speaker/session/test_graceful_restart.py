"""Graceful restart (RFC 4724) in the sans-IO FSM: the capability, and the helper's stale routes."""

from __future__ import annotations

from speaker.bgp.session.fsm import Session, State
from speaker.bgp.session.open import build_open
from speaker.bgp.wire.capabilities import GR_FORWARDING, GR_RESTART, GracefulRestartCapability
from speaker.bgp.wire.context import IPV4_UNICAST
from speaker.bgp.wire.messages import Open
from tests.speaker.session.back_to_back import Wire
from tests.speaker.session.test_fsm import A_ID, ATTRS, config, hosts, pair, table

GR: dict[str, object] = {"graceful_restart": True, "restart_time": 120}


def _gr(message: Open) -> GracefulRestartCapability | None:
    return next((c for c in message.capabilities if isinstance(c, GracefulRestartCapability)), None)


def test_open_carries_restart_time_and_forwarding_bit_and_r_bit_only_after_a_restart() -> None:
    assert _gr(build_open(config(65001, 65002, A_ID))) is None
    cap = _gr(build_open(config(65001, 65002, A_ID, **GR)))
    assert cap is not None and cap.restart_time == 120 and not cap.restarting
    assert cap.families == ((1, 1, GR_FORWARDING),)
    cap = _gr(build_open(config(65001, 65002, A_ID, **GR), restarting=True))
    assert cap is not None and cap.flags == GR_RESTART


def test_r_bit_until_the_first_session_then_not_on_reconnects() -> None:
    wire, a, b = pair(a_kw=GR, b_kw=GR)
    assert a.state is State.Established
    # a is killed and a restarted speaker takes its place.
    _kill(wire, a, b)
    a2 = Session(config(65001, 65002, A_ID, **GR), name="a2", rng=lambda: 0.0, restarting=True)
    wire2 = _rewire(wire, a2, b)
    opens = [m for m in wire2.messages(a2) if isinstance(m, Open)]
    assert len(opens) == 1 and (cap := _gr(opens[0])) is not None and cap.restarting
    # The next session of the same process is not a restart.
    wire2.feed(b, b.connection_lost(b.connection_ids()[0], wire2.now))
    wire2.advance(5, a2, b)
    assert a2.state is State.Established
    opens = [m for m in wire2.messages(a2) if isinstance(m, Open)]
    assert len(opens) == 2 and (cap := _gr(opens[1])) is not None and not cap.restarting


def _kill(wire: Wire, a: Session, b: Session) -> None:
    """a's process dies: b sees its TCP connection go, a is never heard of again."""
    for conn in b.connection_ids():
        wire.feed(b, b.connection_lost(conn, wire.now))
    wire.peer_of.pop(id(a), None)


def _rewire(wire: Wire, a2: Session, b: Session) -> Wire:
    new = Wire(now=wire.now)
    new.pair(a2, b)
    new.feed(a2, a2.set_routes(a2.desired))
    new.feed(a2, a2.start(new.now))
    return new


def test_helper_keeps_routes_stale_until_end_of_rib_and_removes_what_was_not_resent() -> None:
    wire, a, b = pair(a_kw=GR, b_kw=GR)
    routes = hosts(3000)
    wire.feed(a, a.set_routes(table(routes, ATTRS)))
    assert b.rib_in.count(IPV4_UNICAST) == 3000
    _kill(wire, a, b)
    assert b.established is None and b.rib_in.count(IPV4_UNICAST) == 3000
    assert sum(len(s) for s in b.stale.values()) == 3000
    deadline = b.next_deadline()
    assert deadline is not None and deadline <= wire.now + 120
    wire.advance(30, b)
    assert b.rib_in.count(IPV4_UNICAST) == 3000  # still within the restart time
    a2 = Session(config(65001, 65002, A_ID, **GR), name="a2", rng=lambda: 0.0, restarting=True)
    a2.desired = table(routes[10:], ATTRS)
    _rewire(wire, a2, b)
    assert b.state is State.Established
    assert b.stale == {} and b.rib_in.count(IPV4_UNICAST) == 2990
    assert set(b.rib_in.routes[IPV4_UNICAST]) == set(routes[10:])


def test_helper_removes_stale_routes_after_the_restart_time() -> None:
    wire, a, b = pair(a_kw=GR, b_kw=GR)
    wire.feed(a, a.set_routes(table(hosts(100), ATTRS)))
    _kill(wire, a, b)
    wire.advance(119, b)
    assert b.rib_in.count(IPV4_UNICAST) == 100
    wire.advance(2, b)
    assert b.rib_in.count(IPV4_UNICAST) == 0 and b.stale == {}


def test_peer_back_without_forwarding_state_or_without_gr_flushes_at_once() -> None:
    wire, a, b = pair(a_kw=GR, b_kw=GR)
    wire.feed(a, a.set_routes(table(hosts(100), ATTRS)))
    _kill(wire, a, b)
    a2 = Session(config(65001, 65002, A_ID), name="a2", rng=lambda: 0.0)  # no GR any more
    _rewire(wire, a2, b)
    assert b.state is State.Established and b.rib_in.count(IPV4_UNICAST) == 0


def test_no_helper_without_our_own_gr_or_after_a_notification() -> None:
    wire, a, b = pair(a_kw=GR)  # b does not do graceful restart
    wire.feed(a, a.set_routes(table(hosts(100), ATTRS)))
    _kill(wire, a, b)
    assert b.rib_in.count(IPV4_UNICAST) == 0
    wire, a, b = pair(a_kw=GR, b_kw=GR)
    wire.feed(a, a.set_routes(table(hosts(100), ATTRS)))
    wire.feed(a, a.stop(wire.now, message="bye"))  # Cease: a deliberate shutdown
    assert b.rib_in.count(IPV4_UNICAST) == 0 and b.stale == {}


def test_end_of_rib_held_until_released_and_the_difference_goes_first() -> None:
    wire, a, b = pair(a_kw=GR, b_kw=GR)
    _kill(wire, a, b)
    routes = hosts(50)
    a2 = Session(config(65001, 65002, A_ID, **GR), name="a2", rng=lambda: 0.0, restarting=True)
    a2.hold_end_of_rib = True
    a2.desired = table(routes, ATTRS)  # the saved state
    wire2 = _rewire(wire, a2, b)
    assert b.state is State.Established and IPV4_UNICAST not in b.eor_received
    assert b.rib_in.count(IPV4_UNICAST) == 50 and sum(len(s) for s in b.stale.values()) == 0
    wire2.feed(a2, a2.set_routes(table(routes[5:], ATTRS)))  # the fresh state: 5 fewer
    assert IPV4_UNICAST not in b.eor_received
    wire2.feed(a2, a2.release_end_of_rib())
    assert IPV4_UNICAST in b.eor_received and b.rib_in.count(IPV4_UNICAST) == 45
    assert a2.release_end_of_rib() == []  # once


def test_new_connection_with_gr_while_established_means_the_peer_restarted() -> None:
    """The peer died without its FIN reaching us and is back first (RFC 4724 §4.2)."""
    wire, a, b = pair(a_kw=GR, b_kw=GR)
    routes = hosts(100)
    wire.feed(a, a.set_routes(table(routes, ATTRS)))
    wire.peer_of.pop(id(a))  # a is gone; b has not noticed
    a2 = Session(config(65001, 65002, A_ID, **GR), name="a2", rng=lambda: 0.0, restarting=True)
    a2.desired = table(routes[:90], ATTRS)
    wire.pair(a2, b)
    wire.feed(a2, a2.set_routes(a2.desired))
    wire.feed(a2, a2.start(wire.now))
    assert a2.state is State.Established and b.state is State.Established
    assert len(b.connection_ids()) == 1 and b.stale == {}
    assert set(b.rib_in.routes[IPV4_UNICAST]) == set(routes[:90])
    assert [c.detail for s, c in wire.changes if s is b and c.reason is not None] == [
        "peer restarted: new connection with graceful restart"
    ]


def test_without_gr_a_new_connection_while_established_is_refused() -> None:
    wire, _a, b = pair()
    conn, events = b.accept(wire.now, local_address=b"\x7f\0\0\2")
    assert conn is None and events == []
