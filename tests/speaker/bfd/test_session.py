# mypy: disable-error-code="unreachable"
# (mypy keeps `s.polling` narrowed across the calls that change it)
"""The BFD session state machine (RFC 5880 §6.8.6), its timers (§6.8.2-6.8.4, §6.8.7) and
Poll/Final (§6.5), fed packets and times by hand and wired back to back in memory."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable

import pytest

from speaker.bfd.packet import ControlPacket, Diagnostic, State, decode
from speaker.bfd.session import SLOW_TX_INTERVAL, Session, StateChanged, Timers, Transmit

FAST = Timers.from_ms(min_tx=50, min_rx=50, multiplier=3)
US = 1_000_000
REMOTE_DISC = 0xBEEF


def sent(events: list[Transmit | StateChanged]) -> list[ControlPacket]:
    return [decode(e.data) for e in events if isinstance(e, Transmit)]


def changes(events: list[Transmit | StateChanged]) -> list[StateChanged]:
    return [e for e in events if isinstance(e, StateChanged)]


def remote(state: State, **fields: object) -> ControlPacket:
    """A packet from the remote system (it has heard from us: Your Discriminator set)."""
    values: dict[str, object] = {
        "state": state,
        "detect_mult": 3,
        "my_discriminator": REMOTE_DISC,
        "your_discriminator": 1,
        "desired_min_tx": 50_000,
        "required_min_rx": 50_000,
    }
    values.update(fields)
    return ControlPacket(**values)  # type: ignore[arg-type]


def session_in(state: State, *, timers: Timers = FAST, rng: Callable[[], float] = lambda: 0.5,
               now: float = 0.0) -> Session:  # fmt: skip
    s = Session(local_discriminator=1, timers=timers, rng=rng, now=now)
    s.start(now)
    if state is State.Init:
        s.receive(remote(State.Down), now)
    elif state is State.Up:
        s.receive(remote(State.Init), now)
        s.receive(remote(State.Up, final=True), now)  # ends the Poll that going Up started
    elif state is State.AdminDown:
        s.shutdown(now)
    assert s.state is state
    return s


# (ours, received) -> (ours after, diagnostic of the change or None for no change,
# remote_admin_down), §6.8.6 from "If bfd.SessionState is AdminDown".
TRANSITIONS = [
    (State.Down, State.AdminDown, State.Down, None, False),
    (State.Down, State.Down, State.Init, Diagnostic.NoDiagnostic, False),
    (State.Down, State.Init, State.Up, Diagnostic.NoDiagnostic, False),
    (State.Down, State.Up, State.Down, None, False),
    (State.Init, State.AdminDown, State.Down, Diagnostic.NeighborSignaledSessionDown, True),
    (State.Init, State.Down, State.Init, None, False),
    (State.Init, State.Init, State.Up, Diagnostic.NoDiagnostic, False),
    (State.Init, State.Up, State.Up, Diagnostic.NoDiagnostic, False),
    (State.Up, State.AdminDown, State.Down, Diagnostic.NeighborSignaledSessionDown, True),
    (State.Up, State.Down, State.Down, Diagnostic.NeighborSignaledSessionDown, False),
    (State.Up, State.Init, State.Up, None, False),
    (State.Up, State.Up, State.Up, None, False),
    (State.AdminDown, State.Down, State.AdminDown, None, False),
    (State.AdminDown, State.Init, State.AdminDown, None, False),
    (State.AdminDown, State.Up, State.AdminDown, None, False),
]


@pytest.mark.parametrize(("ours", "theirs", "after", "diag", "admin"), TRANSITIONS)
def test_reception_transitions(
    ours: State, theirs: State, after: State, diag: Diagnostic | None, admin: bool
) -> None:
    s = session_in(ours)
    your = 0 if theirs in (State.Down, State.AdminDown) and ours is State.Down else 1
    events = s.receive(remote(theirs, your_discriminator=your), 1.0)
    assert s.state is after
    got = changes(events)
    if diag is None:
        assert got == []
    else:
        assert got == [StateChanged(old=ours, new=after, diagnostic=diag, remote_admin_down=admin)]
        assert s.local_diag is diag
        # A state change is sent at once, carrying the new state.
        assert sent(events)[-1].state is after
    assert s.remote_discriminator == REMOTE_DISC
    assert s.remote_state is theirs


def test_start_sends_down_at_the_slow_rate_with_no_your_discriminator() -> None:
    s = Session(local_discriminator=42, timers=FAST, rng=lambda: 0.0)
    (packet,) = sent(s.start(10.0))
    assert packet.state is State.Down and packet.your_discriminator == 0
    assert packet.my_discriminator == 42 and packet.detect_mult == 3
    assert packet.desired_min_tx == SLOW_TX_INTERVAL  # §6.8.3: >= 1 s while not Up
    assert packet.required_min_rx == 50_000
    assert not packet.poll and not packet.final
    # The remote's RequiredMinRx starts at 1 µs: the interval is our 1 s, jittered to 75 %.
    assert s.next_deadline() == pytest.approx(10.75)
    assert s.start(10.0) == []


@pytest.mark.parametrize(("mult", "low", "high"), [(3, 0.75, 1.0), (1, 0.75, 0.90)])
def test_jitter_bounds(mult: int, low: float, high: float) -> None:
    for value, expected in ((0.0, low), (0.999999, high)):
        timers = Timers.from_ms(min_tx=100, min_rx=100, multiplier=mult)
        s = session_in(State.Up, timers=timers, rng=lambda v=value: v)  # type: ignore[misc]
        s.receive(remote(State.Up), 199.99)  # keeps the session Up
        (packet,) = sent(s.handle_timer(200.0))  # the periodic packet, long overdue
        assert packet.state is State.Up
        assert s._tx_at == pytest.approx(200.0 + 0.1 * expected, abs=1e-6)


def test_jitter_per_packet_is_random_within_bounds() -> None:
    rng = random.Random(7)
    s = session_in(State.Up, rng=rng.random)
    now, gaps = 0.0, []
    for _ in range(2000):
        deadline = s._tx_at
        assert deadline is not None
        gaps.append(deadline - now)
        now = deadline
        s.receive(remote(State.Up), now)  # keeps detection away
        s.handle_timer(now)
    assert min(gaps[1:]) >= 0.75 * 0.05 - 1e-9 and max(gaps) <= 0.05 + 1e-9
    assert max(gaps) - min(gaps[1:]) > 0.01  # spread, not one value


def test_detection_time_expiry_in_up_goes_down_with_diag_1() -> None:
    s = session_in(State.Up)
    # Detection: the remote's mult (3) x max(our RequiredMinRx 50 ms, its DesiredMinTx 80 ms).
    s.receive(remote(State.Up, desired_min_tx=80_000), 5.0)
    assert s.detection_time() == pytest.approx(0.24)
    s.handle_timer(5.2399)
    assert s.state is State.Up
    events = s.handle_timer(5.24)
    expired = Diagnostic.ControlDetectionTimeExpired
    assert changes(events) == [StateChanged(old=State.Up, new=State.Down, diagnostic=expired)]
    (packet,) = sent(events)
    assert packet.state is State.Down and packet.diagnostic == 1
    assert packet.desired_min_tx == SLOW_TX_INTERVAL  # back to the slow rate
    assert s.remote_discriminator == 0 and packet.your_discriminator == 0
    assert s.flaps == 1 and s.last_down_diag is Diagnostic.ControlDetectionTimeExpired


def test_detection_expiry_in_init_goes_down_and_in_down_only_forgets_the_remote() -> None:
    s = session_in(State.Init)
    deadline = s.next_deadline()
    assert deadline is not None
    s.receive(remote(State.Down, your_discriminator=0, desired_min_tx=1_000_000), 1.0)
    events = s.handle_timer(1.0 + 3.0)  # 3 x 1 s: the remote is still slow
    assert changes(events)[0].new is State.Down and s.flaps == 0
    d = session_in(State.Down)
    d.receive(remote(State.Up), 1.0)  # ignored for state, but it is the remote's discriminator
    assert d.remote_discriminator == REMOTE_DISC
    assert changes(d.handle_timer(1.0 + 0.15)) == [] and d.remote_discriminator == 0


def test_going_up_announces_fast_timers_with_a_poll_until_final() -> None:
    s = session_in(State.Down)
    events = s.receive(remote(State.Init), 1.0)
    (packet,) = sent(events)
    assert packet.state is State.Up and packet.poll and not packet.final
    assert packet.desired_min_tx == 50_000
    assert s.tx_interval() == pytest.approx(0.05)
    s.handle_timer(s._tx_at or 0.0)
    assert s.polling
    s.receive(remote(State.Up, final=True), 1.1)
    assert not s.polling
    now = s._tx_at or 0.0
    assert not sent(s.handle_timer(now))[0].poll


def test_a_received_poll_is_answered_at_once_with_final_and_never_both() -> None:
    s = session_in(State.Up)
    s.set_timers(Timers.from_ms(min_tx=60, min_rx=60, multiplier=3), 2.0)  # we poll too
    assert s.polling
    (answer,) = sent(s.receive(remote(State.Up, poll=True), 2.01))
    assert answer.final and not answer.poll
    (nxt,) = sent(s.handle_timer(s._tx_at or 0.0))
    assert nxt.poll and not nxt.final


def test_raised_desired_tx_waits_for_final_lowered_required_rx_too() -> None:
    s = session_in(State.Up)
    s.receive(remote(State.Up, desired_min_tx=10_000, required_min_rx=10_000), 1.0)
    assert s.tx_interval() == pytest.approx(0.05)
    assert s.detection_time() == pytest.approx(0.15)
    events = s.set_timers(Timers.from_ms(min_tx=200, min_rx=20, multiplier=3), 1.0)
    (packet,) = sent(events)
    assert packet.poll and packet.desired_min_tx == 200_000 and packet.required_min_rx == 20_000
    assert s.tx_interval() == pytest.approx(0.05)  # not slower before Final
    assert s.detection_time() == pytest.approx(0.15)  # not shorter before Final
    s.receive(remote(State.Up, desired_min_tx=10_000, required_min_rx=10_000, final=True), 1.1)
    assert s.tx_interval() == pytest.approx(0.2)
    assert s.detection_time() == pytest.approx(0.06)


def test_lowered_tx_and_raised_rx_take_effect_at_once() -> None:
    s = session_in(State.Up)
    s.set_timers(Timers.from_ms(min_tx=20, min_rx=300, multiplier=3), 1.0)
    s.receive(remote(State.Up, desired_min_tx=10_000, required_min_rx=10_000), 1.0)
    assert s.tx_interval() == pytest.approx(0.02)
    assert s.detection_time() == pytest.approx(0.9)


def test_a_second_change_during_a_poll_waits_for_the_first() -> None:
    s = session_in(State.Up)
    assert sent(s.set_timers(Timers.from_ms(min_tx=60, min_rx=50, multiplier=3), 1.0))
    assert sent(s.set_timers(Timers.from_ms(min_tx=70, min_rx=50, multiplier=3), 1.0)) == []
    (packet,) = sent(s.receive(remote(State.Up, final=True), 1.1))
    assert s.polling and packet.poll  # the second sequence started at once
    assert packet.desired_min_tx == 70_000
    s.receive(remote(State.Up, final=True), 1.2)
    assert not s.polling and s.desired_min_tx == 70_000


def test_changes_while_not_up_apply_at_once_without_poll() -> None:
    s = session_in(State.Init)
    assert sent(s.set_timers(Timers.from_ms(min_tx=20, min_rx=900, multiplier=5), 1.0)) == []
    assert not s.polling and s.required_min_rx == 900_000
    assert s.desired_min_tx == SLOW_TX_INTERVAL  # still slow while not Up
    assert sent(s.handle_timer(5.0))[0].detect_mult == 5


def test_no_periodic_packets_when_the_remote_wants_none() -> None:
    s = session_in(State.Up)
    s.receive(remote(State.Up, required_min_rx=0), 1.0)
    assert s.tx_interval() is None and s._tx_at is None
    (answer,) = sent(s.receive(remote(State.Up, required_min_rx=0, poll=True), 1.01))
    assert answer.final  # a Poll is still answered
    s.receive(remote(State.Up, demand=True), 1.02)
    assert s.tx_interval() is None  # Demand mode on the remote, both Up


def test_shutdown_sends_admin_down_and_ignores_what_comes_back() -> None:
    s = session_in(State.Up)
    events = s.shutdown(1.0)
    (packet,) = sent(events)
    assert packet.state is State.AdminDown and packet.diagnostic == Diagnostic.AdministrativelyDown
    assert changes(events)[0].new is State.AdminDown
    assert changes(s.receive(remote(State.Down), 1.1)) == []
    assert s.state is State.AdminDown and s.flaps == 1


# ---- two sessions back to back -----------------------------------------------------------


class Wire:
    """Two sessions joined by a lossless (until cut) link with a fixed latency."""

    def __init__(self, a_timers: Timers = FAST, b_timers: Timers = FAST, *, seed: int = 1,
                 latency: float = 0.001) -> None:  # fmt: skip
        rng = random.Random(seed)
        self.s = {
            "a": Session(local_discriminator=11, timers=a_timers, rng=rng.random),
            "b": Session(local_discriminator=22, timers=b_timers, rng=rng.random),
        }
        self.latency = latency
        self.now = 0.0
        self.cut = False
        self.log: list[tuple[float, str, StateChanged]] = []
        self._queue: list[tuple[float, int, str, bytes]] = []
        self._seq = itertools.count()

    def _handle(self, name: str, events: list[Transmit | StateChanged]) -> None:
        other = "b" if name == "a" else "a"
        for e in events:
            if isinstance(e, Transmit):
                if not self.cut:
                    item = (self.now + self.latency, next(self._seq), other, e.data)
                    heapq.heappush(self._queue, item)
            else:
                self.log.append((self.now, name, e))

    def start(self) -> None:
        for name, s in self.s.items():
            self._handle(name, s.start(self.now))

    def run_until(self, end: float) -> None:
        while True:
            deadlines = [(d, n) for n, s in self.s.items() if (d := s.next_deadline()) is not None]
            nxt_timer = min(deadlines) if deadlines else (float("inf"), "")
            nxt_packet = self._queue[0][0] if self._queue else float("inf")
            t = min(nxt_timer[0], nxt_packet)
            if t > end:
                self.now = end
                return
            self.now = t
            if nxt_packet <= nxt_timer[0]:
                _, _, to, data = heapq.heappop(self._queue)
                self._handle(to, self.s[to].receive(decode(data), t))
            else:
                self._handle(nxt_timer[1], self.s[nxt_timer[1]].handle_timer(t))


def test_back_to_back_up_then_cut_then_restore() -> None:
    w = Wire()
    w.start()
    w.run_until(5.0)
    assert w.s["a"].state is State.Up and w.s["b"].state is State.Up
    # Both reached Up within the slow start (1 s packets), and finished their Polls.
    ups = [t for t, _, e in w.log if e.new is State.Up]
    assert len(ups) == 2 and max(ups) < 2.0
    assert not w.s["a"].polling and not w.s["b"].polling
    assert w.s["a"].tx_interval() == pytest.approx(0.05)
    w.cut, cut_at = True, w.now
    w.run_until(cut_at + 1.0)
    downs = [(t, n, e) for t, n, e in w.log if e.new is State.Down]
    assert {n for _, n, _ in downs} == {"a", "b"}
    for t, _, e in downs:
        assert e.diagnostic is Diagnostic.ControlDetectionTimeExpired
        assert t - cut_at <= 0.15 + 1e-9  # 3 x 50 ms from the last packet before the cut
    w.cut = False
    w.run_until(cut_at + 10.0)
    assert w.s["a"].state is State.Up and w.s["b"].state is State.Up
    assert w.s["a"].flaps == 1 and w.s["b"].flaps == 1


def test_back_to_back_negotiates_the_slower_side() -> None:
    slow = Timers.from_ms(min_tx=300, min_rx=500, multiplier=5)
    w = Wire(FAST, slow)
    w.start()
    w.run_until(5.0)
    a, b = w.s["a"], w.s["b"]
    assert a.state is State.Up and b.state is State.Up
    assert a.tx_interval() == pytest.approx(0.5)  # b requires 500 ms between packets
    assert b.tx_interval() == pytest.approx(0.3)
    assert a.detection_time() == pytest.approx(5 * 0.3)  # b's mult x b's tx (> our 50 ms rx)
    assert b.detection_time() == pytest.approx(3 * 0.5)


def test_back_to_back_admin_down_is_not_a_failure() -> None:
    w = Wire()
    w.start()
    w.run_until(5.0)
    w._handle("a", w.s["a"].shutdown(w.now))
    w.run_until(6.0)
    (change,) = [e for _, n, e in w.log if n == "b" and e.new is State.Down]
    assert change.remote_admin_down and change.diagnostic is Diagnostic.NeighborSignaledSessionDown
    w.run_until(20.0)
    assert w.s["b"].state is State.Down  # and stays: a keeps saying AdminDown
