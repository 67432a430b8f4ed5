"""One BFD session (RFC 5880), sans-IO: Asynchronous mode, no Echo, no Demand of our own.

    s = Session(local_discriminator=d, timers=Timers(...), rng=random.random)
    events = s.start(now)                  # Transmit(...) to send, StateChanged(...) to act on
    events = s.receive(packet, now)        # a decoded ControlPacket demultiplexed to us
    events = s.handle_timer(now)           # when now >= s.next_deadline()
    events = s.set_timers(timers, now)     # new parameters: a Poll Sequence when Up (§6.5)
    events = s.shutdown(now)               # AdminDown (§6.8.16) before the session is removed

It reads no clock and opens no socket: `now` is seconds on any monotonic origin, timers go out
as one deadline, randomness (the §6.8.7 jitter) comes from the `rng` given, packets go out as
encoded bytes in `Transmit`. State changes follow §6.8.6; timers §6.8.2-6.8.4 and §6.8.7:

- While not Up, bfd.DesiredMinTxInterval is at least one second (§6.8.3); once Up it becomes
  the configured value, announced with a Poll Sequence.
- A parameter change while Up starts a Poll Sequence (Poll bit on every packet until a packet
  with Final arrives; one at a time, a second waits). Until it ends, a raised DesiredMinTx does
  not yet slow our transmissions and a lowered RequiredMinRx does not yet shorten our
  Detection Time (§6.8.3). While not Up a change takes effect at once, no Poll.
- Transmission interval: max(DesiredMinTx, the remote's RequiredMinRx) reduced by 0-25 %
  at random per packet (0-10 % floor of 75-90 % when Detect Mult is 1). None when the remote's
  RequiredMinRx is zero or it is in Demand mode while both sides are Up (§6.8.7).
- Detection Time: the remote's Detect Mult x max(our RequiredMinRx, its DesiredMinTx), from
  the last valid packet (§6.8.4). Expiry in Init or Up: Down, Control Detection Time Expired.
- A received Poll is answered at once with Final (§6.5); every state change is sent at once
  too (faster convergence; the periodic schedule then restarts from it).

`StateChanged.remote_admin_down` tells a session that went Down because the remote said
AdminDown: RFC 5882 §3.2 says a client must not treat that as a path failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from speaker.bfd.packet import ControlPacket, Diagnostic, State

SLOW_TX_INTERVAL: Final = 1_000_000
"""µs: the least DesiredMinTxInterval while the session is not Up (§6.8.3)."""
MICROSECONDS: Final = 1_000_000.0
MAX_INTERVAL: Final = 0xFFFFFFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class Timers:
    """The local parameters: desired min TX and required min RX in µs, detect multiplier."""

    desired_min_tx: int
    required_min_rx: int
    detect_mult: int

    def __post_init__(self) -> None:
        if not 1 <= self.desired_min_tx <= MAX_INTERVAL:
            raise ValueError(f"desired_min_tx {self.desired_min_tx} µs out of 1..2^32-1")
        if not 0 <= self.required_min_rx <= MAX_INTERVAL:
            raise ValueError(f"required_min_rx {self.required_min_rx} µs out of 0..2^32-1")
        if not 1 <= self.detect_mult <= 255:
            raise ValueError(f"detect_mult {self.detect_mult} out of 1..255")

    @classmethod
    def from_ms(cls, *, min_tx: int, min_rx: int, multiplier: int) -> Timers:
        return cls(
            desired_min_tx=min_tx * 1000, required_min_rx=min_rx * 1000, detect_mult=multiplier
        )


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send these bytes to the remote system (UDP, the session's ports)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    """bfd.SessionState changed. `diagnostic` is bfd.LocalDiag after the change;
    `remote_admin_down`: Down because the remote signalled AdminDown (RFC 5882 §3.2)."""

    old: State
    new: State
    diagnostic: Diagnostic
    remote_admin_down: bool = False


Event = Transmit | StateChanged


class Session:
    """The state variables of §6.8.1, the reception rules of §6.8.6, the timers of §6.8.2-7."""

    def __init__(
        self,
        *,
        local_discriminator: int,
        timers: Timers,
        rng: Callable[[], float],
        now: float = 0.0,
    ) -> None:
        if not 1 <= local_discriminator <= MAX_INTERVAL:
            raise ValueError("the local discriminator must be a nonzero 32-bit value")
        self.local_discriminator = local_discriminator
        self.timers = timers
        self._rng = rng
        self.state = State.Down
        self.remote_state = State.Down
        self.remote_discriminator = 0
        self.local_diag = Diagnostic.NoDiagnostic
        self.remote_diag = 0
        self.remote_min_rx = 1  # µs, bfd.RemoteMinRxInterval starts at 1 (§6.8.1)
        self.remote_desired_min_tx = 0
        self.remote_detect_mult = 0
        self.remote_demand = False
        # What our packets carry (bfd.DesiredMinTxInterval / RequiredMinRxInterval) ...
        self.desired_min_tx = max(timers.desired_min_tx, SLOW_TX_INTERVAL)
        self.required_min_rx = timers.required_min_rx
        # ... and what our timers use, which lag behind during a Poll Sequence (§6.8.3).
        self._tx_desired = self.desired_min_tx
        self._detect_rx = self.required_min_rx
        self.polling = False
        self._poll_pending = False
        self._final_owed = False
        self._started = False
        self._tx_at: float | None = None
        self._detect_at: float | None = None
        self.since = now
        self.flaps = 0  # Up -> Down
        self.last_down_diag: Diagnostic | None = None
        self.sent = 0
        self.received = 0

    # ---- introspection ---------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self.state is State.Up

    def tx_interval(self) -> float | None:
        """Seconds between our periodic packets before jitter; None: we send none."""
        if self.remote_min_rx == 0:
            return None
        if self.remote_demand and self.state is State.Up and self.remote_state is State.Up:
            return None
        return max(self._tx_desired, self.remote_min_rx) / MICROSECONDS

    def detection_time(self) -> float | None:
        """Seconds without a valid packet before we declare the session down; None until the
        remote has sent one."""
        if self.remote_detect_mult == 0:
            return None
        return (
            self.remote_detect_mult
            * max(self._detect_rx, self.remote_desired_min_tx)
            / MICROSECONDS
        )

    @property
    def detection_deadline(self) -> float | None:
        """When the session goes down unless a valid packet arrives first (None: no timer)."""
        return self._detect_at

    def next_deadline(self) -> float | None:
        if self._tx_at is None:
            return self._detect_at
        if self._detect_at is None:
            return self._tx_at
        return min(self._tx_at, self._detect_at)

    # ---- events ----------------------------------------------------------------------------

    def start(self, now: float) -> list[Event]:
        """Begin transmitting (from Down). Idempotent."""
        out: list[Event] = []
        if self._started:
            return out
        self._started = True
        self._transmit(out, now)
        return out

    def shutdown(self, now: float) -> list[Event]:
        """Go AdminDown (§6.8.16) and tell the remote at once; keep calling `handle_timer` for
        a while so that it hears (the caller decides how long; `detection_time()` is apt)."""
        out: list[Event] = []
        self._started = True
        self._detect_at = None
        self._set_state(out, now, State.AdminDown, Diagnostic.AdministrativelyDown)
        self._transmit(out, now)
        return out

    def set_timers(self, timers: Timers, now: float) -> list[Event]:
        """New local parameters. Up: a Poll Sequence announces them (§6.5, §6.8.3)."""
        out: list[Event] = []
        if timers == self.timers:
            return out
        self.timers = timers
        if self.state is not State.Up:
            self._apply_unpolled()
            self._reschedule_tx(now)
            return out
        desired, required = timers.desired_min_tx, timers.required_min_rx
        if desired == self.desired_min_tx and required == self.required_min_rx:
            return out
        self.desired_min_tx = desired
        self.required_min_rx = required
        # A lower DesiredMinTx and a higher RequiredMinRx may take effect at once.
        self._tx_desired = min(self._tx_desired, desired)
        self._detect_rx = max(self._detect_rx, required)
        self._start_poll(out, now)
        return out

    def receive(self, packet: ControlPacket, now: float) -> list[Event]:
        """A packet that passed `decode` and was demultiplexed to this session (§6.8.6 from
        "Set bfd.RemoteDiscr"). The caller has already discarded packets with the A bit."""
        out: list[Event] = []
        self.received += 1
        self.remote_discriminator = packet.my_discriminator
        self.remote_state = packet.state
        self.remote_demand = packet.demand
        self.remote_diag = packet.diagnostic
        changed = (
            packet.required_min_rx != self.remote_min_rx
            or packet.desired_min_tx != self.remote_desired_min_tx
        )
        self.remote_min_rx = packet.required_min_rx
        self.remote_desired_min_tx = packet.desired_min_tx
        self.remote_detect_mult = packet.detect_mult
        if packet.final and self.polling:
            self._end_poll(out, now)
        if changed:
            self._reschedule_tx(now)
        if self.state is State.AdminDown:
            return out
        detect = self.detection_time()
        self._detect_at = None if detect is None else now + detect
        if packet.state is State.AdminDown:
            if self.state is not State.Down:
                self._set_state(
                    out, now, State.Down, Diagnostic.NeighborSignaledSessionDown,
                    remote_admin_down=True,
                )  # fmt: skip
        elif self.state is State.Down:
            if packet.state is State.Down:
                self._set_state(out, now, State.Init, Diagnostic.NoDiagnostic)
            elif packet.state is State.Init:
                self._set_state(out, now, State.Up, Diagnostic.NoDiagnostic)
        elif self.state is State.Init:
            if packet.state in (State.Init, State.Up):
                self._set_state(out, now, State.Up, Diagnostic.NoDiagnostic)
        elif packet.state is State.Down:  # we are Up
            self._set_state(out, now, State.Down, Diagnostic.NeighborSignaledSessionDown)
        if packet.poll:
            self._final_owed = True
        if self._final_owed or any(isinstance(e, StateChanged) for e in out):
            self._transmit(out, now)
        return out

    def handle_timer(self, now: float) -> list[Event]:
        out: list[Event] = []
        if self._detect_at is not None and now >= self._detect_at:
            self._detect_at = None
            self.remote_discriminator = 0  # §6.8.1
            if self.state in (State.Init, State.Up):
                self._set_state(out, now, State.Down, Diagnostic.ControlDetectionTimeExpired)
                self._transmit(out, now)
        if self._tx_at is not None and now >= self._tx_at:
            self._transmit(out, now)
        return out

    # ---- helpers ---------------------------------------------------------------------------

    def _set_state(
        self,
        out: list[Event],
        now: float,
        new: State,
        diagnostic: Diagnostic,
        *,
        remote_admin_down: bool = False,
    ) -> None:
        old = self.state
        if new is old:
            return
        self.state = new
        self.local_diag = diagnostic
        self.since = now
        if old is State.Up:
            self.flaps += 1
        if new in (State.Down, State.AdminDown):
            self.last_down_diag = diagnostic
        out.append(
            StateChanged(old=old, new=new, diagnostic=diagnostic,
                         remote_admin_down=remote_admin_down)
        )  # fmt: skip
        if new is State.Up:
            # Leave the slow rate (§6.8.3): announce the configured DesiredMinTx by Poll.
            self.desired_min_tx = self.timers.desired_min_tx
            self.required_min_rx = self.timers.required_min_rx
            self._tx_desired = min(self._tx_desired, self.desired_min_tx)
            self._detect_rx = max(self._detect_rx, self.required_min_rx)
            self.polling = False
            self._poll_pending = False
            self._start_poll(out, now, send=False)
        elif old is State.Up:
            self.polling = False
            self._poll_pending = False
            self._apply_unpolled()

    def _apply_unpolled(self) -> None:
        self.desired_min_tx = max(self.timers.desired_min_tx, SLOW_TX_INTERVAL)
        self.required_min_rx = self.timers.required_min_rx
        self._tx_desired = self.desired_min_tx
        self._detect_rx = self.required_min_rx

    def _start_poll(self, out: list[Event], now: float, *, send: bool = True) -> None:
        if self.polling:
            self._poll_pending = True
            return
        self.polling = True
        if send:
            self._transmit(out, now)

    def _end_poll(self, out: list[Event], now: float) -> None:
        self.polling = False
        self._tx_desired = self.desired_min_tx
        self._detect_rx = self.required_min_rx
        if self._detect_at is not None:
            detect = self.detection_time()
            if detect is not None:
                self._detect_at = now + detect
        self._reschedule_tx(now)
        if self._poll_pending:
            self._poll_pending = False
            self._start_poll(out, now)

    def _packet(self) -> ControlPacket:
        final = self._final_owed
        return ControlPacket(
            state=self.state,
            diagnostic=self.local_diag,
            poll=self.polling and not final,  # never both (§6.5)
            final=final,
            detect_mult=self.timers.detect_mult,
            my_discriminator=self.local_discriminator,
            your_discriminator=self.remote_discriminator,
            desired_min_tx=self.desired_min_tx,
            required_min_rx=self.required_min_rx,
        )

    def _transmit(self, out: list[Event], now: float) -> None:
        out.append(Transmit(self._packet().encode()))
        self._final_owed = False
        self.sent += 1
        self._tx_at = self._next_tx(now)

    def _next_tx(self, now: float) -> float | None:
        interval = self.tx_interval()
        if interval is None or not self._started:
            return None
        low, high = (0.75, 0.90) if self.timers.detect_mult == 1 else (0.75, 1.0)
        return now + interval * (low + (high - low) * self._rng())

    def _reschedule_tx(self, now: float) -> None:
        """After the interval changed: never wait longer than one new (jittered) interval."""
        if not self._started:
            return
        nxt = self._next_tx(now)
        if nxt is None or self._tx_at is None or nxt < self._tx_at:
            self._tx_at = nxt


__all__ = [
    "SLOW_TX_INTERVAL",
    "Event",
    "Session",
    "StateChanged",
    "Timers",
    "Transmit",
]
