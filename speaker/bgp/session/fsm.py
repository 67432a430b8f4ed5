"""The BGP session state machine (RFC 4271 §8), sans-IO.

One `Session` per configured peer. It does no I/O and reads no clock: the caller feeds it
events (`start`, `stop`, `connection_made`, `accept`, `data_received`, `connection_lost`,
`handle_timer`), each taking `now` (seconds, any monotonic origin), and carries out the returned
actions (`Connect`, `Send`, `Close`) in order. `next_deadline()` says when to call
`handle_timer` next. Two sessions can be wired back to back in memory.

A session holds up to two TCP connections at once (ours and the peer's) while they race through
OpenSent/OpenConfirm; collision detection (§6.8, with the RFC 6286 tie-break on equal
identifiers) closes one of them with Cease/Connection Collision Resolution. Timers are
deadlines: ConnectRetry (jittered, doubling per consecutive failure), Hold (240 s in OpenSent,
then the negotiated minimum; 0 = none) and Keepalive. Every transition to Idle carries an
`IdleReason`; a received NOTIFICATION is never answered.

The session also owns the peer's Adj-RIB-In (with the `max_prefixes` limit: Cease/1) and its
Adj-RIB-Out: `set_routes()` hands it the desired table; while Established, only the difference
is sent, and on establishment the whole table followed by End-of-RIB per family.

Graceful restart (RFC 4724): with `SessionConfig.graceful_restart` the OPEN carries the
capability with the restart time and the forwarding bit for every family (the forwarding state
is the node's, it survives a speaker restart); a `Session(restarting=True)` also sets the R bit
until it is first Established. As the helper, when the TCP connection of a session whose peer
sent the capability is lost (or its hold timer expires), the peer's routes of the families in
its capability stay in the Adj-RIB-In as stale: until the peer's End-of-RIB per family (what
was not re-sent is removed), until the peer's restart time if it does not come back, and
removed at once if the new OPEN has no capability or no forwarding bit for the family.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from speaker.bgp.rib.adj_rib_in import AdjRibIn
from speaker.bgp.rib.adj_rib_out import AdjRibOut, RibChange, Table, encode_change
from speaker.bgp.rib.update_builder import UpdateBuilder
from speaker.bgp.session.counters import MessageCounters
from speaker.bgp.session.negotiation import Negotiated, negotiate
from speaker.bgp.wire.attributes import (
    AS_SEQUENCE,
    Attribute,
    MpReachNlriAttribute,
    MpUnreachNlriAttribute,
)
from speaker.bgp.wire.capabilities import (
    GR_FORWARDING,
    GR_RESTART,
    ExtendedMessageCapability,
    GracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
)
from speaker.bgp.wire.context import DEFAULT_CONTEXT, MAX_MESSAGE, Family, family_name
from speaker.bgp.wire.errors import (
    BGPError,
    CeaseSubcode,
    ErrorCode,
    FiniteStateMachineErrorSubcode,
    OPENMessageErrorSubcode,
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
    RouteRefreshSubtype,
    Update,
    decode_message,
    decode_update,
)
from speaker.bgp.wire.nlri import Prefix

OPEN_SENT_HOLD_TIME = 240  # RFC 4271 §8.2.2: "a large value", 4 minutes suggested
STALE_PATH_TIME = 360  # helper: stale routes wait this long for End-of-RIB (FRR's default)
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


@dataclass(frozen=True, slots=True)
class GracefulRestartNote:
    """Something the helper did with a peer's stale routes (for the log)."""

    text: str


Event = Connect | Send | Close | StateChanged | GracefulRestartNote


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """What the FSM needs to know about one peer. Identifiers are 32-bit ints."""

    local_asn: int
    peer_asn: int
    router_id: int
    families: frozenset[Family]
    hold_time: int = 90
    keepalive_time: int = 30
    connect_retry_time: float = 5.0
    passive: bool = False
    max_prefixes: int = 0
    extended_message: bool = True
    graceful_restart: bool = False
    restart_time: int = 120

    @property
    def ebgp(self) -> bool:
        return self.local_asn != self.peer_asn


def treat_as_withdraw(update: Update) -> Update:
    """The UPDATE's announced prefixes as withdrawals, nothing else (RFC 7606 §2)."""
    attrs: tuple[Attribute, ...] = ()
    reach = update.mp_reach
    if reach is not None and reach.nlri:
        attrs = (MpUnreachNlriAttribute(afi=reach.afi, safi=reach.safi, withdrawn=reach.nlri),)
    return Update(withdrawn=update.nlri, attributes=attrs)


def build_open(config: SessionConfig, *, restarting: bool = False) -> Open:
    caps: list[object] = [
        MultiprotocolCapability(afi=a, safi=s) for a, s in sorted(config.families)
    ]
    caps.append(RouteRefreshCapability())
    if config.extended_message:
        caps.append(ExtendedMessageCapability())
    if config.graceful_restart:
        families = tuple((a, s, GR_FORWARDING) for a, s in sorted(config.families))
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
        capabilities=tuple(caps),  # type: ignore[arg-type]
    )


def _has_gr(message: Open) -> bool:
    return any(isinstance(c, GracefulRestartCapability) for c in message.capabilities)


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
    hold_at: float | None = None
    keepalive_at: float | None = None
    hold_time: int = 0
    keepalive_time: int = 0


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
        self.rib_out = AdjRibOut()
        self.desired: Table = {}
        self.eor_received: set[Family] = set()
        self.skipped_routes = 0
        self.withdrawn_first_as = 0  # UPDATEs treated as withdraw: wrong first AS (eBGP)
        self.refreshes_served = 0  # ROUTE-REFRESH requests answered by re-sending a family
        self.counters = MessageCounters()
        self._base_open = build_open(config)
        # After a restart, the R bit (RFC 4724 §3) until the first session is Established.
        self._local_open = (
            build_open(config, restarting=True)
            if restarting and config.graceful_restart
            else self._base_open
        )
        # Restarting speaker: End-of-RIB waits for `release_end_of_rib()` while this is set
        # (the runtime holds it until the complete desired state is in).
        self.hold_end_of_rib = False
        self._eor_owed = False
        self.stale: dict[Family, set[Prefix]] = {}  # helper: routes kept over a peer's restart
        self._stale_at: float | None = None
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
        neg = self.negotiated
        return frozenset() if neg is None else neg.families & self.config.families

    def connection_ids(self) -> list[int]:
        return list(self._conns)

    def next_deadline(self) -> float | None:
        times = [self._retry_at] if self._retry_at is not None else []
        if self._stale_at is not None:
            times.append(self._stale_at)
        for conn in self._conns.values():
            if conn.hold_at is not None:
                times.append(conn.hold_at)
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
        """The session (not just one connection) fails: close everything, clear the RIBs."""
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
            self._keep_stale(out, now, peer_gr)
        else:
            self._clear_stale()
            self.rib_in.clear()
        self.rib_out.clear()
        self.eor_received.clear()
        self._eor_owed = False
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

    # ---- graceful restart, helper side (RFC 4724 §4.2) -------------------------------------

    def _keep_stale(self, out: list[Event], now: float, cap: GracefulRestartCapability) -> None:
        kept = {(a, s) for a, s, _ in cap.families} & self.config.families
        for family in list(self.rib_in.routes):
            if family not in kept:
                del self.rib_in.routes[family]
        for family, table in self.rib_in.routes.items():
            self.stale.setdefault(family, set()).update(table)
        count = sum(len(p) for p in self.stale.values())
        if cap.restart_time == 0 or not count:
            self._clear_stale(drop=True)
            return
        self._stale_at = now + cap.restart_time
        out.append(GracefulRestartNote(
            f"graceful restart: keeping {count} routes as stale for up to {cap.restart_time}s"
        ))  # fmt: skip

    def _gr_helper(self, conn: _Conn) -> bool:
        """Both sides sent the GR capability on `conn`: we keep its routes over its restart."""
        return (
            self.config.graceful_restart
            and conn.negotiated is not None
            and conn.negotiated.peer_graceful_restart is not None
        )

    def _peer_restarted(self, out: list[Event], now: float, old: _Conn) -> None:
        """A new OPEN with the GR capability while `old` is Established: the peer restarted and
        `old` is dead (RFC 4724 §4.2). Close it silently, keep the routes stale, go on."""
        assert old.negotiated is not None and old.negotiated.peer_graceful_restart is not None
        self._conns.pop(old.id, None)
        out.append(Close(old.id))
        self._keep_stale(out, now, old.negotiated.peer_graceful_restart)
        self.rib_out.clear()
        self.eor_received.clear()
        self._eor_owed = False
        self.last_reason = IdleReason.ConnectionLost
        self.last_error = "peer restarted: new connection with graceful restart"
        self._transition(out, now, IdleReason.ConnectionLost, self.last_error)

    def _clear_stale(self, *, drop: bool = False, family: Family | None = None) -> int:
        """Forget stale marks (of one family or all); with `drop`, remove those routes too."""
        removed = 0
        for fam in [family] if family is not None else list(self.stale):
            prefixes = self.stale.pop(fam, set())
            if drop:
                table = self.rib_in.routes.get(fam, {})
                for prefix in prefixes:
                    removed += table.pop(prefix, None) is not None
        if not self.stale:
            self._stale_at = None
        return removed

    def _stale_on_established(self, out: list[Event], now: float, conn: _Conn) -> None:
        if not self.stale:
            return
        assert conn.negotiated is not None
        cap = conn.negotiated.peer_graceful_restart
        removed = 0
        for family in list(self.stale):
            if cap is None or not cap.forwarding_preserved(family):
                removed += self._clear_stale(drop=True, family=family)
        if removed:
            out.append(GracefulRestartNote(
                f"graceful restart: removed {removed} stale routes (forwarding state not kept)"
            ))  # fmt: skip
        if self.stale:
            self._stale_at = now + STALE_PATH_TIME

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
        self._clear_stale()
        self.rib_in.clear()
        self.rib_out.clear()
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
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._on_retry(out, now)
        if self._stale_at is not None and now >= self._stale_at:
            removed = self._clear_stale(drop=True)
            out.append(GracefulRestartNote(
                f"graceful restart: timed out, removed {removed} stale routes"
            ))  # fmt: skip
        return out

    def _on_retry(self, out: list[Event], now: float) -> None:
        if not self._enabled:
            return
        if self._base is State.Idle and not self._conns:
            self._begin(out, now)  # automatic restart after the idle hold
            return
        if self.config.passive or self.established is not None:
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
            if msg_type != OPEN:
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
                assert conn.negotiated is not None
                self._on_update(out, conn, now, body)
            elif msg_type == ROUTE_REFRESH:
                refresh = decode_message(msg_type, body)
                assert isinstance(refresh, RouteRefresh)
                self._on_route_refresh(out, conn, refresh)
            elif msg_type != KEEPALIVE:
                raise self._fsm_error(conn, msg_type)

    def _check_open(self, opened: Open) -> None:
        cfg = self.config
        if opened.asn != cfg.peer_asn:
            raise BGPError(
                ErrorCode.OPENMessageError,
                OPENMessageErrorSubcode.BadPeerAS,
                reason=f"peer AS {opened.asn}, expected {cfg.peer_asn}",
            )
        if not cfg.ebgp and opened.bgp_id == cfg.router_id:
            # RFC 6286 §2.2: unique within the AS.
            raise BGPError(
                ErrorCode.OPENMessageError,
                OPENMessageErrorSubcode.BadBGPIdentifier,
                reason="iBGP peer uses our BGP identifier",
            )
        remote_families = {
            (c.afi, c.safi) for c in opened.capabilities if isinstance(c, MultiprotocolCapability)
        } or {(1, 1)}
        if not remote_families & cfg.families:
            # RFC 5492 §5: data = the capabilities we require and the peer lacks.
            required = b"".join(
                MultiprotocolCapability(afi=a, safi=s).encode() for a, s in sorted(cfg.families)
            )
            names = ", ".join(family_name(f) for f in sorted(cfg.families))
            raise BGPError(
                ErrorCode.OPENMessageError,
                OPENMessageErrorSubcode.UnsupportedCapability,
                required,
                reason=f"no common address family (we need one of {names})",
            )

    def _on_open(self, out: list[Event], conn: _Conn, now: float, opened: Open) -> None:
        self._check_open(opened)
        conn.remote_open = opened
        # §6.8 collision detection against a connection already in OpenConfirm or Established.
        for other in list(self._conns.values()):
            if other is conn or other.state < State.OpenConfirm:
                continue
            if other.state is State.Established:
                if not conn.outgoing and self._gr_helper(other) and _has_gr(opened):
                    self._peer_restarted(out, now, other)
                    continue
                loser = conn
            else:
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
        conn.hold_time = neg.hold_time
        conn.keepalive_time = (
            max(1, min(self.config.keepalive_time or neg.hold_time // 3, neg.hold_time // 3))
            if neg.hold_time
            else 0
        )
        conn.state = State.OpenConfirm
        self._send(out, conn, Keepalive())
        conn.hold_at = now + conn.hold_time if conn.hold_time else None
        conn.keepalive_at = now + conn.keepalive_time if conn.keepalive_time else None
        self._transition(out, now)

    def _on_established(self, out: list[Event], conn: _Conn, now: float) -> None:
        assert conn.negotiated is not None
        for other in list(self._conns.values()):
            if other is not conn:
                self._drop(out, other, _COLLISION)
        conn.state = State.Established
        conn.framer.max_size = conn.negotiated.rx.max_message
        self._failures = 0
        self._retry_at = None
        self.last_error = ""
        self.last_reason = None
        self._local_open = self._base_open  # the R bit only until the first session
        self._transition(out, now)
        self._stale_on_established(out, now, conn)
        # The initial table, then End-of-RIB per family (RFC 4724 §2).
        self.rib_out.clear()
        families = sorted(self.families)
        self._send_change(out, conn, self.rib_out.update(self.desired, families))
        if self.hold_end_of_rib:
            self._eor_owed = True
            return
        self._send_end_of_rib(out, conn)

    def release_end_of_rib(self) -> list[Event]:
        """Stop holding End-of-RIB; send it now if the session is Established and owes it."""
        out: list[Event] = []
        self.hold_end_of_rib = False
        conn = self.established
        if self._eor_owed and conn is not None:
            self._send_end_of_rib(out, conn)
        self._eor_owed = False
        return out

    def _send_end_of_rib(self, out: list[Event], conn: _Conn) -> None:
        assert conn.negotiated is not None
        families = sorted(self.families)
        builder = UpdateBuilder(conn.negotiated.tx)
        for family in families:
            eor = builder.end_of_rib(family)
            self.counters.on_sent(eor)
            out.append(Send(conn.id, eor))

    def _send_change(self, out: list[Event], conn: _Conn, change: RibChange) -> None:
        if not change:
            return
        assert conn.negotiated is not None
        messages, skipped = encode_change(
            change, UpdateBuilder(conn.negotiated.tx), conn.local_address
        )
        self.skipped_routes = skipped
        if messages:
            for message in messages:
                self.counters.on_sent(message)
            out.append(Send(conn.id, b"".join(messages)))

    def _on_update(self, out: list[Event], conn: _Conn, now: float, body: bytes) -> None:
        assert conn.negotiated is not None
        update = decode_update(body, conn.negotiated.rx)
        family = update.end_of_rib
        if family is not None:
            self.eor_received.add(family)
            if family in self.stale:
                removed = self._clear_stale(drop=True, family=family)
                out.append(GracefulRestartNote(
                    f"graceful restart: End-of-RIB {family_name(family)}, removed {removed}"
                    " stale routes not re-sent"
                ))  # fmt: skip
            return
        if self.stale:
            self._refreshed(update)
        if self.config.ebgp and not self._first_as_ok(update):
            unreach = update.mp_unreach
            self.rib_in.apply(
                Update(withdrawn=update.withdrawn, attributes=(unreach,) if unreach else ())
            )
            update = treat_as_withdraw(update)
            self.withdrawn_first_as += 1
        self.rib_in.apply(update)
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

    def _refreshed(self, update: Update) -> None:
        """Prefixes the peer re-sent (or withdrew) are no longer stale."""
        v4 = self.stale.get((1, 1))
        if v4 is not None:
            v4.difference_update(update.nlri)
            v4.difference_update(update.withdrawn)
        for attr in (update.mp_reach, update.mp_unreach):
            if attr is None:
                continue
            stale = self.stale.get(attr.family)
            if stale is not None:
                nlri = attr.nlri if isinstance(attr, MpReachNlriAttribute) else attr.withdrawn
                stale.difference_update(nlri)

    def _first_as_ok(self, update: Update) -> bool:
        """RFC 4271 §6.3: from an external peer, the leftmost AS must be the peer's; RFC 7606
        §7.2 makes a failure treat-as-withdraw rather than a session reset."""
        if not update.nlri and (update.mp_reach is None or not update.mp_reach.nlri):
            return True
        path = update.as_path()
        if not path or path[0][0] != AS_SEQUENCE or not path[0][1]:
            return False
        return path[0][1][0] == self.config.peer_asn

    def _on_route_refresh(self, out: list[Event], conn: _Conn, refresh: RouteRefresh) -> None:
        family = (refresh.afi, refresh.safi)
        if refresh.subtype != RouteRefreshSubtype.NORMAL or family not in self.families:
            return  # RFC 7313 §5: ignore unknown subtypes; RFC 2918 §4: ignore unknown families
        self.refreshes_served += 1
        self._send_change(out, conn, self.rib_out.full(family))

    # ---- routes ----------------------------------------------------------------------------

    def set_routes(self, desired: Table) -> list[Event]:
        """The new desired table. Established: sends only the difference (grouped, packed)."""
        out: list[Event] = []
        self.desired = desired
        conn = self.established
        if conn is not None:
            change = self.rib_out.update(desired, sorted(self.families))
            self._send_change(out, conn, change)
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
    "MAX_MESSAGE",
    "Close",
    "Connect",
    "Event",
    "GracefulRestartNote",
    "IdleReason",
    "Send",
    "Session",
    "SessionConfig",
    "State",
    "StateChanged",
    "build_open",
    "collision_keeps_outgoing",
]
