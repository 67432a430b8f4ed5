# mypy: disable-error-code="unreachable"
# (mypy keeps `gate.holding` narrowed across the calls that change it)
"""Demultiplexing received packets to sessions (RFC 5880 §6.8.6, RFC 5881/5883 TTL rules) and
the BFD -> BGP coupling rules (RFC 5882; docs/bfd.md)."""

from __future__ import annotations

import random

import pytest

from speaker.bfd.coupling import BgpGate, GateAction
from speaker.bfd.demux import AUTHENTICATION, NO_SESSION, TTL, WRONG_SOURCE, Demux, Path
from speaker.bfd.packet import AuthSection, ControlPacket, Diagnostic, State
from speaker.bfd.session import Session, StateChanged, Timers

LOCAL, PEER, OTHER = "192.0.2.1", "192.0.2.2", "192.0.2.3"
TIMERS = Timers.from_ms(min_tx=100, min_rx=100, multiplier=3)


def _demux() -> tuple[Demux[str], Session, Session]:
    rng = random.Random(3).random
    demux: Demux[str] = Demux(rng)
    single = Session(local_discriminator=demux.allocate_discriminator(), timers=TIMERS, rng=rng)
    multi = Session(local_discriminator=demux.allocate_discriminator(), timers=TIMERS, rng=rng)
    demux.add("single", Path(local=LOCAL, remote=PEER, multihop=False), single)
    demux.add("multi", Path(local=LOCAL, remote=OTHER, multihop=True), multi, min_ttl=254)
    return demux, single, multi


def _packet(your: int = 0, state: State = State.Down, **extra: object) -> bytes:
    return ControlPacket(state=state, detect_mult=3, my_discriminator=99, your_discriminator=your,
                         desired_min_tx=1_000_000, required_min_rx=100_000,
                         **extra).encode()  # type: ignore[arg-type]  # fmt: skip


def _receive(
    demux: Demux[str], data: bytes, *, source: str = PEER, multihop: bool = False,
    ttl: int | None = 255,
) -> tuple[str | None, list[object]]:  # fmt: skip
    key, events = demux.receive(data, source=source, destination=LOCAL, multihop=multihop,
                                ttl=ttl, now=1.0)  # fmt: skip
    return key, list(events)


def test_zero_your_discriminator_selects_by_path_and_ttl_255_only_on_single_hop() -> None:
    demux, single, multi = _demux()
    key, events = _receive(demux, _packet())
    assert key == "single" and single.state is State.Init and events
    assert _receive(demux, _packet(), ttl=254) == (None, [])
    assert demux.dropped[TTL] == 1
    # The multihop session takes TTL >= its minimum, on the multihop port only.
    assert _receive(demux, _packet(), source=OTHER, multihop=True, ttl=254)[0] == "multi"
    assert _receive(demux, _packet(), source=OTHER, multihop=True, ttl=200)[0] is None
    assert _receive(demux, _packet(), source=OTHER, multihop=False)[0] is None
    assert _receive(demux, _packet(), ttl=None)[0] is None
    assert demux.dropped == {TTL: 3, NO_SESSION: 1}
    assert multi.state is State.Init


def test_nonzero_your_discriminator_selects_by_discriminator_from_the_right_source_only() -> None:
    demux, single, _ = _demux()
    mine = single.local_discriminator
    assert _receive(demux, _packet(mine, State.Init))[0] == "single"
    assert single.state is State.Up
    assert _receive(demux, _packet(mine, State.Up), source=OTHER)[0] is None
    assert _receive(demux, _packet(mine ^ 1, State.Up))[0] is None
    assert demux.dropped == {WRONG_SOURCE: 1, NO_SESSION: 1}


def test_authenticated_and_malformed_packets_are_dropped_and_counted() -> None:
    demux, single, _ = _demux()
    auth = AuthSection(type=2, data=bytes(22))
    assert _receive(demux, _packet(auth=auth)) == (None, [])
    assert _receive(demux, b"\x20" * 10) == (None, [])
    assert demux.dropped == {AUTHENTICATION: 1, "short": 1}
    assert single.state is State.Down and single.received == 0


def test_discriminators_are_unique_nonzero_and_sessions_can_go() -> None:
    values = iter([0.0, 0.5, 0.5, 0.25])
    demux: Demux[str] = Demux(lambda: next(values))
    first = demux.allocate_discriminator()  # 0.0 gives 0: skipped
    assert first == 0x80000000
    demux.add("a", Path(local=LOCAL, remote=PEER, multihop=False),
              Session(local_discriminator=first, timers=TIMERS, rng=random.random))  # fmt: skip
    assert demux.allocate_discriminator() == 0x40000000  # 0.5 again: in use, skipped
    with pytest.raises(ValueError, match="exists"):
        demux.add("b", Path(local=LOCAL, remote=PEER, multihop=False),
                  Session(local_discriminator=5, timers=TIMERS, rng=random.random))  # fmt: skip
    assert demux.remove("a") is not None and len(demux) == 0 and demux.remove("a") is None


def _change(old: State, new: State, *, admin: bool = False) -> StateChanged:
    diag = Diagnostic.NeighborSignaledSessionDown if admin else Diagnostic.NoDiagnostic
    return StateChanged(old=old, new=new, diagnostic=diag, remote_admin_down=admin)


def test_gate_never_up_does_not_hold_bgp() -> None:
    gate = BgpGate()
    assert gate.on_state(_change(State.Down, State.Init), 1.0) is None
    assert gate.on_state(_change(State.Init, State.Down), 4.0) is None
    assert not gate.holding and gate.next_deadline() is None


def test_gate_up_to_down_tears_down_and_holds_until_up() -> None:
    gate = BgpGate(hold_limit=60.0)
    assert gate.on_state(_change(State.Init, State.Up), 1.0) is None
    assert gate.on_state(_change(State.Up, State.Down), 2.0) is GateAction.TearDown
    assert gate.holding and gate.next_deadline() == 62.0
    assert gate.on_state(_change(State.Down, State.Init), 3.0) is None and gate.holding
    assert gate.handle_timer(61.9) is None
    assert gate.on_state(_change(State.Init, State.Up), 4.0) is GateAction.Release
    assert not gate.holding and gate.has_been_up


def test_gate_hold_has_a_limit_then_bgp_runs_unprotected() -> None:
    gate = BgpGate(hold_limit=60.0)
    gate.on_state(_change(State.Init, State.Up), 1.0)
    gate.on_state(_change(State.Up, State.Down), 2.0)
    assert gate.handle_timer(62.0) is GateAction.Release
    assert not gate.holding and not gate.has_been_up
    assert gate.handle_timer(200.0) is None


@pytest.mark.parametrize("new", [State.AdminDown, State.Down])
def test_gate_admin_down_either_side_is_not_a_failure(new: State) -> None:
    gate = BgpGate()
    gate.on_state(_change(State.Init, State.Up), 1.0)
    admin = new is State.Down  # the remote said AdminDown; or we went AdminDown ourselves
    assert gate.on_state(_change(State.Up, new, admin=admin), 2.0) is None
    assert not gate.holding and not gate.has_been_up
    # Held, then BFD is turned off (ours goes AdminDown, or the remote says AdminDown while
    # ours is already Down, which changes no state): released.
    gate.on_state(_change(State.Init, State.Up), 3.0)
    assert gate.on_state(_change(State.Up, State.Down), 4.0) is GateAction.TearDown
    if new is State.AdminDown:
        assert gate.on_state(_change(State.Down, State.AdminDown), 5.0) is GateAction.Release
    else:
        assert gate.on_remote_admin_down() is GateAction.Release
    assert not gate.holding and not gate.has_been_up
