"""The asyncio runtime: moves bytes between sockets and `speaker.bgp.session.fsm.Session`s,
fires their deadlines, and converges on a desired state.

    speaker = Speaker()
    await speaker.apply(state)      # returns once the state is in every Adj-RIB-Out
    speaker.status()                # per-peer name/address/state/since/prefixes/lastError
    await speaker.close()           # Cease/Administrative Shutdown to every peer

Each peer has its own `PeerRunner` (its session, its connections, one timer); nothing one
peer does waits on another: writes never block (asyncio buffers per transport), connects are
separate tasks.

Received routes go through `speaker.route_service.RouteService` (import policy, Loc-RIB,
kernel FIB; docs/route-import.md): each runner hands it its session's Adj-RIB-In changes.
Route reflection (RFC 4456, `speaker.route_reflection`) is the Loc-RIB's second consumer: what
it reflects goes into each iBGP peer's export view (`Session.set_reflected`), next to our own
advertisements (docs/in-cluster-routing.md).

Peers with `bfd` get a BFD session (`speaker.bfd_service`), and a `BgpGate` (RFC 5882, see
`speaker.bfd.coupling` and docs/bfd.md) decides what its state means for the BGP session: an
Up -> Down tears the BGP session down at once (Cease/BFD Down) and keeps it down until BFD is
Up again; BFD that has never been Up holds nothing back. Changing only a peer's `bfd` retunes
its BFD session (a Poll Sequence) and leaves the BGP session alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from speaker.api.ipc import BfdStatus, Delta, PeerStatus
from speaker.api.route_status import FibSummary, Routes, RoutesRequest
from speaker.api.routes import AttributeInterner
from speaker.api.schema import DesiredState, Listen, Peer
from speaker.bfd.coupling import BgpGate, GateAction
from speaker.bfd.demux import SINGLE_HOP_TTL
from speaker.bfd.packet import diagnostic_name
from speaker.bfd.session import StateChanged as BfdStateChanged
from speaker.bfd.session import Timers
from speaker.bfd_service import BfdPeer, BfdService
from speaker.bgp.rib.adj_rib_in import RibInChanged, RibInStale
from speaker.bgp.rib.adj_rib_out import Desired, Nlri, PathAttributes
from speaker.bgp.rib.reflection import ExportChanges
from speaker.bgp.session.fsm import (
    Close,
    Connect,
    Event,
    GracefulRestartNote,
    IdleReason,
    RouteRefreshServed,
    Send,
    Session,
    SessionConfig,
    State,
    StateChanged,
    UpdateOutcome,
)
from speaker.bgp.session.inbound import Outcome
from speaker.bgp.wire.context import Family, family_name
from speaker.bgp.wire.errors import CeaseSubcode
from speaker.bgp.wire.nlri import Prefix, prefix_to_str
from speaker.control import StateRefused
from speaker.route_reflection import RouteReflection
from speaker.route_service import RouteService, SessionEvent
from speaker.session_inputs import RouteStore, local_asn, session_config
from speaker.transport import (
    GTSM_TTL,
    Listener,
    SocketOptions,
    apply_options,
    connect,
    local_address_bytes,
    normalise,
)

log = logging.getLogger("kubgp.speaker")


def socket_options(state: DesiredState, peer: Peer) -> SocketOptions:
    """TTL: GTSM (RFC 5082) sends 255 and accepts only 256 - ebgpMultihop and up (255 for a
    directly connected peer); otherwise eBGP sends `ebgpMultihop`, iBGP the OS default."""
    ebgp = local_asn(state, peer) != peer.asn
    if peer.ttl_security:
        ttl: int | None = GTSM_TTL
        min_ttl: int | None = GTSM_TTL + 1 - peer.ebgp_multihop
    else:
        ttl, min_ttl = (peer.ebgp_multihop if ebgp else None), None
    return SocketOptions(
        source_address=peer.source_address, ttl=ttl, password=peer.password, min_ttl=min_ttl
    )


def bfd_peer(peer: Peer) -> BfdPeer | None:
    """The peer's BFD session, if it has one: RFC 5881 single hop (TTL 255 only), or RFC 5883
    multihop when `ebgpMultihop` > 1. Multihop checks the TTL only with `ttlSecurity` (then
    TTL >= 256 - ebgpMultihop, as GTSM does for BGP): RFC 5883 asks for no check, and BIRD
    sends multihop BFD with the system's default TTL (64). From `sourceAddress`, or the
    route's source address."""
    if peer.bfd is None:
        return None
    multihop = peer.ebgp_multihop > 1
    if not multihop:
        min_ttl = SINGLE_HOP_TTL
    else:
        min_ttl = SINGLE_HOP_TTL + 1 - peer.ebgp_multihop if peer.ttl_security else 1
    return BfdPeer(
        remote=normalise(peer.address),
        local=normalise(peer.source_address) if peer.source_address else None,
        multihop=multihop,
        min_ttl=min_ttl,
        timers=Timers.from_ms(
            min_tx=peer.bfd.min_tx, min_rx=peer.bfd.min_rx, multiplier=peer.bfd.multiplier
        ),
    )


def _session_part(peer: Peer) -> Peer:
    """What of a peer needs a new session when it changes: all but `bfd` (retuned in place)
    and `import` (the Loc-RIB re-imports the Adj-RIB-In)."""
    return replace(peer, bfd=None, import_rules=())


def connect_timeout(peer: Peer) -> float:
    """How long one connect may take: below the shortest jittered ConnectRetry (75 %)."""
    return max(0.5, 0.7 * peer.connect_retry_time)


def no_answer(peer: Peer, timeout: float) -> str:
    """What a connect timeout means. With MD5 the kernel says nothing more: a peer that has
    another key, or none, drops our signed SYN silently (and we drop its unsigned one)."""
    text = f"no answer within {timeout:g}s"
    if peer.password is not None:
        text += " (TCP MD5 password mismatch likely: the peer drops segments it cannot verify)"
    return text


def _cannot_listen(listen: Listen, exc: OSError) -> str:
    return f"cannot listen on {listen.address} port {listen.port}: {exc.strerror or exc}"


OUTCOME_REPORT_INTERVAL = 60.0  # seconds between two count lines of one peer and outcome
UPDATE_HEX_LIMIT = 4096  # octets of an UPDATE body logged in hex
NLRI_SHOWN = 8  # prefixes named in a log line


def nlri_text(event: UpdateOutcome) -> str:
    parts = []
    for family, prefixes in event.nlri:
        shown = " ".join(prefix_to_str(p, family[0]) for p in prefixes[:NLRI_SHOWN])
        more = f" (+{len(prefixes) - NLRI_SHOWN} more)" if len(prefixes) > NLRI_SHOWN else ""
        parts.append(f"{family_name(family)} {shown}{more}")
    return "; ".join(parts) or "none"


def update_hex(body: bytes) -> str:
    text = body[:UPDATE_HEX_LIMIT].hex()
    if len(body) > UPDATE_HEX_LIMIT:
        text += f"... ({len(body)} octets, first {UPDATE_HEX_LIMIT} shown)"
    return text


class OutcomeLog:
    """One peer's inbound outcomes (RFC 7606 treat-as-withdraw and attribute discard, AS loops,
    families not negotiated) in the log without a flood: the first of each outcome in full (the
    error, the NLRI, the UPDATE body in hex: RFC 7606 §6), after that a count, at most one line
    per outcome every `OUTCOME_REPORT_INTERVAL` and one when the session goes down. The counts
    since the session was created are in the metrics (`kubgp_bgp_update_outcomes_total`)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._reported_at: dict[Outcome, float] = {}
        self._unreported: dict[Outcome, int] = {}
        self._last: dict[Outcome, UpdateOutcome] = {}

    @staticmethod
    def _level(outcome: Outcome) -> int:
        # Our own AS in a path is routine with eBGP fabrics (a ToR sending our routes back).
        return logging.INFO if outcome is Outcome.AsLoop else logging.WARNING

    def note(self, event: UpdateOutcome, now: float) -> None:
        outcome = event.outcome
        first = outcome not in self._reported_at
        if first:
            self._reported_at[outcome] = now
            log.log(self._level(outcome),
                    "%s: UPDATE %s: %s; NLRI %s; UPDATE body %s (further ones are counted, not "
                    "shown)", self.label, outcome.value, event.error, nlri_text(event),
                    update_hex(event.update))  # fmt: skip
            return
        self._unreported[outcome] = self._unreported.get(outcome, 0) + 1
        self._last[outcome] = event
        if now - self._reported_at[outcome] >= OUTCOME_REPORT_INTERVAL:
            self._report(outcome, now)

    def flush(self, now: float) -> None:
        for outcome in list(self._unreported):
            self._report(outcome, now)

    def _report(self, outcome: Outcome, now: float) -> None:
        count = self._unreported.pop(outcome, 0)
        last = self._last.pop(outcome, None)
        self._reported_at[outcome] = now
        if count and last is not None:
            log.log(self._level(outcome), "%s: %d more UPDATEs %s since the last report (last: "
                    "%s; NLRI %s)", self.label, count, outcome.value, last.error,
                    nlri_text(last))  # fmt: skip


class _Protocol(asyncio.Protocol):
    __slots__ = ("conn", "on_made", "runner", "transport")

    def __init__(self, runner: PeerRunner, conn: int, on_made: list[Event] | None) -> None:
        self.runner = runner
        self.conn = conn
        self.on_made = on_made
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The session learns of the connection here, before any data_received can run, so
        # that our OPEN is written first and the peer's OPEN never meets a Connect state.
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.runner.attached(self.conn, transport, self.on_made)

    def data_received(self, data: bytes) -> None:
        self.runner.on_data(self.conn, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.runner.on_lost(self.conn)


class PeerRunner:
    """One peer: its Session, its live transports and pending connects, and one timer."""

    def __init__(
        self,
        peer: Peer,
        config: SessionConfig,
        options: SocketOptions,
        *,
        restarting: bool = False,
        forwarding_preserved: bool = True,
        routes: RouteService | None = None,
    ) -> None:
        self.peer = peer
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.session = Session(config, name=peer.name, now=self.loop.time(), restarting=restarting,
                               forwarding_preserved=forwarding_preserved)  # fmt: skip
        self.routes = routes
        self._transports: dict[int, asyncio.Transport] = {}
        self._closing: dict[int, asyncio.Transport] = {}
        self._connecting: dict[int, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.closed = asyncio.Event()
        self.outcomes = OutcomeLog(f"peer {peer.name} ({peer.address})")

    # -- driving the session -------------------------------------------------------------------

    def start(self) -> None:
        self._run(self.session.start(self.loop.time()))

    def stop(self, reason: IdleReason, subcode: int, message: str = "") -> None:
        self._run(self.session.stop(self.loop.time(), reason=reason, subcode=subcode,
                                    message=message))  # fmt: skip
        for task in self._connecting.values():
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = None

    def set_routes(self, desired: Desired) -> None:
        self._run(self.session.set_routes(desired))

    def routes_changed(self, changes: Mapping[Family, Sequence[tuple[Nlri, Any, Any]]]) -> None:
        self._run(self.session.routes_changed(changes))

    def set_reflected(
        self, changes: Mapping[Family, Mapping[Prefix, PathAttributes | None]]
    ) -> None:
        self._run(self.session.set_reflected(changes))

    def _run(self, events: list[Event]) -> None:
        received: list[SessionEvent] = []
        for event in events:
            if isinstance(event, Send):
                transport = self._transports.get(event.conn)
                if transport is not None:
                    transport.write(event.data)
            elif isinstance(event, Connect):
                log.debug("peer %s (%s): connecting (connection %d)", self.peer.name,
                          self.peer.address, event.conn)  # fmt: skip
                task = self.loop.create_task(self._connect(event.conn))
                self._connecting[event.conn] = task
            elif isinstance(event, Close):
                log.debug("peer %s (%s): closing connection %d", self.peer.name,
                          self.peer.address, event.conn)  # fmt: skip
                pending = self._connecting.pop(event.conn, None)
                if pending is not None:
                    pending.cancel()
                transport = self._transports.pop(event.conn, None)
                if transport is not None:
                    self._closing[event.conn] = transport
                    transport.close()  # flushes what was written first
            elif isinstance(event, RibInChanged | RibInStale):
                received.append(event)
            elif isinstance(event, StateChanged):
                if event.old is State.Established:
                    self.outcomes.flush(self.loop.time())
                self._log_state(event)
                received.append(event)
            elif isinstance(event, UpdateOutcome):
                self.outcomes.note(event, self.loop.time())
            elif isinstance(event, RouteRefreshServed):
                log.info("peer %s (%s): ROUTE-REFRESH %s: re-sent %d prefixes", self.peer.name,
                         self.peer.address, family_name(event.family), event.prefixes)  # fmt: skip
            elif isinstance(event, GracefulRestartNote):
                log.info("peer %s (%s): %s", self.peer.name, self.peer.address, event.text)
        if received and self.routes is not None:
            self.routes.session_events(self.peer.name, self.session, received)
        self._schedule()

    def _log_state(self, event: StateChanged) -> None:
        text = f"peer {self.peer.name} ({self.peer.address}): {event.old.name} -> {event.new.name}"
        if event.reason is not None:
            text += f" ({event.reason.value}: {event.detail})" if event.detail else ""
            log.warning(text)
        elif event.new is State.Established:
            neg = self.session.negotiated
            hold = neg.hold_time if neg is not None else 0
            fams = ",".join(family_name(f) for f in sorted(self.session.families))
            log.info("%s (hold %ss, families %s)", text, hold, fams)
        else:
            log.info(text)

    def _schedule(self) -> None:
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._run(self.session.handle_timer(self.loop.time()))

    # -- transport callbacks -------------------------------------------------------------------

    async def _connect(self, conn: int) -> None:
        timeout = connect_timeout(self.peer)
        try:
            sock = await asyncio.wait_for(
                connect(self.peer.address, self.peer.port, self.options), timeout
            )
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._connecting.pop(conn, None)
            detail = no_answer(self.peer, timeout)
            log.info("peer %s (%s): connect: %s", self.peer.name, self.peer.address, detail)
            self._run(self.session.connection_failed(conn, self.loop.time(), detail))
            return
        except OSError as exc:
            self._connecting.pop(conn, None)
            self._run(self.session.connection_failed(conn, self.loop.time(), str(exc)))
            return
        self._connecting.pop(conn, None)
        if conn not in self.session.connection_ids():
            sock.close()
            return
        try:
            await self.loop.connect_accepted_socket(lambda: _Protocol(self, conn, None), sock=sock)
        except OSError as exc:
            sock.close()
            self._run(self.session.connection_failed(conn, self.loop.time(), str(exc)))

    def attached(self, conn: int, transport: asyncio.Transport, events: list[Event] | None) -> None:
        """A transport is up: for an outgoing connection (events None) tell the session now;
        for an accepted one, carry out the events `accept()` returned (our OPEN)."""
        if conn not in self.session.connection_ids():
            # The session gave it up (a collision loser, say) before its transport was up:
            # the Close found nothing to close. Close it now, and send nothing on it (a stale
            # OPEN would leave the peer waiting in OpenConfirm until its hold timer expires).
            log.debug("peer %s (%s): connection %d closed before it was up", self.peer.name,
                      self.peer.address, conn)  # fmt: skip
            transport.close()
            return
        log.debug("peer %s (%s): connection %d up (%s)", self.peer.name, self.peer.address, conn,
                  "ours" if events is None else "theirs")  # fmt: skip
        self._transports[conn] = transport
        if events is not None:
            self._run(events)
            return
        sock = transport.get_extra_info("socket")
        try:
            local = ipaddress.ip_address(normalise(sock.getsockname()[0])).packed
        except OSError:
            transport.abort()
            return
        self._run(self.session.connection_made(conn, self.loop.time(), local_address=local))

    def accept(self, sock: socket.socket) -> None:
        """An incoming connection from this peer's address."""
        try:
            apply_options(sock, SocketOptions(ttl=self.options.ttl, min_ttl=self.options.min_ttl))
            local = local_address_bytes(sock)
        except OSError:
            sock.close()
            return
        conn, events = self.session.accept(self.loop.time(), local_address=local)
        if conn is None:
            sock.close()
            self._run(events)
            return
        log.debug("peer %s (%s): accepted connection %d", self.peer.name, self.peer.address, conn)
        self.loop.create_task(self._accepted(conn, sock, events))

    async def _accepted(self, conn: int, sock: socket.socket, events: list[Event]) -> None:
        try:
            await self.loop.connect_accepted_socket(
                lambda: _Protocol(self, conn, events), sock=sock
            )
        except OSError:
            sock.close()
            self._run(events + self.session.connection_lost(conn, self.loop.time()))

    def on_data(self, conn: int, data: bytes) -> None:
        session = self.session
        eor = len(session.eor_received)
        before = len(session.rib_in) if log.isEnabledFor(logging.DEBUG) else -1
        self._run(session.data_received(conn, data, self.loop.time()))
        if len(session.eor_received) > eor:
            log.info("peer %s (%s): End-of-RIB received; %d prefixes received", self.peer.name,
                     self.peer.address, len(session.rib_in))  # fmt: skip
            if self.routes is not None:
                self.routes.end_of_rib(self.peer.name, session)
        if before >= 0 and len(session.rib_in) != before:
            log.debug("peer %s (%s): %d prefixes received", self.peer.name, self.peer.address,
                      len(session.rib_in))  # fmt: skip

    def on_lost(self, conn: int) -> None:
        self._closing.pop(conn, None)
        if self._transports.pop(conn, None) is not None:
            log.debug("peer %s (%s): connection %d lost", self.peer.name, self.peer.address, conn)
            self._run(self.session.connection_lost(conn, self.loop.time()))
        if not self._transports and not self._closing:
            self.closed.set()

    @property
    def graceful_restart(self) -> bool:
        """Both sides sent the GR capability on the current session: the peer keeps our routes
        as stale if the TCP connection just goes away (no NOTIFICATION)."""
        neg = self.session.negotiated
        return (
            self.session.config.graceful_restart
            and neg is not None
            and neg.peer_graceful_restart is not None
        )

    def status(self) -> PeerStatus:
        s = self.session
        return PeerStatus(
            name=self.peer.name,
            address=self.peer.address,
            state=s.state.name,
            since=time.time() - (self.loop.time() - s.since),
            prefixes_advertised=len(s.rib_out),
            prefixes_received=len(s.rib_in),
            last_error=s.last_error or None,
        )

    async def wait_closed(self, timeout: float) -> None:
        """Wait (bounded) until every transport has flushed and closed."""
        for conn, transport in list(self._transports.items()):
            self._closing[conn] = self._transports.pop(conn)
            transport.close()
        if self._closing:
            self.closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), timeout)
        for transport in self._closing.values():
            transport.abort()


class Speaker:
    """The declarative BGP speaker: give it a whole desired state; it converges to it."""

    def __init__(
        self,
        *,
        restarting: bool = False,
        fib_netns: str | None = None,
        interner: AttributeInterner | None = None,
    ) -> None:
        # restarting: the sessions of the first state applied are a restart (RFC 4724 R bit).
        # fib_netns: the named network namespace whose routing tables received routes go to
        # (tests and benchmarks); None: our own.
        self._restarting = restarting
        self.advertised = RouteStore(interner)  # our own routes, per peer (session_inputs)
        self._hold_eor = False
        self.state: DesiredState | None = None
        self.runners: dict[str, PeerRunner] = {}
        self._by_address: dict[str, PeerRunner] = {}
        self._listener: Listener | None = None
        self._listen: Listen | None = None
        self.bfd: BfdService | None = None
        self.bfd_gates: dict[str, BgpGate] = {}
        self._gate_timers: dict[str, asyncio.TimerHandle] = {}
        self.routes = RouteService(sessions=self._sessions, restarting=restarting, netns=fib_netns)
        # Reflected best paths into iBGP peers' export views, in Loc-RIB order.
        self.reflection = RouteReflection(deliver=self._reflected)
        self.routes.add_consumer(self.reflection.changed)

    def _reflected(self, name: str, changes: ExportChanges) -> None:
        runner = self.runners.get(name)
        if runner is not None:
            runner.set_reflected(changes)

    def _sessions(self) -> dict[str, Session]:
        return {name: runner.session for name, runner in self.runners.items()}

    async def apply(self, state: DesiredState) -> None:
        """Converge on `state`: returns once it is in every peer's Adj-RIB-Out (sending goes on).

        Advertisement changes never reset a session; an added or removed peer touches only that
        peer; a peer whose session parameters (or the local ASN / router id) changed is reset.

        Raises `StateRefused`, having changed nothing, when the listener cannot be set up as
        asked (the address cannot be bound): the old listener, its keys, every session and
        every route stay exactly as they were.
        """
        # Everything that can fail for an operating reason comes first, before any change.
        prepared = await self.routes.prepare(state)
        try:
            self._apply_listener(state.listen, self._md5_keys(state))
        except BaseException:
            await self.routes.abort(prepared)
            raise
        old, self.state = self.state, state
        # Policies, Loc-RIB options and the FIB first: it decides our OPEN's F bit.
        self.routes.commit(prepared)
        wanted = {p.name: p for p in state.peers}
        for name, runner in list(self.runners.items()):
            peer = wanted.get(name)
            if peer is None:
                log.info("peer %s (%s): removed from the configuration", name, runner.peer.address)
                self._remove(name, IdleReason.PeerDeconfigured, CeaseSubcode.PeerDeConfigured)
            elif (
                _session_part(peer) != _session_part(runner.peer)
                or old is None
                or session_config(state, peer) != runner.session.config
                or socket_options(state, peer) != runner.options
            ):
                log.info("peer %s (%s): session parameters changed, resetting", name, peer.address)
                self._remove(
                    name, IdleReason.ConfigurationChange, CeaseSubcode.OtherConfigurationChange
                )
        self.advertised.load(state)
        created: list[str] = []
        for peer in state.peers:
            current = self.runners.get(peer.name)
            if current is None:
                created.append(peer.name)
                new = PeerRunner(
                    peer,
                    session_config(state, peer),
                    socket_options(state, peer),
                    restarting=self._restarting and old is None,
                    forwarding_preserved=self.routes.forwarding_preserved,
                    routes=self.routes,
                )
                new.session.hold_end_of_rib = self._hold_eor
                self.runners[peer.name] = new
                self._by_address[normalise(peer.address)] = new
                new.session.set_routes(self.advertised.desired(peer))
                log.info("peer %s (%s): added, AS %s", peer.name, peer.address, peer.asn)
                if not self._held(peer.name):
                    new.start()
            else:
                current.peer = peer  # at most its `bfd` or `import` changed
                current.set_routes(self.advertised.desired(peer))
        self._apply_reflection(state, created)
        self._apply_bfd(state)

    def _apply_reflection(self, state: DesiredState, created: list[str]) -> None:
        """The reflector follows the state's iBGP peers and cluster id (what changes for the
        existing sessions is delivered); a session created by this apply starts from its
        whole reflected table (it has nothing yet, whatever changed)."""
        rib = self.routes.rib
        assert rib is not None  # `commit` made it
        self.reflection.configure(state, rib)
        for name in created:
            table = self.reflection.reflector.table(name)
            if table:
                self.runners[name].set_reflected(table)

    @property
    def interner(self) -> AttributeInterner:
        """The attribute sets of the routes advertised: a parser given it makes states whose
        unchanged routes the sessions see as unchanged at a glance."""
        return self.advertised.interner

    async def apply_delta(self, delta: Delta) -> None:
        """Apply a delta to the applied state in place (`speaker.api.ipc.IpcError`, nothing
        changed, when it does not apply): every session sends the changed routes alone. Returns
        once they are in every Adj-RIB-Out."""
        changes = self.advertised.apply_delta(delta)
        if changes:
            for runner in self.runners.values():
                runner.routes_changed(changes)

    # -- BFD (RFC 5882) ----------------------------------------------------------------------

    def _apply_bfd(self, state: DesiredState) -> None:
        wanted = {p.name: cfg for p in state.peers if (cfg := bfd_peer(p)) is not None}
        for name in list(self.bfd_gates):
            if name not in wanted:
                gate = self.bfd_gates.pop(name)
                self._cancel_gate_timer(name)
                runner = self.runners.get(name)
                if gate.holding and runner is not None:
                    log.info("peer %s: BFD removed; the BGP session is no longer held", name)
                    runner.start()
        for name in wanted:
            self.bfd_gates.setdefault(name, BgpGate())
        if wanted and self.bfd is None:
            self.bfd = BfdService(on_state=self._on_bfd, on_remote_admin_down=self._on_bfd_off)
        if self.bfd is not None:
            self.bfd.configure(wanted)

    def _held(self, name: str) -> bool:
        gate = self.bfd_gates.get(name)
        return gate is not None and gate.holding

    def _on_bfd(self, name: str, changed: BfdStateChanged) -> None:
        gate = self.bfd_gates.get(name)
        if gate is not None:
            self._gate_act(name, gate, gate.on_state(changed, asyncio.get_running_loop().time()))

    def _on_bfd_off(self, name: str) -> None:
        gate = self.bfd_gates.get(name)
        if gate is not None and gate.holding:
            log.info("peer %s: the peer signals BFD AdminDown (BFD off there)", name)
            self._gate_act(name, gate, gate.on_remote_admin_down())

    def _on_gate_timer(self, name: str) -> None:
        self._gate_timers.pop(name, None)
        gate = self.bfd_gates.get(name)
        if gate is not None:
            action = gate.handle_timer(asyncio.get_running_loop().time())
            if action is GateAction.Release:
                log.warning("peer %s: BFD still not Up after %gs; the BGP session may run "
                            "without it", name, gate.hold_limit)  # fmt: skip
            self._gate_act(name, gate, action)

    def _gate_act(self, name: str, gate: BgpGate, action: GateAction | None) -> None:
        runner = self.runners.get(name)
        if action is GateAction.TearDown and runner is not None:
            log.warning("peer %s (%s): BFD down: BGP session torn down, held until BFD is Up",
                        name, runner.peer.address)  # fmt: skip
            runner.stop(IdleReason.BfdDown, CeaseSubcode.BFDDown)
        elif action is GateAction.Release and runner is not None:
            log.info("peer %s (%s): BGP session released", name, runner.peer.address)
            runner.start()
        self._cancel_gate_timer(name)
        deadline = gate.next_deadline()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._gate_timers[name] = loop.call_at(deadline, self._on_gate_timer, name)

    def _cancel_gate_timer(self, name: str) -> None:
        handle = self._gate_timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def bfd_status(self, name: str) -> BfdStatus | None:
        gate = self.bfd_gates.get(name)
        if gate is None:
            return None
        session = self.bfd.session(name) if self.bfd is not None else None
        if session is None:
            problem = self.bfd.problem(name) if self.bfd is not None else ""
            return BfdStatus(state="Down", last_diagnostic=problem or None, bgp_held=gate.holding)
        loop = asyncio.get_running_loop()
        down = session.last_down_diag
        return BfdStatus(
            state=session.state.name,
            since=time.time() - (loop.time() - session.since),
            flaps=session.flaps,
            last_diagnostic=None if down is None else diagnostic_name(down),
            bgp_held=gate.holding,
        )

    def hold_end_of_rib(self) -> None:
        """After a restart from a saved state that may be out of date: send every session's
        table but not End-of-RIB, so that a graceful-restart peer keeps its stale copy of our
        routes, until `release_end_of_rib()` (the fresh state is in, or waiting timed out)."""
        self._hold_eor = True
        for runner in self.runners.values():
            runner.session.hold_end_of_rib = True

    def release_end_of_rib(self, why: str) -> None:
        if not self._hold_eor:
            return
        self._hold_eor = False
        log.info("End-of-RIB released (%s)", why)
        for runner in self.runners.values():
            owed = runner.session.established is not None
            runner._run(runner.session.release_end_of_rib())
            if owed:
                log.info("peer %s (%s): End-of-RIB sent", runner.peer.name, runner.peer.address)

    def _remove(self, name: str, reason: IdleReason, subcode: int) -> None:
        runner = self.runners.pop(name)
        self._by_address.pop(normalise(runner.peer.address), None)
        runner.stop(reason, subcode)

    @staticmethod
    def _md5_keys(state: DesiredState) -> dict[str, str]:
        return {normalise(p.address): p.password for p in state.peers if p.password is not None}

    def _apply_listener(self, listen: Listen | None, keys: dict[str, str]) -> None:
        """Listen as `listen` says, with the TCP MD5 key of every peer (keys before any session
        starts: a peer's SYN without its signature never passes). The new listener is bound
        before the old one is closed, so a failure (`StateRefused`) leaves the old one in
        place, still accepting, with its old keys."""
        if listen == self._listen:
            if self._listener is not None:
                self._set_keys(self._listener, keys)
            return
        new = None if listen is None else self._bind(listen, keys)
        old, self._listener, self._listen = self._listener, new, listen
        if old is not None:
            old.close()
        if listen is not None:
            log.info("listening on %s port %s", listen.address, listen.port)
        elif old is not None:
            log.info("no longer listening on %s port %s", old.address, old.port)

    @staticmethod
    def _set_keys(listener: Listener, keys: dict[str, str]) -> None:
        before = listener.keys
        try:
            listener.set_keys(keys)
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError, ValueError):
                listener.set_keys(before)
            raise StateRefused(f"cannot set the TCP MD5 keys on the listener: {exc}") from None

    def _bind(self, listen: Listen, keys: dict[str, str]) -> Listener:
        """A new listener, bound and accepting, or `StateRefused` with the old one untouched."""
        new = Listener(listen.address, listen.port, wanted=self._wanted, on_accept=self._on_accept)
        new.set_keys(keys)
        try:
            new.start()
            return new
        except OSError as exc:
            old = self._listener
            if exc.errno != errno.EADDRINUSE or old is None or old.port != listen.port:
                raise StateRefused(_cannot_listen(listen, exc)) from None
        # The old listener holds the port on an overlapping address (a wildcard and a specific
        # one): free it, bind the new one, and put the old one back if that still fails.
        old.close()
        try:
            new.start()
            return new
        except OSError as exc:
            refused = StateRefused(_cannot_listen(listen, exc))
        try:
            old.start()
        except OSError as exc:
            self._listener = self._listen = None  # the next apply binds again
            raise RuntimeError(
                f"{refused}; and the old listener on {old.address} port {old.port} could not "
                f"be restored: {exc.strerror or exc}; not listening"
            ) from None
        raise refused

    def _wanted(self, address: str) -> bool:
        if address in self._by_address:
            return True
        log.warning("refused a connection from %s: not a configured peer", address)
        return False

    def _on_accept(self, sock: socket.socket, address: str) -> None:
        self._by_address[address].accept(sock)

    def status(self) -> list[PeerStatus]:
        out = []
        for name in sorted(self.runners):
            status = self.runners[name].status()
            bfd = self.bfd_status(name)
            if bfd is not None:
                status = replace(status, bfd=bfd)
            counts = self.routes.peer_counts(name)
            if counts is not None:
                accepted, best, installed = counts
                status = replace(status, prefixes_accepted=accepted, prefixes_best=best,
                                 prefixes_installed=installed)  # fmt: skip
            out.append(status)
        return out

    def fib_summary(self) -> FibSummary | None:
        return self.routes.summary()

    def route_report(self, request: RoutesRequest) -> Routes:
        return self.routes.routes(request)

    async def close(
        self, message: str = "", timeout: float = 5.0, *, graceful_restart: bool = False
    ) -> None:
        """Cease/Administrative Shutdown to every peer, then wait (bounded) for the bytes out.

        With `graceful_restart`, a peer whose session negotiated graceful restart gets no
        NOTIFICATION: its TCP connection is just closed, as if we had been killed, so that it
        keeps our routes (stale) for the restart time while we come back (RFC 4724 §4.2).
        """
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for name in list(self._gate_timers):
            self._cancel_gate_timer(name)
        if self.bfd is not None:
            # AdminDown first: the peers then do not take our going for a path failure (RFC
            # 5882 §3.2), which matters to a graceful restart.
            await self.bfd.close()
        runners = list(self.runners.values())
        for runner in runners:
            if graceful_restart and runner.graceful_restart:
                log.info("peer %s (%s): closing for a graceful restart, routes stay at the peer",
                         runner.peer.name, runner.peer.address)  # fmt: skip
                continue
            runner.stop(IdleReason.AdministrativeShutdown, CeaseSubcode.AdministrativeShutdown,
                        message)  # fmt: skip
        await asyncio.gather(*(r.wait_closed(timeout) for r in runners))
        # Our kernel routes: withdrawn with the sessions, or kept for the next speaker.
        await self.routes.close(withdraw=not graceful_restart)
