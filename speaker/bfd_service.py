"""The asyncio adapter of the BFD core (`speaker.bfd`): sockets in, timers out.

    service = BfdService(on_state=..., on_remote_admin_down=...)
    service.configure({name: BfdPeer(...)})   # converge: add, retune (a Poll when Up), remove
    service.session(name)                     # the sans-IO Session, for status and metrics
    await service.close()                     # AdminDown to every peer, sockets closed

One `Session` per configured peer, demultiplexed by `speaker.bfd.demux.Demux`; one timer per
session (`loop.call_at` its next deadline); one receiving socket per (local address, port)
shared by the sessions on it (`speaker.bfd_transport`). A session whose local address or
sockets cannot be had yet (no route to the peer, address not configured yet) retries every
second and says why in `problem(name)`.

Before a session's detection deadline is acted on, every receiving socket is read: if the loop
was late (a long callback, a loaded machine), a packet already waiting in the kernel must
count before we call the session down, or the loop's own lateness would look like the peer's.
How late the loop runs our timers is kept in `lateness` (the event loop's jitter, as BFD sees
it; the benchmark and the metrics read it).

Removing a peer's BFD sends AdminDown three times at once (RFC 5880 §6.8.16; the remote then
does not take the session's end for a path failure, RFC 5882 §3.2), then forgets the session.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from speaker.bfd.demux import SINGLE_HOP_TTL, Demux, Path
from speaker.bfd.packet import State, diagnostic_name
from speaker.bfd.session import Event, Session, StateChanged, Timers, Transmit
from speaker.bfd_transport import MULTIHOP_PORT, SINGLE_HOP_PORT, Receiver, Sender, route_source

log = logging.getLogger("kubgp.speaker")

RETRY_INTERVAL: Final = 1.0
ADMIN_DOWN_COPIES: Final = 3
LATENESS_BUCKETS: Final = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, math.inf)


@dataclass(frozen=True, slots=True, kw_only=True)
class BfdPeer:
    """One peer's BFD: where (remote, local or None = the route's source), which kind of hop,
    the least TTL accepted, and the timers."""

    remote: str
    local: str | None
    multihop: bool
    timers: Timers
    min_ttl: int = SINGLE_HOP_TTL

    @property
    def port(self) -> int:
        return MULTIHOP_PORT if self.multihop else SINGLE_HOP_PORT


@dataclass(slots=True)
class TimerLateness:
    """A histogram of how late our timers ran (seconds after their deadline)."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENESS_BUCKETS))
    count: int = 0
    total: float = 0.0
    max: float = 0.0

    def observe(self, value: float) -> None:
        value = max(value, 0.0)
        self.count += 1
        self.total += value
        self.max = max(self.max, value)
        for i, bound in enumerate(LATENESS_BUCKETS):
            if value <= bound:
                self.buckets[i] += 1
                return


@dataclass(slots=True, kw_only=True)
class _Run:
    config: BfdPeer
    session: Session | None = None
    sender: Sender | None = None
    receiver: tuple[str, int] | None = None
    timer: asyncio.TimerHandle | None = None
    timer_at: float | None = None
    retry: asyncio.TimerHandle | None = None
    problem: str = ""


class BfdService:
    """Every BFD session of one speaker."""

    def __init__(
        self,
        *,
        on_state: Callable[[str, StateChanged], None],
        on_remote_admin_down: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._on_state = on_state
        self._on_remote_admin_down = on_remote_admin_down
        self._rng = rng if rng is not None else random.Random()
        self.demux: Demux[str] = Demux(self._rng.random)
        self._runs: dict[str, _Run] = {}
        self._receivers: dict[tuple[str, int], tuple[Receiver, set[str]]] = {}
        self._ports: set[int] = set()
        self.lateness = TimerLateness()

    # ---- configuration ---------------------------------------------------------------------

    def configure(self, peers: Mapping[str, BfdPeer]) -> None:
        """Converge on `peers` (name -> BfdPeer): new ones start, removed ones say AdminDown,
        changed timers go to the running session (a Poll Sequence when Up), a changed path
        makes a new session."""
        for name in list(self._runs):
            if name not in peers:
                self._remove(name)
        for name, config in peers.items():
            run = self._runs.get(name)
            if run is None:
                self._runs[name] = _Run(config=config)
                self._activate(name)
            elif run.config == config:
                continue
            elif _same_path(run.config, config):
                run.config = config
                if run.session is not None:
                    self._handle(name, run.session.set_timers(config.timers, self.loop.time()))
            else:
                self._remove(name)
                self._runs[name] = _Run(config=config)
                self._activate(name)

    def names(self) -> list[str]:
        return sorted(self._runs)

    def session(self, name: str) -> Session | None:
        run = self._runs.get(name)
        return None if run is None else run.session

    def problem(self, name: str) -> str:
        run = self._runs.get(name)
        return "" if run is None else run.problem

    def sender(self, name: str) -> Sender | None:
        run = self._runs.get(name)
        return None if run is None else run.sender

    async def close(self) -> None:
        for name in list(self._runs):
            self._remove(name)
        for receiver, _ in self._receivers.values():
            receiver.close()
        self._receivers.clear()

    # ---- sessions --------------------------------------------------------------------------

    def _activate(self, name: str) -> None:
        run = self._runs[name]
        run.retry = None
        config = run.config
        try:
            local = config.local or route_source(config.remote)
            key = self._receiver(local, config.port, name)
            run.receiver = key
            sender = Sender(local, config.remote, config.port, used_ports=self._ports)
            sender.open(self._rng.randint)
        except OSError as exc:
            self._release_receiver(run.receiver, name)
            run.receiver = None
            why = f"cannot start BFD to {config.remote}: {exc.strerror or exc}"
            if why != run.problem:
                log.warning("peer %s: %s (retrying every %gs)", name, why, RETRY_INTERVAL)
            run.problem = why
            run.retry = self.loop.call_later(RETRY_INTERVAL, self._activate, name)
            return
        if run.problem:
            log.info("peer %s: BFD to %s from %s started", name, config.remote, local)
        run.problem = ""
        now = self.loop.time()
        session = Session(
            local_discriminator=self.demux.allocate_discriminator(),
            timers=config.timers,
            rng=self._rng.random,
            now=now,
        )
        path = Path(local=local, remote=config.remote, multihop=config.multihop)
        self.demux.add(name, path, session, min_ttl=config.min_ttl)
        run.session, run.sender = session, sender
        self._handle(name, session.start(now))

    def _remove(self, name: str) -> None:
        run = self._runs.pop(name)
        for handle in (run.timer, run.retry):
            if handle is not None:
                handle.cancel()
        if run.session is not None and run.sender is not None:
            events = run.session.shutdown(self.loop.time())
            for event in events:
                if isinstance(event, Transmit):
                    for _ in range(ADMIN_DOWN_COPIES):
                        run.sender.send(event.data)
            self.demux.remove(name)
        if run.sender is not None:
            run.sender.close()
        self._release_receiver(run.receiver, name)

    def _receiver(self, local: str, port: int, name: str) -> tuple[str, int]:
        key = (local, port)
        entry = self._receivers.get(key)
        if entry is None:
            receiver = Receiver(local, port, self._packet_handler(local, port))
            receiver.start()  # OSError: the address is not ours (yet), or the port is taken
            entry = (receiver, set())
            self._receivers[key] = entry
        entry[1].add(name)
        return key

    def _release_receiver(self, key: tuple[str, int] | None, name: str) -> None:
        if key is None or key not in self._receivers:
            return
        receiver, users = self._receivers[key]
        users.discard(name)
        if not users:
            receiver.close()
            del self._receivers[key]

    def _packet_handler(self, local: str, port: int) -> Callable[[bytes, str, int | None], None]:
        multihop = port == MULTIHOP_PORT

        def on_packet(data: bytes, source: str, ttl: int | None) -> None:
            now = self.loop.time()
            name, events = self.demux.receive(
                data, source=source, destination=local, multihop=multihop, ttl=ttl, now=now
            )
            if name is None:
                return
            self._handle(name, events)
            session = self._runs[name].session
            if (
                self._on_remote_admin_down is not None
                and session is not None
                and session.state is State.Down
                and session.remote_state is State.AdminDown
            ):
                self._on_remote_admin_down(name)

        return on_packet

    def _handle(self, name: str, events: list[Event]) -> None:
        run = self._runs[name]
        for event in events:
            if isinstance(event, Transmit):
                if run.sender is not None:
                    run.sender.send(event.data)
            else:
                self._log_state(name, run.config, event)
                self._on_state(name, event)
        self._schedule(name, run)

    def _log_state(self, name: str, config: BfdPeer, event: StateChanged) -> None:
        text = f"peer {name} ({config.remote}): BFD {event.old.name} -> {event.new.name}"
        if event.old is State.Up:
            why = diagnostic_name(event.diagnostic)
            if event.remote_admin_down:
                why += ", the peer signalled AdminDown"
            log.warning("%s (%s)", text, why)
        else:
            log.info(text)

    def _schedule(self, name: str, run: _Run) -> None:
        if run.session is None:
            return
        deadline = run.session.next_deadline()
        if deadline == run.timer_at:
            return
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        run.timer_at = deadline
        if deadline is not None:
            run.timer = self.loop.call_at(deadline, self._fire, name)

    def _fire(self, name: str) -> None:
        run = self._runs.get(name)
        if run is None or run.session is None:
            return
        now = self.loop.time()
        if run.timer_at is not None:
            self.lateness.observe(now - run.timer_at)
        run.timer, run.timer_at = None, None
        detect = run.session.detection_deadline
        if detect is not None and detect <= now:
            self._drain()  # what already arrived counts before we call the session down
            if name not in self._runs:
                return
        self._handle(name, run.session.handle_timer(now))

    def _drain(self) -> None:
        for receiver, _ in list(self._receivers.values()):
            receiver.drain()


def _same_path(a: BfdPeer, b: BfdPeer) -> bool:
    return (a.remote, a.local, a.multihop, a.min_ttl) == (b.remote, b.local, b.multihop, b.min_ttl)


__all__ = ["LATENESS_BUCKETS", "BfdPeer", "BfdService", "TimerLateness"]
