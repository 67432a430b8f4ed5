"""The BGP session: the connection state machine (RFC 4271 §8), sans-IO.

One `Session` per configured peer. It does no I/O and reads no clock: the caller feeds it
events (`start`, `stop`, `connection_made`, `connection_failed`, `accept`, `data_received`,
`connection_lost`, `handle_timer`, `set_routes`, `request_refresh`, `release_end_of_rib`), each
taking `now` (seconds, any monotonic origin) where time matters, and carries out the returned
events in order. `next_deadline()` says when to call `handle_timer` next. Two sessions can be
wired back to back in memory.

A session holds up to two TCP connections at once (ours and the peer's) while they race through
OpenSent/OpenConfirm; collision detection (§6.8, with the RFC 6286 tie-break on equal
identifiers) closes one of them with Cease/Connection Collision Resolution. Our KEEPALIVE (what
makes the peer Established) waits until every connection has the peer's OPEN (`_park`), and a
connection we sent it on never loses a collision: a peer Established on one connection must
never see the other one arrive late, or get a NOTIFICATION on it (docs/hardening.md). Timers are
deadlines: ConnectRetry (jittered, doubling per consecutive failure), Hold (240 s in OpenSent,
then the negotiated minimum; 0 = none) and Keepalive. Every transition to Idle carries an
`IdleReason`; a received NOTIFICATION is never answered.

The rest of the session is composed of one part per concept, each in its own module:
- `open.py`: our OPEN, the checks on the peer's, what both negotiate;
- `inbound.py`: a received UPDATE through the inbound checks into the Adj-RIB-In
  (`self.inbound`, `self.rib_in`); over `max_prefixes` the FSM ends the session (Cease/1);
- `outbound.py`: the Adj-RIB-Out, End-of-RIB, route refresh served (`self.outbound`);
- `graceful_restart.py`: the helper's stale routes (`self.gr`) and our own restart
  (`self.restart`: the R bit, End-of-RIB held).

Events returned (the `Event` union): actions to carry out (`Connect`, `Send`, `Close`), and
values to log, count or pass on (`StateChanged`, `GracefulRestartNote`, `UpdateOutcome`,
`RouteRefreshServed`), and the Adj-RIB-In change log (`RibInChanged`, `RibInStale`): every
change of the Adj-RIB-In (UPDATE applied, session-down flush, routes kept stale or flushed by
the graceful restart helper) is one of these, in order (speaker/bgp/rib/adj_rib_in.py).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from speaker.bgp.rib.adj_rib_in import AdjRibIn, RibInChanged, RibInStale
from speaker.bgp.rib.adj_rib_out import AdjRibOut, Desired, Nlri, PathAttributes, Table
from speaker.bgp.session.config import SessionConfig
from speaker.bgp.session.counters import MessageCounters
from speaker.bgp.session.graceful_restart import (
    GracefulRestartHelper,
    GracefulRestartNote,
    RestartingSpeaker,
)
from speaker.bgp.session.inbound import Inbound, UpdateOutcome
from speaker.bgp.session.open import (
    Negotiated,
    build_open,
    check_open,
    graceful_restart_of,
    negotiate,
)
from speaker.bgp.session.outbound import Outbound, RouteRefreshServed
from speaker.bgp.wire.context import DEFAULT_CONTEXT, Family
from speaker.bgp.wire.errors import (
    BGPError,
    CeaseSubcode,
    ErrorCode,
    FiniteStateMachineErrorSubcode,
    code_name,
    subcode_name,
)
from speaker.bgp.wire.framing import KEEPALIVE, NOTIFICATION, OPEN, ROUTE_REFRESH, UPDATE, Framer
from speaker.bgp.wire.messages import (
    Keepalive,
    Message,
    Notification,
    Open,
    RouteRefresh,
    decode_message,
    decode_update,
)
from speaker.bgp.wire.nlri import Prefix

OPEN_SENT_HOLD_TIME = 240  # RFC 4271 §8.2.2: "a large value", 4 minutes suggested
OPEN_CONFIRM_WAIT = 10.0  # see `_park`: the bound when the hold time is 0
MAX_BACKOFF_FACTOR = 8
_COLLISION = Notification(code=ErrorCode.Cease, subcode=CeaseSubcode.ConnectionCollisionResolution)


class State(enum.IntEnum):
    """RFC 4271 §8.2.2 states, ordered by progress."""

    Idle = 0
    Connect = 1
    Active = 2
    OpenSent = 3
    OpenConfirm = 4
    Established = 5


class IdleReason(enum.Enum):
    """Why a session went (back) to Idle."""

    AdministrativeShutdown = "administrative-shutdown"
    PeerDeconfigured = "peer-deconfigured"
    ConfigurationChange = "configuration-change"
    ConnectionLost = "connection-lost"
    HoldTimerExpired = "hold-timer-expired"
    NotificationReceived = "notification-received"
    OpenRejected = "open-rejected"
    ProtocolError = "protocol-error"
    FiniteStateMachineError = "fsm-error"
    MaxPrefixesExceeded = "max-prefixes-exceeded"
    BfdDown = "bfd-down"  # the peer's BFD session went down (RFC 5882; Cease/BFD Down)


# ---- actions and events the caller sees --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """Open an outgoing TCP connection for `conn`; report `connection_made` or `_failed`."""

    conn: int


@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close `conn` once what was sent on it is written."""

    conn: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    old: State
    new: State
    reason: IdleReason | None = None
    detail: str = ""


Event = (
    Connect
    | Send
    | Close
    | StateChanged
    | GracefulRestartNote
    | UpdateOutcome
    | RouteRefreshServed
    | RibInChanged
    | RibInStale
)


def collision_keeps_outgoing(
    *, local_id: int, remote_id: int, local_asn: int, remote_asn: int
) -> bool:
    """RFC 4271 §6.8: the connection opened by the side with the higher BGP Identifier
    survives; RFC 6286 §2.3: on equal identifiers, the side with the larger AS number."""
    if local_id != remote_id:
        return local_id > remote_id
    return local_asn > remote_asn


def notification_text(n: Notification) -> str:
    text = f"{code_name(n.code)}/{subcode_name(n.code, n.subcode)}"
    message = n.shutdown_message
    if message:
        text += f" {message!r}"
    return text


@dataclass(slots=True, kw_only=True)
class _Conn:
    id: int
    outgoing: bool
    state: State  # Connect (outgoing, not yet made), OpenSent, OpenConfirm, Established
    local_address: bytes = b""
    framer: Framer = field(default_factory=Framer)
    remote_open: Open | None = None
    negotiated: Negotiated | None = None
    families: frozenset[Family] = frozenset()  # negotiated and configured
    hold_at: float | None = None
    keepalive_at: float | None = None
    hold_time: int = 0
    keepalive_time: int = 0
    # Parked (see `_park`): the peer's OPEN is in, our KEEPALIVE waits until this time at most.
    parked_until: float | None = None
    peer_keepalive: bool = False  # the peer's KEEPALIVE arrived while parked


class Session:
    """One peer's FSM, RIBs and timers. Feed it events; carry out the actions it returns."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        name: str = "",
        rng: Callable[[], float] | None = None,
        now: float = 0.0,
        restarting: bool = False,
        forwarding_preserved: bool = True,
    ) -> None:
        self.config = config
        self.name = name
        self._rng = rng if rng is not None else random.Random().random
        self._conns: dict[int, _Conn] = {}
        self._next_conn = 1
        self._base = State.Idle  # Idle / Connect / Active when no connection is established
        self._enabled = False
        self._retry_at: float | None = None
        self._failures = 0
        self.since = now
        self.last_error = ""
        self.last_reason: IdleReason | None = None
        self.rib_in = AdjRibIn()
        self.inbound = Inbound(config)
        self.outbound = Outbound()
        self.gr = GracefulRestartHelper(self.rib_in, config.families)
        self.restart = RestartingSpeaker(restarting=restarting and config.graceful_restart)
        self.eor_received: set[Family] = set()
        self.counters = MessageCounters()
        self._base_open = build_open(config)
        # After a restart the F bit says whether the routes we received were kept in the FIB
        # (RFC 4724 §3); later OPENs of the same process always have it (nothing was lost).
        self._restart_open = build_open(config, restarting=True, forwarding=forwarding_preserved)
        self.remote_router_id = 0  # the BGP Identifier of the last Established peer OPEN
        self._last_state = State.Idle

    # ---- introspection ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        if self._conns:
            return max(c.state for c in self._conns.values())
        return self._base

    @property
    def established(self) -> _Conn | None:
        for conn in self._conns.values():
            if conn.state is State.Established:
                return conn
        return None

    @property
    def negotiated(self) -> Negotiated | None:
        conn = self.established
        return None if conn is None else conn.negotiated

    @property
    def families(self) -> frozenset[Family]:
        """Families both sides negotiated and we are configured for (empty unless Established)."""
        conn = self.established
        return frozenset() if conn is None else conn.families

    @property
    def rib_out(self) -> AdjRibOut:
        return self.outbound.rib_out

    @property
    def desired(self) -> Desired:
        return self.outbound.desired

    @desired.setter
    def desired(self, table: Desired | Table) -> None:
        self.outbound.desired = table if isinstance(table, Desired) else Desired.of(table)

    @property
    def skipped_routes(self) -> int:
        return self.outbound.skipped_routes

    @property
    def refreshes_served(self) -> int:
        return self.outbound.refreshes_served

    @property
    def stale(self) -> dict[Family, set[Prefix]]:
        """The graceful restart helper's stale routes, per family (in the Adj-RIB-In)."""
        return self.rib_in.stale

    @property
    def hold_end_of_rib(self) -> bool:
        """Restarting speaker: End-of-RIB waits for `release_end_of_rib()` while this is set
        (the runtime holds it until the complete desired state is in)."""
        return self.restart.hold_end_of_rib

    @hold_end_of_rib.setter
    def hold_end_of_rib(self, value: bool) -> None:
        self.restart.hold_end_of_rib = value

    def connection_ids(self) -> list[int]:
        return list(self._conns)

    def next_deadline(self) -> float | None:
        times = [self._retry_at] if self._retry_at is not None else []
        stale_at = self.gr.deadline
        if stale_at is not None:
            times.append(stale_at)
        for conn in self._conns.values():
            if conn.hold_at is not None:
                times.append(conn.hold_at)
            if conn.parked_until is not None:
                times.append(conn.parked_until)
            if conn.keepalive_at is not None:
                times.append(conn.keepalive_at)
        return min(times) if times else None

    # ---- helpers ---------------------------------------------------------------------------

    def _transition(
        self, out: list[Event], now: float, reason: IdleReason | None = None, detail: str = ""
    ) -> None:
        new = self.state
        if new != self._last_state:
            out.append(StateChanged(old=self._last_state, new=new, reason=reason, detail=detail))
            if self._last_state is State.Established:
                self.counters.flaps += 1
            self._last_state = new
            self.since = now

    def _backoff(self) -> float:
        factor = min(1 << max(self._failures - 1, 0), MAX_BACKOFF_FACTOR)
        jitter: float = 0.75 + 0.25 * self._rng()
        return self.config.connect_retry_time * factor * jitter

    def _new_conn(self, *, outgoing: bool, state: State) -> _Conn:
        conn = _Conn(id=self._next_conn, outgoing=outgoing, state=state)
        self._next_conn += 1
        self._conns[conn.id] = conn
        return conn

    def _send(self, out: list[Event], conn: _Conn, message: Message) -> None:
        ctx = conn.negotiated.tx if conn.negotiated is not None else DEFAULT_CONTEXT
        wire = message.encode(ctx)
        self.counters.on_sent(wire)
        out.append(Send(conn.id, wire))

    def _send_wire(self, out: list[Event], conn: _Conn, messages: list[bytes]) -> None:
        """Encoded messages (UPDATEs) in one write."""
        if not messages:
            return
        for message in messages:
            self.counters.on_sent(message)
        out.append(Send(conn.id, b"".join(messages)))

    @property
    def _local_open(self) -> Open:
        """Our OPEN: with the R bit (RFC 4724 §3) until the first session after a restart."""
        return self._restart_open if self.restart.restarting else self._base_open

    def _open_sent(self, out: list[Event], conn: _Conn, now: float) -> None:
        conn.state = State.OpenSent
        self._send(out, conn, self._local_open)
        conn.hold_at = now + OPEN_SENT_HOLD_TIME

    def _drop(self, out: list[Event], conn: _Conn, notification: Notification | None) -> None:
        """Close one connection (collision loser, stale attempt) without touching the session."""
        if notification is not None and conn.state >= State.OpenSent:
            self._send(out, conn, notification)
        self._conns.pop(conn.id, None)
        out.append(Close(conn.id))

    def _gr_helper(self, conn: _Conn) -> bool:
        """Both sides sent the GR capability on `conn`: we keep its routes over its restart."""
        return (
            self.config.graceful_restart
            and conn.negotiated is not None
            and conn.negotiated.peer_graceful_restart is not None
        )

    def _routes_down(self) -> None:
        """What ends with the session on our side: the Adj-RIB-Out, End-of-RIB state."""
        self.outbound.clear()
        self.eor_received.clear()
        self.restart.eor_owed = False

    def _go_idle(
        self,
        out: list[Event],
        now: float,
        reason: IdleReason,
        detail: str,
        *,
        conn: _Conn | None,
        notification: Notification | None,
        restart: bool = True,
    ) -> None:
        """The session (not just one connection) fails: close everything, clear the RIBs
        (or keep the peer's routes stale as its graceful restart helper)."""
        established = self.established
        was_established = established is not None
        for other in list(self._conns.values()):
            self._drop(out, other, notification if other is conn else None)
        self._conns.clear()
        peer_gr = established.negotiated.peer_graceful_restart if (
            established is not None and established.negotiated is not None
        ) else None  # fmt: skip
        if (
            peer_gr is not None
            and self.config.graceful_restart
            and reason in (IdleReason.ConnectionLost, IdleReason.HoldTimerExpired)
        ):
            out += self.gr.keep(now, peer_gr)
        else:
            out += self.rib_in.clear()
        self._routes_down()
        self.last_reason = reason
        self.last_error = detail
        if was_established:
            self._failures = 1
        else:
            self._failures += 1
        self._base = State.Idle
        self._retry_at = now + self._backoff() if (restart and self._enabled) else None
        self._transition(out, now, reason, detail)

    def _fail(
        self,
        out: list[Event],
        conn: _Conn,
        now: float,
        reason: IdleReason,
        detail: str,
        *,
        notification: Notification | None,
    ) -> None:
        """One connection fails. If it was the session's only hope, the session goes Idle."""
        if conn.state is State.Established or len(self._conns) == 1:
            self._go_idle(out, now, reason, detail, conn=conn, notification=notification)
        else:
            self._drop(out, conn, notification)
            self._transition(out, now)

    def _peer_restarted(self, out: list[Event], now: float, old: _Conn) -> None:
        """A new OPEN with the GR capability while `old` is Established: the peer restarted and
        `old` is dead (RFC 4724 §4.2). Close it silently, keep the routes stale, go on."""
        assert old.negotiated is not None and old.negotiated.peer_graceful_restart is not None
        self._conns.pop(old.id, None)
        out.append(Close(old.id))
        out += self.gr.keep(now, old.negotiated.peer_graceful_restart)
        self._routes_down()
        self.last_reason = IdleReason.ConnectionLost
        self.last_error = "peer restarted: new connection with graceful restart"
        self._transition(out, now, IdleReason.ConnectionLost, self.last_error)

    # ---- administrative events -------------------------------------------------------------

    def start(self, now: float) -> list[Event]:
        """ManualStart (passive or not, per config). Idempotent."""
        out: list[Event] = []
        if self._enabled:
            return out
        self._enabled = True
        self._failures = 0
        self._retry_at = None
        self._begin(out, now)
        return out

    def _begin(self, out: list[Event], now: float) -> None:
        if self.config.passive:
            self._base = State.Active
            self._retry_at = None
        else:
            self._base = State.Connect
            conn = self._new_conn(outgoing=True, state=State.Connect)
            out.append(Connect(conn.id))
            self._retry_at = now + self._backoff()
        self._transition(out, now)

    def stop(
        self,
        now: float,
        *,
        reason: IdleReason = IdleReason.AdministrativeShutdown,
        subcode: int = CeaseSubcode.AdministrativeShutdown,
        message: str = "",
    ) -> list[Event]:
        """ManualStop: Cease (with an RFC 9003 message) on open connections, then Idle."""
        out: list[Event] = []
        self._enabled = False
        notification = Notification.shutdown(subcode, message)
        if subcode not in (CeaseSubcode.AdministrativeShutdown, CeaseSubcode.AdministrativeReset):
            notification = Notification(code=ErrorCode.Cease, subcode=subcode)
        had_connections = any(c.state >= State.OpenSent for c in self._conns.values())
        for conn in list(self._conns.values()):
            self._drop(out, conn, notification)
        out += self.rib_in.clear()
        self.outbound.clear()
        self._base = State.Idle
        self._retry_at = None
        self.last_reason = reason
        if had_connections:
            self.last_error = f"sent NOTIFICATION {notification_text(notification)}"
        self._transition(out, now, reason, self.last_error)
        return out

    # ---- transport events ------------------------------------------------------------------

    def connection_made(self, conn_id: int, now: float, *, local_address: bytes) -> list[Event]:
        """Our outgoing connection is up (Tcp_CR_Acked): send OPEN."""
        out: list[Event] = []
        conn = self._conns.get(conn_id)
        if conn is None or conn.state is not State.Connect:
            out.append(Close(conn_id))
            return out
        conn.local_address = local_address
        self._retry_at = None
        self._open_sent(out, conn, now)
        self._transition(out, now)
        return out

    def connection_failed(self, conn_id: int, now: float, detail: str = "") -> list[Event]:
        """Our outgoing connection attempt failed (TcpConnectionFails): Active, retry later."""
        out: list[Event] = []
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return out
        if not self._conns and self._enabled:
            self._failures += 1
            self._base = State.Active
            self._retry_at = now + self._backoff()
            if detail:
                self.last_error = f"connect: {detail}"
        self._transition(out, now)
        self._release_parked(out, now)
        return out

    def accept(self, now: float, *, local_address: bytes) -> tuple[int | None, list[Event]]:
        """The peer connected to us. Returns the new connection id, or None: refuse it."""
        out: list[Event] = []
        established = self.established
        if not self._enabled or (established is not None and not self._gr_helper(established)):
            return None, out
        # With graceful restart, a new connection while Established may be the peer back from
        # a restart we did not notice (RFC 4724 §4.2): its OPEN decides (`_on_open`).
        for conn in list(self._conns.values()):
            if not conn.outgoing and conn is not established:
                self._drop(out, conn, None)  # a newer incoming connection replaces a stale one
        conn = self._new_conn(outgoing=False, state=State.OpenSent)
        conn.local_address = local_address
        if self._base is State.Idle:
            self._base = State.Active
        self._open_sent(out, conn, now)
        self._transition(out, now)
        return conn.id, out

    def connection_lost(self, conn_id: int, now: float) -> list[Event]:
        out: list[Event] = []
        conn = self._conns.get(conn_id)
        if conn is None:
            return out
        if conn.state is State.Connect:
            return self.connection_failed(conn_id, now, "connection lost")
        self._fail(
            out,
            conn,
            now,
            IdleReason.ConnectionLost,
            "connection closed by peer",
            notification=None,
        )
        self._release_parked(out, now)
        return out

    # ---- timers ----------------------------------------------------------------------------

    def handle_timer(self, now: float) -> list[Event]:
        out: list[Event] = []
        for conn in list(self._conns.values()):
            if conn.id not in self._conns:
                continue
            if conn.hold_at is not None and now >= conn.hold_at:
                notification = Notification(code=ErrorCode.HoldTimerExpired)
                self._fail(
                    out,
                    conn,
                    now,
                    IdleReason.HoldTimerExpired,
                    "sent NOTIFICATION HoldTimerExpired",
                    notification=notification,
                )
                continue
            if conn.keepalive_at is not None and now >= conn.keepalive_at:
                self._send(out, conn, Keepalive())
                conn.keepalive_at = now + conn.keepalive_time
            if conn.parked_until is not None and now >= conn.parked_until:
                # The peer never answered on the others: give them up, confirm this one.
                for other in list(self._conns.values()):
                    if other is not conn and other.remote_open is None:
                        self._drop(out, other, _COLLISION)
        self._release_parked(out, now)
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._on_retry(out, now)
        out += self.gr.on_timer(now)
        return out

    def _on_retry(self, out: list[Event], now: float) -> None:
        if not self._enabled:
            return
        if self._base is State.Idle and not self._conns:
            self._begin(out, now)  # automatic restart after the idle hold
            return
        if self.config.passive or self.established is not None:
            return
        if any(c.state >= State.OpenSent for c in self._conns.values()):
            # RFC 4271: ConnectRetry stops once a connection is open. Ours would reach a peer
            # Established on its own one, which may take it for a restart (see `_park`).
            return
        # ConnectRetry expired: abandon a pending attempt and start another.
        for conn in list(self._conns.values()):
            if conn.state is State.Connect:
                self._drop(out, conn, None)
        if any(c.outgoing for c in self._conns.values()):
            return
        self._base = State.Connect
        conn = self._new_conn(outgoing=True, state=State.Connect)
        out.append(Connect(conn.id))
        self._retry_at = now + self._backoff()
        self._transition(out, now)

    # ---- messages --------------------------------------------------------------------------

    def data_received(self, conn_id: int, data: bytes, now: float) -> list[Event]:
        out: list[Event] = []
        conn = self._conns.get(conn_id)
        if conn is None:
            return out
        conn.framer.feed(data)
        while conn.id in self._conns:
            try:
                item = conn.framer.next_message()
            except BGPError as exc:
                self._protocol_error(out, conn, now, exc)
                break
            if item is None:
                break
            try:
                self._message(out, conn, now, *item)
            except BGPError as exc:
                self._protocol_error(out, conn, now, exc)
                break
        self._release_parked(out, now)
        return out

    def _protocol_error(self, out: list[Event], conn: _Conn, now: float, exc: BGPError) -> None:
        notification = Notification.from_error(exc)
        reason = (
            IdleReason.OpenRejected
            if exc.code == ErrorCode.OPENMessageError
            else IdleReason.FiniteStateMachineError
            if exc.code == ErrorCode.FiniteStateMachineError
            else IdleReason.ProtocolError
        )
        detail = f"sent NOTIFICATION {notification_text(notification)}"
        if exc.reason:
            detail += f": {exc.reason}"
        self._fail(out, conn, now, reason, detail, notification=notification)

    def _fsm_error(self, conn: _Conn, msg_type: int) -> BGPError:
        sub = {
            State.OpenSent: FiniteStateMachineErrorSubcode.ReceiveUnexpectedMessageInOpenSentState,
            State.OpenConfirm: (
                FiniteStateMachineErrorSubcode.ReceiveUnexpectedMessageInOpenConfirmState
            ),
            State.Established: (
                FiniteStateMachineErrorSubcode.ReceiveUnexpectedMessageInEstablishedState
            ),
        }.get(conn.state, FiniteStateMachineErrorSubcode.UnspecifiedError)
        # RFC 6608 §4: the data is the type of the unexpected message.
        return BGPError(
            ErrorCode.FiniteStateMachineError,
            sub,
            bytes((msg_type,)),
            reason=f"message type {msg_type} in {conn.state.name}",
        )

    def _message(
        self, out: list[Event], conn: _Conn, now: float, msg_type: int, body: bytes
    ) -> None:
        self.counters.on_received(msg_type, body)
        if msg_type == NOTIFICATION:
            received = decode_message(msg_type, body)
            assert isinstance(received, Notification)
            detail = f"received NOTIFICATION {notification_text(received)}"
            self._fail(out, conn, now, IdleReason.NotificationReceived, detail, notification=None)
            return
        if conn.hold_at is not None and conn.hold_time:
            conn.hold_at = now + conn.hold_time
        if conn.state is State.OpenSent:
            if conn.parked_until is not None and msg_type == KEEPALIVE:
                conn.peer_keepalive = True  # Established once we confirm (`_confirm`)
                return
            if msg_type != OPEN or conn.remote_open is not None:
                raise self._fsm_error(conn, msg_type)
            opened = decode_message(msg_type, body)
            assert isinstance(opened, Open)
            self._on_open(out, conn, now, opened)
        elif conn.state is State.OpenConfirm:
            if msg_type != KEEPALIVE:
                raise self._fsm_error(conn, msg_type)
            self._on_established(out, conn, now)
        elif conn.state is State.Established:
            if msg_type == UPDATE:
                self._on_update(out, conn, now, body)
            elif msg_type == ROUTE_REFRESH:
                refresh = decode_message(msg_type, body)
                assert isinstance(refresh, RouteRefresh)
                self._on_route_refresh(out, conn, refresh)
            elif msg_type != KEEPALIVE:
                raise self._fsm_error(conn, msg_type)

    def _on_open(self, out: list[Event], conn: _Conn, now: float, opened: Open) -> None:
        check_open(self.config, opened)
        conn.remote_open = opened
        # §6.8 collision detection against every connection that has the peer's OPEN.
        for other in list(self._conns.values()):
            if other is conn or other.remote_open is None:
                continue
            if (
                other.state is State.Established
                and not conn.outgoing
                and self._gr_helper(other)
                and graceful_restart_of(opened) is not None
            ):
                # The peer restarted (RFC 4724 §4.2), or it collides: its answer to our OPEN
                # on `conn` tells (KEEPALIVE: `_on_established`; a colliding peer closes it).
                continue
            if other.state >= State.OpenConfirm:
                # We sent our KEEPALIVE on `other`: the peer may be Established there, and a
                # NOTIFICATION would end its graceful restart. The newer connection loses.
                loser = conn
            else:  # both parked or new: neither has our KEEPALIVE
                keep_out = collision_keeps_outgoing(
                    local_id=self.config.router_id,
                    remote_id=opened.bgp_id,
                    local_asn=self.config.local_asn,
                    remote_asn=opened.asn,
                )
                # The loser is the connection opened by the side that does not win.
                loser = conn if conn.outgoing != keep_out else other
            self._drop(out, loser, _COLLISION)
            if loser is conn:
                self._transition(out, now)
                return
        neg = negotiate(self._local_open, opened, ebgp=self.config.ebgp)
        conn.negotiated = neg
        conn.families = neg.families & self.config.families
        conn.hold_time = neg.hold_time
        conn.keepalive_time = (
            max(1, min(self.config.keepalive_time or neg.hold_time // 3, neg.hold_time // 3))
            if neg.hold_time
            else 0
        )
        conn.hold_at = now + conn.hold_time if conn.hold_time else None
        if self._unanswered(conn):
            self._park(conn, now)
            return
        self._confirm(out, conn, now)

    def _unanswered(self, conn: _Conn) -> bool:
        """Another connection without the peer's OPEN: one we opened may still wait in the
        peer's accept queue; one the peer opened has its OPEN on the way."""
        return any(o is not conn and o.remote_open is None for o in self._conns.values())

    def _park(self, conn: _Conn, now: float) -> None:
        """Hold our KEEPALIVE on `conn` (the peer's OPEN is in) until every other connection
        has the peer's OPEN (then §6.8 picks one, on both sides alike) or is gone. Our
        KEEPALIVE is what makes the peer Established; a peer Established on one connection
        that then accepts our other one takes it for a second restart (RFC 4724 §4.2; BIRD:
        "Neighbor graceful restart detected - already pending") and flushes every stale route
        not re-sent yet. Bounded at 2/3 of the hold time (the peer's timer in OpenConfirm);
        then the other connections are given up."""
        conn.parked_until = now + (conn.hold_time * 2 / 3 if conn.hold_time else OPEN_CONFIRM_WAIT)

    def _release_parked(self, out: list[Event], now: float) -> None:
        for conn in list(self._conns.values()):
            parked = conn.parked_until is not None and conn.id in self._conns
            if parked and not self._unanswered(conn):
                self._confirm(out, conn, now)

    def _confirm(self, out: list[Event], conn: _Conn, now: float) -> None:
        """OpenSent -> OpenConfirm: our KEEPALIVE (RFC 4271 §8.2.2)."""
        conn.parked_until = None
        conn.state = State.OpenConfirm
        self._send(out, conn, Keepalive())
        conn.keepalive_at = now + conn.keepalive_time if conn.keepalive_time else None
        self._transition(out, now)
        if conn.peer_keepalive:
            self._on_established(out, conn, now)

    def _on_established(self, out: list[Event], conn: _Conn, now: float) -> None:
        neg = conn.negotiated
        assert neg is not None
        for other in list(self._conns.values()):
            if other is conn:
                continue
            if other.state is State.Established and self._gr_helper(other):
                # The peer confirmed a new connection: it restarted (RFC 4724 §4.2).
                self._peer_restarted(out, now, other)
            else:
                self._drop(out, other, _COLLISION)
        conn.state = State.Established
        conn.framer.max_size = neg.rx.max_message
        if conn.remote_open is not None:
            self.remote_router_id = conn.remote_open.bgp_id
        self._failures = 0
        self._retry_at = None
        self.last_error = ""
        self.last_reason = None
        self.restart.restarting = False  # the R bit only until the first session
        self._transition(out, now)
        out += self.gr.on_established(now, neg.peer_graceful_restart)
        # The initial table, then End-of-RIB per family (RFC 4724 §2).
        families = sorted(self.families)
        self._send_wire(out, conn, self.outbound.established(families, neg.tx, conn.local_address))
        if not self.restart.defer_end_of_rib():
            self._send_wire(out, conn, self.outbound.end_of_rib(families, neg.tx))

    def release_end_of_rib(self) -> list[Event]:
        """Stop holding End-of-RIB; send it now if the session is Established and owes it."""
        out: list[Event] = []
        conn = self.established
        if self.restart.release() and conn is not None and conn.negotiated is not None:
            tx = conn.negotiated.tx
            self._send_wire(out, conn, self.outbound.end_of_rib(sorted(self.families), tx))
        return out

    def _on_update(self, out: list[Event], conn: _Conn, now: float, body: bytes) -> None:
        assert conn.negotiated is not None
        update = decode_update(body, conn.negotiated.rx)
        family = update.end_of_rib
        if family is not None:
            self.eor_received.add(family)
            out += self.gr.on_end_of_rib(family)
            return
        out += self.inbound.receive(update, body, conn.families, self.rib_in)
        limit = self.config.max_prefixes
        if limit and len(self.rib_in) > limit:
            # RFC 4486 §4: AFI, SAFI and the upper bound.
            afi, safi = update.mp_reach.family if update.mp_reach else (1, 1)
            data = afi.to_bytes(2, "big") + bytes((safi,)) + limit.to_bytes(4, "big")
            notification = Notification(
                code=ErrorCode.Cease, subcode=CeaseSubcode.MaximumNumberOfPrefixesReached, data=data
            )
            detail = f"sent NOTIFICATION {notification_text(notification)}: over {limit} prefixes"
            self._go_idle(
                out,
                now,
                IdleReason.MaxPrefixesExceeded,
                detail,
                conn=conn,
                notification=notification,
            )

    def _on_route_refresh(self, out: list[Event], conn: _Conn, refresh: RouteRefresh) -> None:
        assert conn.negotiated is not None
        messages, served = self.outbound.route_refresh(
            refresh, self.families, conn.negotiated.tx, conn.local_address
        )
        self._send_wire(out, conn, messages)
        if served is not None:
            out.append(served)

    # ---- routes ----------------------------------------------------------------------------

    def set_routes(self, desired: Desired | Table) -> list[Event]:
        """The new desired routes (a `Desired`, or a plain table). Established: sends only the
        difference (grouped, packed)."""
        if not isinstance(desired, Desired):
            desired = Desired.of(desired)
        out: list[Event] = []
        conn = self.established
        tx = conn.negotiated.tx if conn is not None and conn.negotiated is not None else None
        local = conn.local_address if conn is not None else b""
        messages = self.outbound.set_routes(desired, sorted(self.families), tx, local)
        if conn is not None:
            self._send_wire(out, conn, messages)
        return out

    def set_reflected(
        self, changes: Mapping[Family, Mapping[Prefix, PathAttributes | None]]
    ) -> list[Event]:
        """Routes reflected to this peer changed (RFC 4456; None: gone). Established: sends
        the difference; our own advertisements keep their prefixes (`Outbound.set_reflected`)."""
        out: list[Event] = []
        conn = self.established
        tx = conn.negotiated.tx if conn is not None and conn.negotiated is not None else None
        local = conn.local_address if conn is not None else b""
        messages = self.outbound.set_reflected(changes, sorted(self.families), tx, local)
        if conn is not None:
            self._send_wire(out, conn, messages)
        return out

    def routes_changed(
        self, changes: Mapping[Family, Sequence[tuple[Nlri, Any, Any]]]
    ) -> list[Event]:
        """The shared desired tables were changed in place (by the runtime, for a delta): per
        family (key, value before, value after). Established: sends those keys' changes."""
        out: list[Event] = []
        conn = self.established
        if conn is None or conn.negotiated is None:
            return out
        messages = self.outbound.routes_changed(
            changes, self.families, conn.negotiated.tx, conn.local_address
        )
        self._send_wire(out, conn, messages)
        return out

    def request_refresh(self, family: Family) -> list[Event]:
        """Ask the peer to re-send `family` (ROUTE-REFRESH), if negotiated."""
        out: list[Event] = []
        conn = self.established
        neg = self.negotiated
        if conn is not None and neg is not None and neg.route_refresh and family in self.families:
            self._send(out, conn, RouteRefresh(afi=family[0], safi=family[1]))
        return out


__all__ = [
    "Close",
    "Connect",
    "Event",
    "GracefulRestartNote",
    "IdleReason",
    "RibInChanged",
    "RibInStale",
    "RouteRefreshServed",
    "Send",
    "Session",
    "SessionConfig",
    "State",
    "StateChanged",
    "UpdateOutcome",
    "collision_keeps_outgoing",
]
