"""The receiving half at run time: what the sessions' Adj-RIBs-In do goes through each peer's
import policy into the Loc-RIB, and the Loc-RIB's selection into the kernel (docs/route-import.md).

    sessions (RibInChanged/RibInStale, Established)      the node's kernel routes (netlink)
            |  session_events()                                  | NodeRoutes, re-read on change
            v                                                    v
      import policy -> LocRib (decision, multipath) <- RoutingTableResolver (next hops)
            |  Loc-RIB changes: (family, prefix, Selection | None)
            v  every consumer registered with add_consumer() (the seam: route reflection adds
            |  the Adj-RIB-Out of iBGP peers as a second consumer, issue 16)
      FIB channel: coalesced per prefix -> AsyncFibWriter (one worker thread) -> the kernel

`Speaker` (speaker/daemon.py) owns one `RouteService` and calls:
- `await prepare(state)` before anything of an apply changes (it opens sockets and reads the
  kernel; `StateRefused` if it cannot), then `commit(prepared)` or `abort(prepared)`;
- `session_events(name, session, events)` from each peer's runner, with the runner's
  `StateChanged`, `RibInChanged` and `RibInStale` events in order;
- `peer_removed(name)`, `status_counts(name)`, `summary()`, `routes(request)`;
- `await close(withdraw=...)`: `--shutdown=withdraw` removes our routes, graceful restart
  leaves them.

Graceful restart, restarting speaker (RFC 4724 §4.1): at the first state of a restarted speaker
with `fib`, our routes still in the kernel (`FibWriter.existing()`) are kept and no route is
written until End-of-RIB came from every peer with graceful restart (or its session came up
without the capability or with the R bit) or the longest configured restart time passed; then
the kernel is reconciled with the Loc-RIB in one go (stale routes removed, the rest replaced
only where different). `forwarding_preserved` is what our OPEN's F bit says: true without
`fib` (no BGP route is in the forwarding plane, nothing to lose) or when routes were kept;
false when `fib` is set and nothing of ours survived (a reboot, a withdraw shutdown).
Helper role (§4.2): a restarting peer's routes are stale in its Adj-RIB-In and stay in the
Loc-RIB, and so in the kernel, until the session flushes them (End-of-RIB, restart time, no
forwarding state); a session that ends without graceful restart flushes them at once.

Next hops: `NodeRoutes` reads the node's routes that can carry one (connected and device
routes, not ours) and is told by the kernel when links, addresses or routes change (our own
route notifications are dropped in the kernel by a BPF filter); every change re-reads the
table (coalesced) and re-decides the prefixes whose next hop's answer changed. A link or
address change also reconciles the FIB (the kernel drops routes through a link that goes
down without telling anyone) and routes the kernel refused are retried on any change.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from speaker.api.route_status import SUMMARY_ITEMS, FibSummary, RouteNote, Routes, RoutesRequest
from speaker.api.schema import DEFAULT_FIB_PROTOCOL, DEFAULT_FIB_TABLE, DesiredState, Fib, Peer
from speaker.bgp.rib.adj_rib_in import RibInChanged, RibInStale
from speaker.bgp.rib.loc_rib import LocRib, LocRibOptions, PathChange, PathGroup, RouteChange
from speaker.bgp.rib.next_hop import ResolverRoute, RoutingTableResolver
from speaker.bgp.rib.policy import ImportPolicy
from speaker.bgp.session.fsm import Session, State, StateChanged
from speaker.bgp.wire.context import Family
from speaker.bgp.wire.nlri import Prefix, prefix_to_str
from speaker.control import StateRefused
from speaker.route_import import fib_table, import_policy, loc_rib_options, peer_info

if TYPE_CHECKING:  # imported when first needed: pyroute2 costs ~22 MB of RSS to import
    from speaker.netlink import (
        AsyncFibWriter,
        FibChange,
        FibError,
        FibResult,
        FibWriter,
        NodeRoutes,
    )

log = logging.getLogger("kubgp.speaker")

NextHops = tuple[bytes, ...]
RouteConsumer = Callable[[Sequence[RouteChange]], None]
SessionEvent = StateChanged | RibInChanged | RibInStale
Sessions = Callable[[], dict[str, Session]]
ERRORS_LOGGED = 3  # refused routes named in one log line
SUMMARY_MAX_AGE = 2.0  # seconds a status summary may lag behind a changing Loc-RIB


def hops_text(hops: Iterable[bytes]) -> list[str]:
    return [str(ipaddress.ip_address(h)) for h in hops]


def error_text(err: FibError) -> str:
    if err.errno == errno.EPERM:
        return f"{err.message} (the speaker needs CAP_NET_ADMIN to change routes)"
    return err.message


@dataclass(eq=False)
class _Fib:
    """One FIB writer, with the configuration it was opened for."""

    config: Fib
    writer: FibWriter
    io: AsyncFibWriter
    kept: int = 0  # our routes found in the kernel when it was opened

    @classmethod
    def open(cls, config: Fib, netns: str | None) -> _Fib:
        from speaker.netlink import AsyncFibWriter, FibWriter

        writer = FibWriter(
            table=config.table, protocol=config.protocol, metric=config.metric, netns=netns
        )
        return cls(config, writer, AsyncFibWriter(writer))

    def same_routes(self, config: Fib) -> bool:
        """The kernel routes this writer owns are the ones `config` wants (maxPaths aside)."""
        c = self.config
        return (c.table, c.protocol, c.metric) == (config.table, config.protocol, config.metric)


@dataclass
class _Batch:
    """FIB work coalesced per prefix: the next hops wanted now (None: no route), and where the
    kernel has a route of ours for the prefix, its next hops before the batch (`there`). Nothing
    else remembers what is in the kernel: outside the batches and the refused routes
    (`_errors`), it is what the Loc-RIB selects."""

    wanted: dict[Family, dict[Prefix, NextHops | None]] = field(default_factory=dict)
    there: dict[Family, dict[Prefix, NextHops]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.wanted)

    def has(self, family: Family, prefix: Prefix) -> bool:
        table = self.wanted.get(family)
        return table is not None and prefix in table

    def clear(self) -> None:
        self.wanted.clear()
        self.there.clear()

    def size(self) -> int:
        return sum(len(t) for t in self.wanted.values())

    def changes(self) -> Iterator[FibChange]:
        for family, table in self.wanted.items():
            there = self.there.get(family, {})
            for prefix, hops in table.items():
                yield family, prefix, hops, there.get(prefix)


@dataclass
class _Deferral:
    """Restarted with routes kept: no FIB write until these GR peers sent End-of-RIB."""

    waiting: set[str]
    until: float  # Unix time
    timer: asyncio.TimerHandle | None = None


@dataclass
class _PeerEntry:
    peer: Peer
    policy: ImportPolicy
    registered: bool = False  # known to the Loc-RIB (its session has been Established)


@dataclass
class Prepared:
    """What `prepare` opened and read for a state, for `commit` (or `abort`)."""

    state: DesiredState
    fib: _Fib | None  # a new writer to switch to (None: keep the current one, or none)
    node: NodeRoutes | None  # a new node-route reader (None: keep the current one, or none)
    node_routes: list[ResolverRoute] = field(default_factory=list)
    stop_node: bool = False


class RouteService:
    """The receiving half of one speaker (see the module doc)."""

    def __init__(
        self, *, sessions: Sessions, restarting: bool = False, netns: str | None = None
    ) -> None:
        self._sessions = sessions
        self._restarting = restarting
        self._netns = netns
        self.state: DesiredState | None = None
        self.resolver = RoutingTableResolver()
        self.rib: LocRib | None = None
        self.forwarding_preserved = True
        self._peers: dict[str, _PeerEntry] = {}
        self._consumers: list[RouteConsumer] = [self._to_fib]
        self._fib: _Fib | None = None
        self._node: NodeRoutes | None = None
        self._deferral: _Deferral | None = None
        self._first = True
        # the FIB channel: one task, operations in order, changes coalesced per prefix
        self._pending = _Batch()
        self._inflight = _Batch()  # the batch the writer works on (unchanged until `_record`)
        self._reconciling = 0
        self._ops: list[Callable[[], object]] = []
        self._errors: dict[tuple[Family, Prefix], FibError] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._reread: asyncio.Task[None] | None = None
        self._reread_again = False
        self._relink = False  # a link or address changed: reconcile after the re-read
        self._closed = False
        self._version = 0  # bumped on every Loc-RIB or FIB change: caches below
        self._counts_cache: tuple[int, dict[str, tuple[int, int, int]]] | None = None
        self._summary_cache: tuple[int, float, FibSummary | None] | None = None
        self.counts = {"installed": 0, "replaced": 0, "removed": 0, "failed": 0}
        self.node_rereads = 0

    # ---- the seam ---------------------------------------------------------------------------

    def add_consumer(self, consumer: RouteConsumer) -> None:
        """Also hand every Loc-RIB change to `consumer` (in order, synchronously)."""
        self._consumers.append(consumer)

    def _emit(self, changes: Sequence[RouteChange]) -> None:
        if changes:
            self._version += 1
            for consumer in self._consumers:
                consumer(changes)

    @property
    def active(self) -> bool:
        """Something can enter the Loc-RIB or the FIB: a peer with import rules, or `fib`."""
        state = self.state
        return state is not None and (
            state.fib is not None or any(p.import_rules for p in state.peers)
        )

    # ---- configuration ------------------------------------------------------------------------

    async def prepare(self, state: DesiredState) -> Prepared:
        """Open and read what `state` needs and the current setup lacks; change nothing that
        runs. `StateRefused` when the kernel cannot be reached."""
        needs_node = state.fib is not None or any(p.import_rules for p in state.peers)
        prepared = Prepared(state=state, fib=None, node=None)
        try:
            if state.fib is not None and (
                self._fib is None or not self._fib.same_routes(state.fib)
            ):
                prepared.fib = _Fib.open(state.fib, self._netns)
                found = await prepared.fib.io.existing()
                prepared.fib.kept = len(found)
            protocol, tables = _node_scope(state.fib)
            node = self._node
            if needs_node and (node is None or node.protocol != protocol or node.tables != tables):
                from speaker.netlink import NodeRoutes

                prepared.node = NodeRoutes(protocol=protocol, tables=tables, netns=self._netns)
                prepared.node_routes = list(await asyncio.to_thread(prepared.node.read))
            prepared.stop_node = not needs_node and node is not None
        except OSError as exc:
            await self.abort(prepared)
            raise StateRefused(f"cannot reach the kernel's routing tables: {exc}") from None
        return prepared

    async def abort(self, prepared: Prepared) -> None:
        if prepared.fib is not None:
            await prepared.fib.io.close()
        if prepared.node is not None:
            prepared.node.close()

    def commit(self, prepared: Prepared) -> None:
        """Run `prepared.state`: policies, Loc-RIB options, FIB writer, node routes."""
        state = prepared.state
        old_state, self.state = self.state, state
        self._version += 1
        first, self._first = self._first, False
        self._switch_node(prepared)
        self._configure_rib(state, old_state)
        self._configure_fib(state, prepared.fib, first=first)
        if self._deferral is not None:
            self._deferral.waiting &= {p.name for p in state.peers}
            self._check_deferral()
        self._start()

    def _switch_node(self, prepared: Prepared) -> None:
        loop = asyncio.get_running_loop()
        if prepared.node is not None or prepared.stop_node:
            if self._node is not None:
                loop.remove_reader(self._node.fileno())
                self._node.close()
            self._node = prepared.node
            if self._node is not None:
                loop.add_reader(self._node.fileno(), self._on_node_event)
                self.resolver.set_routes(prepared.node_routes)
            else:
                self.resolver.set_routes(())

    def _configure_rib(self, state: DesiredState, old: DesiredState | None) -> None:
        options = loc_rib_options(state)
        rib = self.rib
        if rib is None or _identity(rib.options) != _identity(options):
            self._rebuild_rib(state, options)
        elif (rib.options.max_paths, rib.options.always_compare_med) != (
            options.max_paths,
            options.always_compare_med,
        ):
            self._emit(
                rib.set_options(
                    max_paths=options.max_paths, always_compare_med=options.always_compare_med
                )
            )
        rib = self.rib
        assert rib is not None
        wanted = {p.name: p for p in state.peers}
        for name in list(self._peers):
            if name not in wanted:
                self.peer_removed(name)
        sessions = self._sessions()
        for name, peer in wanted.items():
            entry = self._peers.get(name)
            policy = import_policy(peer)
            if entry is None:
                self._peers[name] = _PeerEntry(peer, policy)
                continue
            entry.peer = peer
            if policy == entry.policy:
                continue
            entry.policy = policy
            session = sessions.get(name)
            if entry.registered and session is not None:
                log.info("peer %s: import policy changed (%d rules): its %d routes imported again",
                         name, len(policy.rules), len(session.rib_in))  # fmt: skip
                self._register(name, entry, session)

    def _rebuild_rib(self, state: DesiredState, options: LocRibOptions) -> None:
        """A new Loc-RIB (first state, or our ASNs / router id changed): established peers'
        routes imported again, the difference emitted."""
        old = self.rib
        before = {f: old.table(f) for f in old.families()} if old is not None else {}
        self.rib = LocRib(options, self.resolver)
        sessions = self._sessions()
        for name, entry in self._peers.items():
            entry.registered = False
            session = sessions.get(name)
            peer = next((p for p in state.peers if p.name == name), None)
            if peer is not None and session is not None and session.established is not None:
                entry.peer = peer
                self._register(name, entry, session, emit=False)
        rib = self.rib
        changes: list[RouteChange] = []
        for family, table in before.items():
            now = rib.table(family)
            changes += [(family, p, None, s) for p, s in table.items() if p not in now]
        for family in rib.families():
            was = before.get(family, {})
            for prefix, sel in rib.selected_items(family):
                old_sel = was.get(prefix)
                if old_sel is None or not sel.same_routes(old_sel):
                    changes.append((family, prefix, sel, old_sel))
        self._emit(changes)

    def _configure_fib(self, state: DesiredState, new: _Fib | None, *, first: bool) -> None:
        old = self._fib
        if state.fib is None:
            self.forwarding_preserved = True if first else self.forwarding_preserved
            if old is not None:
                log.info("fib removed from the state: removing our %d routes from table %d",
                         old.writer.count(), old.config.table)  # fmt: skip
                self._fib = None
                self._pending.clear()
                self._errors.clear()
                self._queue(self._remove_all_op(old, close=True))
            return
        if new is None:  # same writer; maxPaths is the Loc-RIB's
            assert old is not None
            old.config = state.fib
            return
        self._fib = new
        self._pending.clear()
        self._errors.clear()
        if first and self._restarting:
            self._restart_decision(state, new)
        elif first:
            self.forwarding_preserved = False
        if self._deferral is None:
            self._queue(self._reconcile_op(new))
        if old is not None:
            if old.config.table != new.config.table or old.config.protocol != new.config.protocol:
                self._queue(self._remove_all_op(old, close=True))
            else:  # the same routes at another metric: the reconcile replaced them
                self._queue(self._close_op(old))

    def _restart_decision(self, state: DesiredState, fib: _Fib) -> None:
        gr_peers = {p.name: p.graceful_restart.restart_time for p in state.peers
                    if p.graceful_restart.enabled}  # fmt: skip
        self.forwarding_preserved = fib.kept > 0
        if fib.kept and gr_peers:
            wait = max(gr_peers.values())
            deferral = _Deferral(set(gr_peers), time.time() + wait)
            loop = asyncio.get_running_loop()
            deferral.timer = loop.call_later(wait, self._deferral_timeout)
            self._deferral = deferral
            log.info("restarted with %d of our routes in table %d: kept (forwarding state "
                     "preserved) until End-of-RIB from %s, at most %ds",
                     fib.kept, fib.config.table, ", ".join(sorted(gr_peers)), wait)  # fmt: skip
        elif fib.kept:
            log.info("restarted with %d of our routes in table %d and no peer with graceful "
                     "restart: they are reconciled now", fib.kept, fib.config.table)  # fmt: skip

    # ---- graceful restart: the restarting speaker's deferral -------------------------------------

    @property
    def deferred(self) -> bool:
        return self._deferral is not None

    def _check_deferral(self) -> None:
        deferral = self._deferral
        if deferral is not None and not deferral.waiting:
            self._end_deferral("End-of-RIB from every peer with graceful restart")

    def _deferral_timeout(self) -> None:
        deferral = self._deferral
        if deferral is not None:
            waiting = ", ".join(sorted(deferral.waiting))
            self._end_deferral(f"restart time passed, still waiting for {waiting}")

    def _end_deferral(self, why: str) -> None:
        deferral, self._deferral = self._deferral, None
        if deferral is None:
            return
        if deferral.timer is not None:
            deferral.timer.cancel()
        self._version += 1
        log.info("graceful restart: %s; reconciling the kernel with the Loc-RIB", why)
        if self._fib is not None:
            self._queue(self._reconcile_op(self._fib))

    def _deferral_peer(self, name: str, session: Session) -> None:
        """After a peer's events: does the deferral still wait for it?"""
        deferral = self._deferral
        if deferral is None or name not in deferral.waiting:
            return
        neg = session.negotiated
        if neg is None:
            return
        cap = neg.peer_graceful_restart
        if cap is None or cap.restarting:
            # RFC 4724 §4.1: only peers that do graceful restart and did not restart too
            deferral.waiting.discard(name)
        elif session.families and session.families <= session.eor_received:
            deferral.waiting.discard(name)
        self._check_deferral()

    # ---- the sessions -------------------------------------------------------------------------

    def session_events(self, name: str, session: Session, events: Sequence[SessionEvent]) -> None:
        """A peer's session did these (in order); the Loc-RIB follows."""
        entry = self._peers.get(name)
        rib = self.rib
        if entry is None or rib is None:
            return
        groups: list[PathGroup] = []
        for event in events:
            if isinstance(event, RibInChanged):
                if entry.registered and entry.policy.rules:
                    groups.append((event.family, event.prefixes, event.path))
            elif isinstance(event, StateChanged) and event.new is State.Established:
                if groups:
                    self._emit(rib.update_groups(name, groups))
                    groups = []
                self._register(name, entry, session)
        if groups:
            self._emit(rib.update_groups(name, groups))
        self._deferral_peer(name, session)

    def end_of_rib(self, name: str, session: Session) -> None:
        """The peer sent End-of-RIB for a family (no Adj-RIB-In event when nothing was stale)."""
        self._deferral_peer(name, session)

    def _register(
        self, name: str, entry: _PeerEntry, session: Session, *, emit: bool = True
    ) -> None:
        """The peer's session is up (its router id known) or its policy changed: (re)import its
        whole Adj-RIB-In."""
        rib = self.rib
        state = self.state
        if rib is None or state is None:
            return
        info = peer_info(entry.peer, state, remote_router_id=session.remote_router_id)
        routes: Iterable[PathChange] = _flat(session) if entry.policy.rules else ()
        changes = rib.set_peer(info, entry.policy, routes)
        entry.registered = True
        if emit:
            self._emit(changes)

    def peer_removed(self, name: str) -> None:
        """The peer left the desired state: its paths leave the Loc-RIB."""
        self._peers.pop(name, None)
        if self.rib is not None:
            self._emit(self.rib.remove_peer(name))
        if self._deferral is not None:
            self._deferral.waiting.discard(name)
            self._check_deferral()

    # ---- the FIB channel ----------------------------------------------------------------------

    def _to_fib(self, changes: Sequence[RouteChange]) -> None:
        if self._fib is None or self._deferral is not None:
            return  # no FIB, or a reconcile after the deferral takes the whole Loc-RIB
        pending = self._pending
        wanted = pending.wanted
        flying = self._inflight.wanted
        errors = self._errors
        for family, prefix, sel, old in changes:
            hops = None if sel is None else sel.next_hops
            table = wanted.get(family)
            if table is None:
                table = wanted[family] = {}
            if prefix in table:
                table[prefix] = hops  # what the kernel had before the batch is known already
                continue
            # What the kernel has: for a prefix of the batch in flight, what that batch writes
            # (if the write fails, `_record` corrects it; the prefix may also be a refused one
            # being retried), else what a refused route kept, else the selection before.
            there: NextHops | None
            in_flight = flying.get(family)
            if in_flight is not None and prefix in in_flight:
                there = in_flight[prefix]
            elif errors and (family, prefix) in errors:
                there = errors[(family, prefix)].kept
            else:
                there = None if old is None else old.next_hops
                if there == hops or (there and hops and set(there) == set(hops)):
                    continue  # the same next hops (other attributes changed): nothing to write
            table[prefix] = hops
            if there:
                pending.there.setdefault(family, {})[prefix] = there
        if wanted:
            self._kick()

    def _queue(self, op: Callable[[], object]) -> None:
        self._ops.append(op)
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    def _start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._fib_loop(), name="fib")

    async def flushed(self) -> None:
        """Wait until every change so far is in the kernel (tests, shutdown)."""
        while not self._idle.is_set():
            await self._idle.wait()

    async def _fib_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                if self._ops:
                    op = self._ops.pop(0)
                    try:
                        await op()  # type: ignore[misc]
                    except Exception:
                        log.exception("FIB: an operation failed (a bug); going on")
                    continue
                fib = self._fib
                if fib is None or not self._pending or self._deferral is not None:
                    break
                self._inflight, self._pending = self._pending, _Batch()
                # The writer reads the batch lazily from `_inflight` (which nothing changes
                # until `_record`): no list of change tuples, which for a burst of a million
                # routes was ~90 MB at once.
                try:
                    result = await fib.io.apply(self._inflight.changes())
                except Exception:
                    log.exception("FIB: applying %d changes failed (a bug)",
                                  self._inflight.size())  # fmt: skip
                    from speaker.netlink import FibResult

                    result = FibResult(lost=True)  # what the kernel has now is unknown
                self._record(result, self._inflight)
                self._inflight = _Batch()
            if not self._ops and (
                not self._pending or self._fib is None or self._deferral is not None
            ):
                self._idle.set()
            if self._closed:
                return

    def _record(self, result: FibResult, applied: _Batch | None) -> None:
        """Errors of this batch replace those of the same prefixes (`applied` None: a
        reconcile, which cleared the errors when it began). A refused route changed again
        meanwhile is written next from what the kernel kept; lost answers: a reconcile."""
        self._version += 1
        errors = self._errors
        if applied is not None and errors:
            for family, table in applied.wanted.items():
                for prefix in table:
                    errors.pop((family, prefix), None)
        pending = self._pending
        for err in result.errors:
            errors[(err.family, err.prefix)] = err
            if pending.has(err.family, err.prefix):
                there = pending.there.setdefault(err.family, {})
                if err.kept:
                    there[err.prefix] = err.kept
                else:
                    there.pop(err.prefix, None)
        if result.lost and self._fib is not None and self._deferral is None:
            self._queue(self._reconcile_op(self._fib))
        counts = self.counts
        counts["installed"] += result.installed
        counts["replaced"] += result.replaced
        counts["removed"] += result.removed
        counts["failed"] += len(result.errors)
        if result.errors:
            shown = "; ".join(f"{e}" + (" (needs CAP_NET_ADMIN)" if e.errno == errno.EPERM else "")
                              for e in result.errors[:ERRORS_LOGGED])  # fmt: skip
            more = len(result.errors) - ERRORS_LOGGED
            log.warning("FIB: the kernel refused %d routes: %s%s", len(result.errors), shown,
                        f" (+{more} more)" if more > 0 else "")  # fmt: skip

    def _reconcile_op(self, fib: _Fib) -> Callable[[], object]:
        async def reconcile() -> None:
            if fib is not self._fib or self.rib is None:
                return
            snapshot = fib_table(self.rib)
            self._pending.clear()  # the snapshot has every change so far
            self._errors.clear()  # the reconcile answers them all
            self._reconciling += 1
            try:
                result = await fib.io.reconcile(snapshot)
            finally:
                self._reconciling -= 1
            self._record(result, None)
            if result.installed or result.replaced or result.removed:
                log.info("FIB: reconciled table %d: %d installed, %d replaced, %d removed, "
                         "%d unchanged", fib.config.table, result.installed, result.replaced,
                         result.removed, result.unchanged)  # fmt: skip

        return reconcile

    def _remove_all_op(self, fib: _Fib, *, close: bool) -> Callable[[], object]:
        async def remove_all() -> None:
            result = await fib.io.remove_all()
            log.info("FIB: removed %d of our routes from table %d (protocol %d)",
                     result.removed, fib.config.table, fib.config.protocol)  # fmt: skip
            if result.errors:
                log.warning("FIB: %d of our routes could not be removed: %s",
                            len(result.errors), result.errors[0])  # fmt: skip
            if close:
                await fib.io.close()

        return remove_all

    def _close_op(self, fib: _Fib) -> Callable[[], object]:
        async def close() -> None:
            await fib.io.close()

        return close

    # ---- the node's routes --------------------------------------------------------------------

    def _on_node_event(self) -> None:
        node = self._node
        if node is None:
            return
        try:
            changes = node.changes()
        except OSError as exc:
            log.warning("node routes: reading notifications failed: %s", exc)
            return
        if not changes:
            return
        self._relink = self._relink or changes.links or changes.overrun
        if self._reread is not None:
            self._reread_again = True
            return
        self._reread = asyncio.get_running_loop().create_task(self._reread_node(), name="node")

    async def _reread_node(self) -> None:
        try:
            while True:
                self._reread_again = False
                relink, self._relink = self._relink, False
                node = self._node
                if node is None:
                    return
                try:
                    routes = await asyncio.to_thread(node.read)
                except OSError as exc:
                    log.warning("node routes: re-reading the routing table failed: %s", exc)
                    return
                if node is not self._node:
                    continue
                self.node_rereads += 1
                self.resolver.set_routes(routes)
                if self.rib is not None:
                    self._emit(self.rib.next_hops_changed())
                self._retry_failed()
                if relink and self._fib is not None and self._deferral is None:
                    self._queue(self._reconcile_op(self._fib))
                if not self._reread_again:
                    return
        finally:
            self._reread = None

    def _retry_failed(self) -> None:
        """Routes the kernel refused get another chance when the node's routes change."""
        if not self._errors or self.rib is None or self._fib is None or self._deferral:
            return
        rib = self.rib
        retry: list[RouteChange] = []
        for family, prefix in list(self._errors):  # `_to_fib` takes what was kept from there
            retry.append((family, prefix, rib.selected(family, prefix), None))
        self._to_fib(retry)

    # ---- shutdown -------------------------------------------------------------------------------

    async def close(self, *, withdraw: bool) -> None:
        """Stop. `withdraw`: our routes leave the kernel; otherwise they stay (a graceful
        restart, or being killed: the next speaker finds them with `existing()`)."""
        if self._deferral is not None and self._deferral.timer is not None:
            self._deferral.timer.cancel()
        self._deferral = None  # pending removals of peers closed without GR still go out
        fib = self._fib
        if fib is not None:
            if withdraw:
                self._pending.clear()
                self._queue(self._remove_all_op(fib, close=False))
            await self.flushed()
        self._closed = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if fib is not None:
            await fib.io.close()
        self._fib = None
        if self._node is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._node.fileno())
            self._node.close()
            self._node = None
        if self._reread is not None:
            self._reread.cancel()

    # ---- what status, metrics and `kubgp-speaker routes` show ----------------------------------

    def peer_counts(self, name: str) -> tuple[int, int, int] | None:
        """(accepted, best, installed) for a peer, None when route import is off."""
        if not self.active or self.rib is None:
            return None
        cached = self._counts_cache
        if cached is None or cached[0] != self._version:
            cached = self._counts_cache = (self._version, self._all_counts(self.rib))
        return cached[1].get(name, (0, 0, 0))

    def _all_counts(self, rib: LocRib) -> dict[str, tuple[int, int, int]]:
        """One pass over what is not (yet) installed as selected: refused by the kernel, or
        waiting to be written; `installed` is the rest of a peer's multipath prefixes."""
        missing: dict[str, int] = {}
        everything = self._fib is None or self._deferral is not None
        if not everything:
            keys = set(self._errors)
            for pending in (self._pending, self._inflight):
                keys.update((f, p) for f, t in pending.wanted.items() for p in t)
            for key in keys:
                sel = rib.selected(*key)
                if sel is not None:
                    for cand in sel.paths:
                        missing[cand.peer] = missing.get(cand.peer, 0) + 1
        out: dict[str, tuple[int, int, int]] = {}
        for name in self._peers:
            in_paths = rib.multipath_total(name)
            installed = 0 if everything else max(in_paths - missing.get(name, 0), 0)
            out[name] = (rib.accepted_total(name), rib.best_total(name), installed)
        return out

    @property
    def rereading(self) -> bool:
        """The node's routes are being read again after a kernel notification."""
        return self._reread is not None

    def fib_state(self) -> str:
        if self._fib is None:
            return "off"
        return "deferred" if self._deferral is not None else "on"

    def reason(self, family: Family, prefix: Prefix) -> str | None:
        """Why a selected prefix is not in the kernel as selected (None: it is)."""
        rib = self.rib
        sel = rib.selected(family, prefix) if rib is not None else None
        if sel is None:
            return "no eligible path"
        fib = self._fib
        if fib is None:
            return "fib is not configured: nothing is installed"
        deferral = self._deferral
        if deferral is not None:
            return ("graceful restart: the kernel keeps the previous run's routes until "
                    f"End-of-RIB from {', '.join(sorted(deferral.waiting))}")  # fmt: skip
        err = self._errors.get((family, prefix))
        if err is not None:
            return f"the kernel refused it: {error_text(err)}"
        for pending in (self._inflight, self._pending):
            if pending.has(family, prefix):
                return "being written to the kernel"
        if self._reconciling:
            return "being reconciled with the kernel"
        return None

    def kernel_hops(self, family: Family, prefix: Prefix) -> NextHops | None:
        """The next hops of our route for `prefix` in the kernel (None: none of ours), as the
        speaker knows it: the Loc-RIB's selection, but for prefixes being written (what was
        there before) and routes the kernel refused (what it kept)."""
        rib = self.rib
        if self._fib is None or self._deferral is not None or rib is None:
            return None  # no FIB; or a previous run's routes, not read
        hops: NextHops | None
        for batch in (self._inflight, self._pending):
            if batch.has(family, prefix):
                hops = batch.there.get(family, {}).get(prefix)
                break
        else:
            err = self._errors.get((family, prefix))
            if err is not None:
                hops = err.kept
            else:
                sel = rib.selected(family, prefix)
                hops = None if sel is None else sel.next_hops
        return tuple(sorted(set(hops))) if hops else None  # as the kernel lists them

    def summary(self, *, max_age: float = SUMMARY_MAX_AGE) -> FibSummary | None:
        """The status summary; recomputed when something changed, at most every `max_age`
        seconds (it scans the short prefixes of the Loc-RIB)."""
        if not self.active:
            return None
        now = time.monotonic()
        cached = self._summary_cache
        if cached is not None and (cached[0] == self._version or now - cached[1] < max_age):
            return cached[2]
        summary = self._summary()
        self._summary_cache = (self._version, now, summary)
        return summary

    def _summary(self) -> FibSummary:
        rib = self.rib
        fib = self._fib
        selected = len(rib) if rib is not None else 0
        deferral = self._deferral
        config = fib.config if fib is not None else None
        not_installed: list[RouteNote] = []
        sample: list[RouteNote] = []
        if rib is not None:
            for family, prefix in self._summary_prefixes(rib):
                if fib is None:
                    break
                text = prefix_to_str(prefix, family[0])
                why = self.reason(family, prefix)
                if why is not None:
                    if len(not_installed) < SUMMARY_ITEMS:
                        not_installed.append(RouteNote(prefix=text, text=why))
                elif len(sample) < SUMMARY_ITEMS and fib is not None:
                    hops = self.kernel_hops(family, prefix) or ()
                    sample.append(RouteNote(prefix=text, text="via " + ", ".join(hops_text(hops))))
                if len(not_installed) >= SUMMARY_ITEMS and len(sample) >= SUMMARY_ITEMS:
                    break
        return FibSummary(
            state=self.fib_state(),
            table=None if config is None else config.table,
            protocol=None if config is None else config.protocol,
            metric=None if config is None else config.metric,
            max_paths=rib.options.max_paths if rib is not None else 1,
            selected=selected,
            installed=fib.writer.count() if fib is not None else 0,
            failed=len(self._errors),
            waiting_for=tuple(sorted(deferral.waiting)) if deferral is not None else (),
            deferred_until=deferral.until if deferral is not None else None,
            not_installed=tuple(not_installed),
            installed_sample=tuple(sample),
        )

    def _summary_prefixes(self, rib: LocRib) -> Iterator[tuple[Family, Prefix]]:
        """Failed prefixes first (the interesting ones), then the selected prefixes up to /16
        (IPv4) or /48 (IPv6), shortest first (the default route first): one pass over the
        Loc-RIB, never the whole table sorted."""
        yield from list(self._errors)
        for family in sorted(rib.families()):
            longest = 16 if family[0] == 1 else 48
            short = [p for p, _ in rib.selected_items(family) if p[0] <= longest]
            yield from ((family, p) for p in sorted(short))

    def routes(self, request: RoutesRequest) -> Routes:
        from speaker.route_report import build_routes

        return build_routes(self, request)

    def sessions(self) -> dict[str, Session]:
        return self._sessions()

    def policy_of(self, name: str) -> ImportPolicy | None:
        entry = self._peers.get(name)
        return None if entry is None else entry.policy

    @property
    def fib_writer(self) -> FibWriter | None:
        return self._fib.writer if self._fib is not None else None


def _node_scope(fib: Fib | None) -> tuple[int, tuple[int, ...]]:
    """Which protocol is ours and which tables carry next hops: main, and ours."""
    if fib is None:
        return DEFAULT_FIB_PROTOCOL, (DEFAULT_FIB_TABLE,)
    return fib.protocol, tuple(dict.fromkeys((DEFAULT_FIB_TABLE, fib.table)))


def _identity(options: LocRibOptions) -> tuple[object, ...]:
    return options.local_asns, options.router_id, options.cluster_id


def _flat(session: Session) -> Iterator[PathChange]:
    for family, table in session.rib_in.routes.items():
        for prefix, path in table.items():
            yield family, prefix, path


__all__ = ["Prepared", "RouteService", "error_text", "hops_text"]
