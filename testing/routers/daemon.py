"""Process control shared by every lab router: start, stop, kill -9, freeze, resume, wait.

A daemon runs in its own session (so a signal reaches only it), logs into its work dir and is
ended by PID, never by name. `RouterDaemon` subclasses render their own config and speak their
own CLI; they implement the small abstract surface below.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

from testing.routers.model import (
    ESTABLISHED,
    FAMILIES,
    IPV4_UNICAST,
    IPV6_UNICAST,
    LabError,
    Origination,
    PeerSpec,
    Route,
    family_of,
)
from testing.wait import wait_for

CLI_TIMEOUT = 20.0


class RouterDaemon(ABC):
    """One real BGP daemon run by the lab.

    `address`/`port` are where it listens for BGP; `asn`/`router_id` its identity; `peers` its
    neighbours. `export_next_hop4/6` are the next hops it puts on routes it originates unless a
    route names its own: documentation addresses, because GoBGP and FRR refuse loopback next
    hops (GoBGP treats such an UPDATE as withdraw, FRR resets the session with 3/8).
    """

    kind = "daemon"

    def __init__(
        self,
        *,
        name: str,
        workdir: Path,
        asn: int,
        router_id: str,
        address: str,
        port: int = 179,
        peers: Sequence[PeerSpec] = (),
        netns: str | None = None,
        export_next_hop4: str = "192.0.2.1",
        export_next_hop6: str = "2001:db8::1",
    ) -> None:
        ipaddress.IPv4Address(router_id)
        ipaddress.ip_address(address)
        names = [p.name for p in peers]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: peer names must be unique: {names}")
        self.name = name
        self.workdir = workdir
        self.asn = asn
        self.router_id = router_id
        self.address = address
        self.port = port
        self.peers: dict[str, PeerSpec] = {p.name: p for p in peers}
        self.netns = netns
        self.export_next_hop4 = export_next_hop4
        self.export_next_hop6 = export_next_hop6
        self.originated: dict[str, Origination] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "daemon.log"

    # -- what each daemon implements ------------------------------------------------------

    @abstractmethod
    def _write_config(self) -> None:
        """Writes the daemon's config files for the current peers and originations."""

    @abstractmethod
    def _command(self) -> list[str]:
        """The daemon's argv (foreground)."""

    @abstractmethod
    def _ready(self) -> bool:
        """True once the daemon's control interface answers."""

    @abstractmethod
    def session_state(self, peer: str) -> str:
        """The session's RFC 4271 state name (see testing.routers.model.STATES)."""

    @abstractmethod
    def received_routes(self, peer: str, family: str = IPV4_UNICAST) -> list[Route]:
        """Routes received from `peer` in `family`, sorted by prefix, with their attributes."""

    @abstractmethod
    def _announce(self, route: Origination) -> None:
        """Starts originating `route` on the running daemon."""

    @abstractmethod
    def _withdraw(self, route: Origination) -> None:
        """Stops originating `route` on the running daemon."""

    def _runtime_files(self) -> list[Path]:
        """Sockets and PID files the daemon creates, removed before each start."""
        return []

    def _check_origination(self, route: Origination) -> None:
        """LabError for what this daemon cannot originate (BIRD can everything)."""
        if route.originator_id is not None or route.cluster_list:
            raise LabError(f"{self.name}: {self.kind} cannot originate ORIGINATOR_ID or "
                           "CLUSTER_LIST (BIRD can)")  # fmt: skip

    def _after_start(self) -> None:
        """Runs once the control interface answers: re-adds the routes this router originates
        (a restarted daemon has forgotten those added at run time)."""
        for route in self.originated.values():
            self._announce(route)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def start(self, *, timeout: float = 20.0) -> None:
        if self.running:
            raise LabError(f"{self.name}: already running (pid {self.pid})")
        self._write_config()
        for stale in self._runtime_files():
            # A daemon killed with -9 leaves its control socket behind; binding would fail.
            stale.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {self.kind} {self.name} start {time.strftime('%X')}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self._wrap(self._command()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.frozen = False
        try:
            wait_for(
                self._ready_or_dead,
                f"{self.name}'s control interface",
                timeout,
                interval=0.1,
                ignore=(LabError,),  # a CLI that is not up yet answers with an error
            )
        except ChildProcessError as exc:
            raise LabError(f"{self.name}: {exc}\n{self.log_tail()}") from None
        except TimeoutError as exc:
            self.kill()
            raise LabError(f"{self.name}: did not come up: {exc}\n{self.log_tail()}") from exc
        self._after_start()

    def _ready_or_dead(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise ChildProcessError(f"exited with {self.process.returncode}")
        return self._ready()

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not go in time."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """kill -9: no NOTIFICATION, no cleanup; the peer sees the TCP connection drop."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            self.process = None
            return
        if self.frozen and sig != signal.SIGKILL:
            self.resume()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.process = None
        self.frozen = False

    def restart(self, *, hard: bool = False) -> None:
        """Stops (SIGTERM, or kill -9 when `hard`) and starts again with the same config."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: the process stays, sends nothing, answers nothing (a hung router)."""
        if self.process is None:
            raise LabError(f"{self.name}: not running")
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def resume(self) -> None:
        if self.process is None:
            raise LabError(f"{self.name}: not running")
        os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def close(self) -> None:
        """Ends the daemon whatever its state. Safe to call twice."""
        if self.process is not None and self.process.poll() is None:
            if self.frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGCONT)
                self.frozen = False
            self._signal_and_wait(signal.SIGTERM, 5.0)
        self.process = None

    # -- sessions and routes --------------------------------------------------------------

    def peer(self, name: str) -> PeerSpec:
        try:
            return self.peers[name]
        except KeyError:
            raise LabError(
                f"{self.name}: no peer named {name!r}; have {sorted(self.peers)}"
            ) from None

    def wait_established(self, peer: str, *, timeout: float = 30.0) -> None:
        self.wait_state(peer, ESTABLISHED, timeout=timeout)

    def wait_state(self, peer: str, state: str, *, timeout: float = 30.0) -> None:
        seen: list[str] = []

        def probe() -> str:
            now = self.session_state(peer)
            if not seen or seen[-1] != now:
                seen.append(now)
            return now

        try:
            wait_for(
                probe,
                f"{self.name}'s session {peer} to be {state}",
                timeout,
                done=lambda now: now == state,
                interval=0.1,
                ignore=(LabError,),
            )
        except TimeoutError as exc:
            raise LabError(f"{exc}; states seen: {seen}\n{self.log_tail()}") from exc

    def wait_routes(
        self,
        peer: str,
        predicate: Callable[[list[Route]], bool],
        *,
        family: str = IPV4_UNICAST,
        timeout: float = 30.0,
        what: str = "routes",
    ) -> list[Route]:
        """Polls the routes received from `peer` until `predicate` holds; returns them."""
        last: list[Route] = []

        def probe() -> list[Route]:
            last[:] = self.received_routes(peer, family)
            return last

        try:
            return wait_for(
                probe,
                f"{self.name}: {what} from {peer}",
                timeout,
                done=predicate,
                interval=0.2,
                ignore=(LabError,),
            )
        except TimeoutError as exc:
            shown = ", ".join(r.prefix for r in last[:20])
            raise LabError(
                f"timed out after {timeout:g} s waiting for {self.name}: {what} from {peer}; "
                f"last saw {len(last)}: {shown}\n{self.log_tail()}"
            ) from exc

    def originate(
        self,
        prefix: str,
        *,
        next_hop: str | None = None,
        communities: Sequence[str] = (),
        large_communities: Sequence[str] = (),
        med: int | None = None,
        local_pref: int | None = None,
        as_path: Sequence[int] = (),
        origin: str | None = None,
        originator_id: str | None = None,
        cluster_list: Sequence[str] = (),
    ) -> Origination:
        """Announces `prefix` to every peer whose families carry it (see `Origination` for
        what each daemon supports)."""
        network = ipaddress.ip_network(prefix)
        family = family_of(prefix)
        if next_hop is None:
            next_hop = self.export_next_hop6 if family == IPV6_UNICAST else self.export_next_hop4
        route = Origination(
            prefix=str(network),
            next_hop=next_hop,
            communities=tuple(communities),
            large_communities=tuple(large_communities),
            med=med,
            local_pref=local_pref,
            as_path=tuple(as_path),
            origin=origin,
            originator_id=originator_id,
            cluster_list=tuple(cluster_list),
        )
        self._check_origination(route)
        if route.prefix in self.originated:
            self.withdraw(route.prefix)
        self.originated[route.prefix] = route
        if self.running:
            self._announce(route)
        return route

    def withdraw(self, prefix: str) -> None:
        route = self.originated.pop(str(ipaddress.ip_network(prefix)))
        if self.running:
            self._withdraw(route)

    # -- helpers for subclasses -----------------------------------------------------------

    def run_cli(self, argv: list[str], *, timeout: float = CLI_TIMEOUT) -> str:
        """Runs a control CLI; raises LabError with its output when it fails."""
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{self.name}: {argv[0]} timed out after {timeout}s") from exc
        if done.returncode != 0:
            raise LabError(
                f"{self.name}: {' '.join(argv)} exited {done.returncode}: "
                f"{done.stdout.strip()} {done.stderr.strip()}"
            )
        return done.stdout

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"[{self.name}: no log]"
        return f"--- last {lines} lines of {self.log_path}:\n" + "\n".join(text[-lines:])

    def families(self) -> tuple[str, ...]:
        seen = {f for p in self.peers.values() for f in p.families}
        return tuple(f for f in FAMILIES if f in seen)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name} AS{self.asn} {self.address}:{self.port} pid={self.pid}>"
