"""BIRD 2 as a lab router: one `protocol bgp` per peer, originated routes in static protocols."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from testing.routers.daemon import RouterDaemon
from testing.routers.model import (
    ACTIVE,
    BFD_STATES,
    IDLE,
    IPV4_UNICAST,
    IPV6_UNICAST,
    STATES,
    LabError,
    Origination,
    PeerSpec,
    Route,
)

_CHANNEL = {IPV4_UNICAST: "ipv4", IPV6_UNICAST: "ipv6"}
_TABLE = {IPV4_UNICAST: "master4", IPV6_UNICAST: "master6"}
_STATIC = {IPV4_UNICAST: "static4", IPV6_UNICAST: "static6"}
_PAIR = re.compile(r"\((\d+),\s*(\d+)\)")
_TRIPLE = re.compile(r"\((\d+),\s*(\d+),\s*(\d+)\)")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Bird(RouterDaemon):
    kind = "bird"

    @property
    def config_path(self) -> str:
        return str(self.workdir / "bird.conf")

    @property
    def control_socket(self) -> str:
        return str(self.workdir / "bird.ctl")

    def protocol(self, peer: str) -> str:
        return "p_" + self.peer(peer).name.replace("-", "_")

    def _runtime_files(self) -> list[Path]:
        return [self.workdir / "bird.ctl", self.workdir / "bird.pid"]

    def _command(self) -> list[str]:
        return ["bird", "-f", "-c", self.config_path, "-s", self.control_socket,
                "-P", str(self.workdir / "bird.pid")]  # fmt: skip

    def _write_config(self) -> None:
        lines = [
            f"router id {self.router_id};",
            "log stderr all;",
            "debug protocols { states, events };",
            "timeformat protocol iso long;",
            "protocol device { scan time 10; }",
        ]
        for family in (IPV4_UNICAST, IPV6_UNICAST):
            routes = [r for r in self.originated.values() if r.family == family]
            lines.append(f"protocol static {_STATIC[family]} {{")
            lines.append(f"  {_CHANNEL[family]};")
            lines.extend(f"  {self._static_route(r)}" for r in routes)
            lines.append("}")
        lines.extend(self._bfd_protocol())
        for peer in self.peers.values():
            lines.extend(self._protocol(peer))
        (self.workdir / "bird.conf").write_text("\n".join(lines) + "\n")

    def _bfd_protocol(self) -> list[str]:
        """BIRD 2.0.12 sets BFD timers per interface (or for multihop), not per BGP peer: the
        first peer with BFD gives them to every session."""
        timers = next((p.bfd for p in self.peers.values() if p.bfd is not None), None)
        if timers is None:
            return []
        options = (f"min rx interval {timers.min_rx} ms; min tx interval {timers.min_tx} ms; "
                   f"multiplier {timers.multiplier};")  # fmt: skip
        return ["protocol bfd {", f'  interface "*" {{ {options} }};',
                f"  multihop {{ {options} }};", "}"]  # fmt: skip

    def _check_origination(self, route: Origination) -> None:
        """BIRD originates every attribute the lab knows."""

    @staticmethod
    def _static_route(route: Origination) -> str:
        sets = [f"bgp_next_hop = {route.next_hop};"]
        if route.origin is not None:
            sets.append(f"bgp_origin = ORIGIN_{route.origin.upper()};")
        if route.originator_id is not None:
            sets.append(f"bgp_originator_id = {route.originator_id};")
        sets += [f"bgp_cluster_list.add({c});" for c in route.cluster_list]
        sets += [f"bgp_community.add(({c.replace(':', ',')}));" for c in route.communities]
        sets += [
            f"bgp_large_community.add(({c.replace(':', ',')}));" for c in route.large_communities
        ]
        if route.local_pref is not None:
            sets.append(f"bgp_local_pref = {route.local_pref};")
        # Any other BGP attribute, as BIRD's filter language sets it: {"bgp_originator_id":
        # "192.0.2.11"}, {"bgp_cluster_list": "add(bgp_cluster_list, 192.0.2.250)"}.
        sets += [f"{key} = {value};" for key, value in route.extra.items()]
        return f"route {route.prefix} unreachable {{ {' '.join(sets)} }};"

    def _export_filter(self, family: str) -> list[str]:
        # BIRD drops a MED set on the route itself when it exports to eBGP; set in the
        # export filter, it is sent.
        out = ["export filter {", f'  if proto != "{_STATIC[family]}" then reject;']
        for route in self.originated.values():
            if route.family == family and route.med is not None:
                out.append(f"  if net = {route.prefix} then bgp_med = {route.med};")
            if route.family == family and route.as_path:
                # a static route has no path: prepend the last AS first
                prepends = " ".join(f"bgp_path.prepend({a});" for a in reversed(route.as_path))
                out.append(f"  if net = {route.prefix} then {{ {prepends} }}")
        out += ["  accept;", "};"]
        return out

    def _protocol(self, peer: PeerSpec) -> list[str]:
        out = [
            f"protocol bgp {self.protocol(peer.name)} {{",
            f"  local {self.address} port {self.port} as {self.asn};",
            f"  neighbor {peer.address} port {peer.port} as {peer.asn};",
            "  strict bind yes;",
            f"  multihop {peer.multihop};" if peer.multihop > 1 else "  direct;",
            "  connect delay time 1;",
            "  connect retry time 2;",
            "  error wait time 1, 5;",
        ]
        if peer.hold_time:
            out.append(f"  hold time {peer.hold_time};")
            out.append(f"  keepalive time {peer.keepalive_time};")
        else:
            out.append("  hold time 0;")
        if peer.ttl_security:
            out.append("  ttl security on;")
        if peer.passive:
            out.append("  passive on;")
        if peer.password is not None:
            out.append(f"  password {_quote(peer.password)};")
        if peer.bfd is not None:
            out.append("  bfd on;")
        if peer.route_reflector_client:
            out.append("  rr client;")
        out.append(f"  graceful restart {'on' if peer.graceful_restart else 'off'};")
        if peer.graceful_restart:
            out.append(f"  graceful restart time {peer.restart_time};")
        out.append("  long lived graceful restart off;")
        for family in peer.families:
            out.append(f"  {_CHANNEL[family]} {{")
            out.append("    import all;")
            out.extend(f"    {line}" for line in self._export_filter(family))
            out.append("    next hop keep;")
            if family == IPV6_UNICAST and ":" not in peer.address:
                out.append("    extended next hop off;")
            out.append("  };")
        out.append("}")
        return out

    def _after_start(self) -> None:
        """Nothing to re-add: BIRD's originations live in its config file."""

    def birdc(self, *args: str) -> str:
        out = self.run_cli(["birdc", "-s", self.control_socket, *args])
        if "Unable to connect" in out or "syntax error" in out:
            raise LabError(f"{self.name}: birdc {' '.join(args)}: {out.strip()}")
        return out

    def _ready(self) -> bool:
        return "Daemon is up and running" in self.birdc("show", "status")

    def session_state(self, peer: str) -> str:
        out = self.birdc("show", "protocols", "all", self.protocol(peer))
        match = re.search(r"BGP state:\s+(\w+)", out)
        if not match:
            # The protocol is down (e.g. after an error) and prints no BGP state.
            return IDLE
        state = match.group(1)
        if state == "Passive":
            return ACTIVE
        if state == "Down":
            return IDLE
        if state not in STATES:
            raise LabError(f"{self.name}: unknown BIRD state {state!r}")
        return state

    def bfd_state(self, peer: str) -> str:
        """The BFD session to `peer` as RFC 5880 names its state; Down when BIRD has none."""
        address = self.peer(peer).address
        for line in self.birdc("show", "bfd", "sessions").splitlines():
            fields = line.split()
            if fields and fields[0] == address:
                state = next((f for f in fields[1:] if f in BFD_STATES), None)
                if state is None:
                    raise LabError(f"{self.name}: cannot read a BFD state from {line!r}")
                return state
        return "Down"

    def last_error(self, peer: str) -> str:
        """BIRD's `Last error` of the peer's protocol ("" when none)."""
        out = self.birdc("show", "protocols", "all", self.protocol(peer))
        match = re.search(r"Last error:\s+(.+)", out)
        return match.group(1).strip() if match else ""

    def received_routes(self, peer: str, family: str = IPV4_UNICAST) -> list[Route]:
        out = self.birdc(
            "show", "route", "all", "table", _TABLE[family], "protocol", self.protocol(peer)
        )
        routes = _parse_routes(out)
        if self.peer(peer).asn != self.asn:
            # BIRD attaches its default LOCAL_PREF to every eBGP route and ignores one that was
            # received (RFC 4271 §5.1.5), so on eBGP its table cannot say; report none.
            routes = [replace(r, local_pref=None) for r in routes]
        return sorted(routes, key=lambda r: r.prefix)

    def reconfigure(self) -> None:
        self._write_config()
        out = self.birdc("configure")
        if "Reconfigured" not in out and "Reconfiguration in progress" not in out:
            raise LabError(f"{self.name}: configure failed: {out.strip()}\n{self.log_tail()}")

    def _announce(self, route: Origination) -> None:
        self.reconfigure()

    def _withdraw(self, route: Origination) -> None:
        self.reconfigure()


def _parse_routes(text: str) -> list[Route]:
    routes: list[Route] = []
    current: dict[str, str] | None = None
    prefix = ""

    def flush() -> None:
        if current is not None:
            routes.append(_route(prefix, current))

    for line in text.splitlines():
        if not line.strip() or line.startswith(("BIRD ", "Table ")):
            continue
        if line.startswith("\t"):
            key, _, value = line.strip().partition(":")
            if current is not None:
                current[key] = value.strip()
            continue
        flush()
        if not line[0].isspace():
            prefix = line.split()[0]
        current = {}
    flush()
    return routes


def _route(prefix: str, attrs: dict[str, str]) -> Route:
    as_path = tuple(int(a) for a in re.findall(r"\d+", attrs.get("BGP.as_path", "")))
    next_hop = attrs.get("BGP.next_hop", "").split()
    med = attrs.get("BGP.med")
    local_pref = attrs.get("BGP.local_pref")
    return Route(
        prefix=prefix,
        next_hop=next_hop[0] if next_hop else None,
        as_path=as_path,
        med=int(med) if med is not None else None,
        local_pref=int(local_pref) if local_pref is not None else None,
        communities=tuple(
            sorted(f"{a}:{b}" for a, b in _PAIR.findall(attrs.get("BGP.community", "")))
        ),
        large_communities=tuple(
            sorted(
                f"{a}:{b}:{c}" for a, b, c in _TRIPLE.findall(attrs.get("BGP.large_community", ""))
            )
        ),
        origin=attrs.get("BGP.origin"),
        originator_id=attrs.get("BGP.originator_id") or None,
        cluster_list=tuple(attrs.get("BGP.cluster_list", "").split()),
    )
