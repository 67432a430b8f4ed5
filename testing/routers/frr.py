"""FRR bgpd as a lab router: bgpd alone (no zebra), driven by vtysh over its own vty socket.

With BFD on a peer (`PeerSpec.bfd`), bgpd needs bfdd, and bgpd reaches bfdd only through zebra:
then zebra and bfdd run beside it (as the `frr` user, as FRR's packaging runs them), and since
zebra installs what bgpd learns into the kernel, only inside a network namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from testing.routers.daemon import RouterDaemon
from testing.routers.model import (
    IDLE,
    IPV4_UNICAST,
    IPV6_UNICAST,
    STATES,
    LabError,
    Origination,
    PeerSpec,
    Route,
)
from testing.wait import wait_for

_AF = {IPV4_UNICAST: "ipv4 unicast", IPV6_UNICAST: "ipv6 unicast"}
_AFI = {IPV4_UNICAST: "ipv4", IPV6_UNICAST: "ipv6"}
_LOCAL_TAG = 4242  # marks a lab origination in bgpd's table (see lab-export)
_ORIGINS = {"IGP": "IGP", "EGP": "EGP", "incomplete": "Incomplete", "?": "Incomplete"}
_BFD_STATES = {"up": "Up", "down": "Down", "init": "Init", "shutdown": "AdminDown"}


def _route_map(route: Origination) -> str:
    return "orig-" + re.sub(r"[^0-9a-fA-F]", "-", route.prefix)


class FRR(RouterDaemon):
    kind = "frr"

    @property
    def config_path(self) -> str:
        return str(self.workdir / "bgpd.conf")

    def _runtime_files(self) -> list[Path]:
        return [self.workdir / "bgpd.vty", self.workdir / "bgpd.pid"]

    @property
    def _with_bfd(self) -> bool:
        return any(p.bfd is not None for p in self.peers.values())

    def _command(self) -> list[str]:
        command = self._bgpd_command()
        if self._with_bfd:
            command.remove("-Z")  # bgpd reaches bfdd through zebra
        return command

    def _bgpd_command(self) -> list[str]:
        return [
            "/usr/lib/frr/bgpd",
            "-f", self.config_path,
            "-i", str(self.workdir / "bgpd.pid"),
            "-z", str(self.workdir / "zserv.api"),
            "--vty_socket", str(self.workdir),
            "-Z",  # no zebra: nothing is installed in the kernel
            "-S", "-u", "root", "-g", "root",
            "-l", self.address,
            "-p", str(self.port),
            "-P", "0",  # no TCP vty
        ]  # fmt: skip

    def _write_config(self) -> None:
        # Originations are not written here: `network` lines read from the config file at
        # start-up never enter the table when bgpd runs without zebra, so they are added over
        # vtysh once it answers (RouterDaemon._after_start).
        lines = [
            "frr defaults traditional",
            f"hostname {self.name}",
            "log stdout informational",
            # Apply route-map changes at once (the default waits 5 s, and until then a
            # referenced route-map that is "not yet processed" denies everything).
            "bgp route-map delay-timer 0",
            # A lab router is a leaf: it sends its own routes only, never one it learned. Its
            # originations carry a tag (local to bgpd, never sent) whatever their AS path (an
            # origination may prepend, so an empty AS path does not tell them apart).
            "route-map lab-export permit 10",
            f" match tag {_LOCAL_TAG}",
            "exit",
            "!",
            # A lab route reflector sends its clients what it reflects too (RFC 4456).
            "route-map lab-reflect permit 10",
            "exit",
            "!",
            f"router bgp {self.asn}",
            f" bgp router-id {self.router_id}",
            " no bgp ebgp-requires-policy",
            " no bgp network import-check",
            " no bgp default ipv4-unicast",
            " bgp disable-ebgp-connected-route-check",
        ]
        restart_times = {p.restart_time for p in self.peers.values() if p.graceful_restart}
        if restart_times:
            lines.append(f" bgp graceful-restart restart-time {max(restart_times)}")
        for peer in self.peers.values():
            lines.extend(self._neighbor(peer))
        for family in (IPV4_UNICAST, IPV6_UNICAST):
            peers = [p for p in self.peers.values() if family in p.families]
            if not peers:
                continue
            lines.append(f" address-family {_AF[family]}")
            for peer in peers:
                lines.append(f"  neighbor {peer.address} activate")
                lines.append(f"  neighbor {peer.address} soft-reconfiguration inbound")
                # Keep the documentation next hop the originating route-map set: on eBGP FRR
                # would put its loopback address there, which GoBGP and FRR refuse.
                lines.append(f"  neighbor {peer.address} attribute-unchanged next-hop")
                if peer.route_reflector_client:
                    lines.append(f"  neighbor {peer.address} route-reflector-client")
                    lines.append(f"  neighbor {peer.address} route-map lab-reflect out")
                else:
                    lines.append(f"  neighbor {peer.address} route-map lab-export out")
            lines.append(" exit-address-family")
        lines.append("!")
        (self.workdir / "bgpd.conf").write_text("\n".join(lines) + "\n")

    def _neighbor(self, peer: PeerSpec) -> list[str]:
        n = f" neighbor {peer.address}"
        out = [
            f"{n} remote-as {peer.asn}",
            f"{n} description {peer.name}",
            f"{n} port {peer.port}",
            f"{n} update-source {self.address}",
            f"{n} timers {peer.keepalive_time} {peer.hold_time}",
            f"{n} timers connect 1",
        ]
        if peer.ttl_security:
            out.append(f"{n} ttl-security hops 1")
        elif peer.asn != self.asn and peer.multihop > 1:
            out.append(f"{n} ebgp-multihop {peer.multihop}")
        if peer.passive:
            out.append(f"{n} passive")
        if peer.bfd is not None:
            out.append(f"{n} bfd {peer.bfd.multiplier} {peer.bfd.min_rx} {peer.bfd.min_tx}")
        if peer.password is not None:
            out.append(f"{n} password {peer.password}")
        out.append(
            f"{n} graceful-restart" if peer.graceful_restart else f"{n} graceful-restart-disable"
        )
        return out

    @staticmethod
    def _route_map_lines(route: Origination) -> list[str]:
        out = [f"route-map {_route_map(route)} permit 10", f" set tag {_LOCAL_TAG}"]
        if route.family == IPV6_UNICAST:
            out.append(f" set ipv6 next-hop global {route.next_hop}")
        else:
            out.append(f" set ip next-hop {route.next_hop}")
        if route.communities:
            out.append(f" set community {' '.join(route.communities)}")
        if route.large_communities:
            out.append(f" set large-community {' '.join(route.large_communities)}")
        if route.med is not None:
            out.append(f" set metric {route.med}")
        if route.local_pref is not None:
            out.append(f" set local-preference {route.local_pref}")
        if route.as_path:
            out.append(f" set as-path prepend {' '.join(str(a) for a in route.as_path)}")
        if route.origin is not None:
            out.append(f" set origin {route.origin}")
        return out

    # -- zebra and bfdd, for BFD -----------------------------------------------------------

    def start(self, *, timeout: float = 20.0) -> None:
        if self._with_bfd:
            self._start_helpers(timeout)
        try:
            super().start(timeout=timeout)
        except BaseException:
            self._end_helpers(signal.SIGTERM)
            raise

    def _start_helpers(self, timeout: float) -> None:
        if self.netns is None:
            raise LabError(f"{self.name}: FRR with BFD runs zebra, which writes kernel routes: "
                           "run it in a network namespace (netns=...)")  # fmt: skip
        work = self.workdir
        (work / "zebra.conf").write_text(f"hostname {self.name}\nlog stdout informational\n")
        (work / "bfdd.conf").write_text(f"hostname {self.name}\nlog stdout informational\nbfd\n!\n")
        for stale in ("zserv.api", "zebra.pid", "zebra.vty", "bfdd.pid", "bfdd.vty", "bfdd.sock"):
            (work / stale).unlink(missing_ok=True)
        frr = pwd.getpwnam("frr")
        os.chown(work, frr.pw_uid, frr.pw_gid)  # zebra and bfdd write their sockets here
        lab_root = work.parent.stat().st_mode
        os.chmod(work.parent, lab_root | 0o011)  # and must pass through the lab's own root
        common = ["-z", str(work / "zserv.api"), "--vty_socket", str(work), "-u", "frr",
                  "-g", "frr"]  # fmt: skip
        self._helpers: dict[str, subprocess.Popen[bytes]] = {}
        for name, extra, ready in (
            ("zebra", [], "zserv.api"),
            ("bfdd", ["--bfdctl", str(work / "bfdd.sock")], "bfdd.vty"),
        ):
            argv = [f"/usr/lib/frr/{name}", "-f", str(work / f"{name}.conf"),
                    "-i", str(work / f"{name}.pid"), *common, *extra]  # fmt: skip
            with (work / f"{name}.log").open("ab") as log:
                self._helpers[name] = subprocess.Popen(
                    self._wrap(argv), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=work, start_new_session=True,
                )  # fmt: skip
            path = work / ready
            try:
                wait_for(path.exists, f"{self.name} {name}", timeout=timeout)
            except TimeoutError as exc:
                self._end_helpers(signal.SIGKILL)
                log_text = (work / f"{name}.log").read_text(errors="replace")[-2000:]
                raise LabError(f"{self.name}: {name} did not come up: {exc}\n{log_text}") from exc

    def _end_helpers(self, sig: signal.Signals) -> None:
        for proc in reversed(list(getattr(self, "_helpers", {}).values())):
            if proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._helpers = {}

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        super()._signal_and_wait(sig, timeout)
        self._end_helpers(sig)

    def close(self) -> None:
        super().close()
        self._end_helpers(signal.SIGTERM)

    def freeze(self) -> None:
        """SIGSTOP bgpd and, with BFD, bfdd and zebra: the whole router hangs."""
        super().freeze()
        for proc in getattr(self, "_helpers", {}).values():
            os.kill(proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        super().resume()
        for proc in getattr(self, "_helpers", {}).values():
            os.kill(proc.pid, signal.SIGCONT)

    def bfd_state(self, peer: str) -> str:
        """The BFD session to `peer` as RFC 5880 names its state; Down when bfdd has none."""
        address = self.peer(peer).address
        for entry in self._json("show bfd peers json", daemon="bfdd") or []:
            if entry.get("peer") == address:
                return _BFD_STATES[str(entry.get("status"))]
        return "Down"

    def last_error(self, peer: str) -> str:
        """Why bgpd last reset the session ("" when it never did)."""
        address = self.peer(peer).address
        data = self._json(f"show bgp neighbors {address} json").get(address, {})
        return str(data.get("lastNotificationReason") or data.get("lastResetDueTo") or "")

    def vtysh(self, *commands: str, daemon: str = "bgpd") -> str:
        argv = ["vtysh", "--vty_socket", str(self.workdir), "--config_dir", str(self.workdir),
                "-d", daemon]  # fmt: skip
        for command in commands:
            argv += ["-c", command]
        out = self.run_cli(argv)
        if out.startswith("%") or "% Unknown command" in out or "% Invalid" in out:
            raise LabError(f"{self.name}: vtysh {commands}: {out.strip()}")
        return out

    def _json(self, command: str, *, daemon: str = "bgpd") -> Any:
        out = self.vtysh(command, daemon=daemon)
        try:
            return json.loads(out) if out.strip() else {}
        except json.JSONDecodeError as exc:
            raise LabError(f"{self.name}: {command}: not JSON: {out[:200]!r}") from exc

    def _ready(self) -> bool:
        self.vtysh("show running-config")  # raises until bgpd answers on its vty socket
        return True

    def session_state(self, peer: str) -> str:
        address = self.peer(peer).address
        data = self._json(f"show bgp neighbors {address} json")
        state = data.get(address, {}).get("bgpState")
        if state in ("Clearing", "Deleted", None):
            return IDLE
        if state not in STATES:
            raise LabError(f"{self.name}: unknown FRR state {state!r}")
        return str(state)

    def received_routes(self, peer: str, family: str = IPV4_UNICAST) -> list[Route]:
        # `received-routes json` lacks communities in FRR 8.4; `json detail` has every path of
        # every prefix with all attributes in one call, so take the paths this peer sent.
        # FRR gives every eBGP-learned path a LOCAL_PREF in its table, so whether the peer sent
        # one is read from the Adj-RIB-In (`received-routes`, kept by soft-reconfiguration).
        address = self.peer(peer).address
        data = self._json(f"show bgp {_AF[family]} json detail")
        adj_in = self._json(f"show bgp {_AF[family]} neighbors {address} received-routes json")
        received = adj_in.get("receivedRoutes", {})
        routes = [
            _route(prefix, path, received.get(prefix, {}).get("locPrf"))
            for prefix, entries in data.get("routes", {}).items()
            for path in entries
            if path.get("peer", {}).get("peerId") == address
        ]
        return sorted(routes, key=lambda r: r.prefix)

    def _announce(self, route: Origination) -> None:
        self.vtysh(
            "configure terminal",
            *self._route_map_lines(route),
            "exit",
            f"router bgp {self.asn}",
            f"address-family {_AF[route.family]}",
            f"network {route.prefix} route-map {_route_map(route)}",
        )

    def _withdraw(self, route: Origination) -> None:
        self.vtysh(
            "configure terminal",
            f"router bgp {self.asn}",
            f"address-family {_AF[route.family]}",
            f"no network {route.prefix} route-map {_route_map(route)}",
            "exit-address-family",
            "exit",
            f"no route-map {_route_map(route)}",
        )


def _route(prefix: str, path: dict[str, Any], local_pref: int | None) -> Route:
    as_path = [
        int(asn)
        for segment in path.get("aspath", {}).get("segments", [])
        for asn in segment.get("list", [])
    ]
    hops = path.get("nexthops") or []
    global_hops = [h["ip"] for h in hops if h.get("scope", "global") == "global" and "ip" in h]
    med = path.get("metric")
    return Route(
        prefix=prefix,
        next_hop=global_hops[0] if global_hops else None,
        as_path=tuple(as_path),
        med=int(med) if med is not None else None,
        local_pref=int(local_pref) if local_pref is not None else None,
        communities=tuple(sorted(path.get("community", {}).get("list", []))),
        large_communities=tuple(sorted(path.get("largeCommunity", {}).get("list", []))),
        origin=_ORIGINS.get(path.get("origin", ""), path.get("origin")),
        originator_id=path.get("originatorId"),
        cluster_list=tuple(path.get("clusterList", {}).get("list", [])),
    )
