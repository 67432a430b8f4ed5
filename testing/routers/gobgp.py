"""GoBGP as a lab router: gobgpd with a TOML config, driven by the gobgp CLI over a Unix socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testing.routers.daemon import RouterDaemon
from testing.routers.model import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    STATES,
    LabError,
    Origination,
    PeerSpec,
    Route,
    community_str,
)

_AFI = {IPV4_UNICAST: "ipv4", IPV6_UNICAST: "ipv6"}
# apipb.PeerState.SessionState: 0 unknown, then the RFC 4271 states in order.
_SESSION_STATE = {i + 1: s for i, s in enumerate(STATES)}
_SESSION_STATE_NAMES = {s.upper(): s for s in STATES}
_ORIGINS = {0: "IGP", 1: "EGP", 2: "Incomplete"}


def _toml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


class GoBGP(RouterDaemon):
    kind = "gobgp"
    restart_state = False  # gobgpd -r: set the R bit in the GR capability (we restarted)

    @property
    def api_target(self) -> str:
        return f"unix://{self.workdir / 'gobgp.sock'}"

    def _runtime_files(self) -> list[Path]:
        return [self.workdir / "gobgp.sock"]

    def _command(self) -> list[str]:
        argv = ["gobgpd", "-f", str(self.workdir / "gobgpd.toml"), "-t", "toml",
                "--api-hosts", self.api_target, "--pprof-disable", "-l", "info"]  # fmt: skip
        if self.restart_state:
            argv.append("-r")
        return argv

    def _write_config(self) -> None:
        lines = [
            "[global.config]",
            f"  as = {self.asn}",
            f"  router-id = {_toml_str(self.router_id)}",
            f"  port = {self.port}",
            f"  local-address-list = [{_toml_str(self.address)}]",
            # A lab router is a leaf: it sends its own routes only, never one it learned.
            "[global.apply-policy.config]",
            '  export-policy-list = ["lab-export"]',
            '  default-export-policy = "reject-route"',
            "[[policy-definitions]]",
            '  name = "lab-export"',
            "  [[policy-definitions.statements]]",
            '    name = "local-only"',
            "    [policy-definitions.statements.conditions.bgp-conditions]",
            '      route-type = "local"',
            "    [policy-definitions.statements.actions]",
            '      route-disposition = "accept-route"',
        ]
        for peer in self.peers.values():
            lines.extend(self._neighbor(peer))
        (self.workdir / "gobgpd.toml").write_text("\n".join(lines) + "\n")

    def _neighbor(self, peer: PeerSpec) -> list[str]:
        out = [
            "",
            "[[neighbors]]",
            "  [neighbors.config]",
            f"    neighbor-address = {_toml_str(peer.address)}",
            f"    peer-as = {peer.asn}",
        ]
        if peer.password is not None:
            out.append(f"    auth-password = {_toml_str(peer.password)}")
        out += [
            "  [neighbors.transport.config]",
            f"    local-address = {_toml_str(self.address)}",
            f"    remote-port = {peer.port}",
        ]
        if peer.passive:
            out.append("    passive-mode = true")
        out += [
            "  [neighbors.timers.config]",
            f"    hold-time = {peer.hold_time}",
            f"    keepalive-interval = {peer.keepalive_time}",
            "    connect-retry = 1",
            "    idle-hold-time-after-reset = 1",
        ]
        if peer.ttl_security:
            out += ["  [neighbors.ttl-security.config]", "    enabled = true", "    ttl-min = 255"]
        elif peer.asn != self.asn and peer.multihop > 1:
            out += [
                "  [neighbors.ebgp-multihop.config]",
                "    enabled = true",
                f"    multihop-ttl = {peer.multihop}",
            ]
        if peer.graceful_restart:
            out += [
                "  [neighbors.graceful-restart.config]",
                "    enabled = true",
                f"    restart-time = {peer.restart_time}",
            ]
        for family in peer.families:
            out += [
                "  [[neighbors.afi-safis]]",
                "    [neighbors.afi-safis.config]",
                f"      afi-safi-name = {_toml_str(family)}",
            ]
            if peer.graceful_restart:
                out += [
                    "    [neighbors.afi-safis.mp-graceful-restart.config]",
                    "      enabled = true",
                ]
        return out

    def gobgp(self, *args: str) -> str:
        return self.run_cli(["gobgp", "--target", self.api_target, *args])

    def _ready(self) -> bool:
        return bool(self.gobgp("global").strip())

    def _neighbor_json(self, peer: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.gobgp("-j", "neighbor", self.peer(peer).address))
        return data

    def session_state(self, peer: str) -> str:
        raw = self._neighbor_json(peer).get("state", {}).get("session_state", 0)
        if isinstance(raw, str):
            state = _SESSION_STATE_NAMES.get(raw.upper())
        else:
            state = _SESSION_STATE.get(int(raw))
        if state is None:
            raise LabError(f"{self.name}: unknown GoBGP session state {raw!r}")
        return state

    def received_routes(self, peer: str, family: str = IPV4_UNICAST) -> list[Route]:
        # The global RIB, not `neighbor X adj-in`: adj-in answers nothing once the session is
        # down, while the RIB still holds a restarting peer's stale routes (graceful restart).
        address = self.peer(peer).address
        out = self.gobgp("-j", "global", "rib", "-a", _AFI[family])
        data = json.loads(out) if out.strip() else {}
        routes = [
            _route(prefix, path)
            for prefix, paths in data.items()
            for path in paths
            if path.get("neighbor-ip") == address
        ]
        return sorted(routes, key=lambda r: r.prefix)

    def _announce(self, route: Origination) -> None:
        args = ["global", "rib", "add", "-a", _AFI[route.family], route.prefix,
                "origin", route.origin or "igp", "nexthop", route.next_hop]  # fmt: skip
        if route.as_path:
            args += ["aspath", ",".join(str(a) for a in route.as_path)]
        if route.communities:
            args += ["community", ",".join(route.communities)]
        if route.large_communities:
            args += ["large-community", ",".join(route.large_communities)]
        if route.med is not None:
            args += ["med", str(route.med)]
        if route.local_pref is not None:
            args += ["local-pref", str(route.local_pref)]
        self.gobgp(*args)

    def _withdraw(self, route: Origination) -> None:
        self.gobgp("global", "rib", "del", "-a", _AFI[route.family], route.prefix)


def _route(prefix: str, path: dict[str, Any]) -> Route:
    next_hop: str | None = None
    as_path: list[int] = []
    med = local_pref = None
    origin = None
    communities: list[str] = []
    large: list[str] = []
    for attr in path.get("attrs", []):
        kind = attr.get("type")
        if kind == 1:
            origin = _ORIGINS.get(attr.get("value", -1))
        elif kind == 2:
            for segment in attr.get("as_paths") or []:
                as_path.extend(int(a) for a in segment.get("asns") or [])
        elif kind == 3:
            next_hop = attr.get("nexthop")
        elif kind == 4:
            med = int(attr.get("metric", 0))
        elif kind == 5:
            local_pref = int(attr.get("value", 0))
        elif kind == 8:
            communities.extend(community_str(int(c)) for c in attr.get("communities") or [])
        elif kind == 14:
            next_hop = attr.get("nexthop") or next_hop
        elif kind == 32:
            large.extend(
                f"{c['ASN']}:{c['LocalData1']}:{c['LocalData2']}" for c in attr.get("value") or []
            )
    return Route(
        prefix=prefix,
        next_hop=next_hop,
        as_path=tuple(as_path),
        med=med,
        local_pref=local_pref,
        communities=tuple(sorted(communities)),
        large_communities=tuple(sorted(large)),
        origin=origin,
    )
