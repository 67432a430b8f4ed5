"""A node and its ToRs in network namespaces, for the route import tests.

                 hA (203.0.113.100, 2001:db8:100::100)          hB (the same anycast address)
                  | 192.0.2.48/30, 2001:db8:1a::/64              | 192.0.2.52/30, 2001:db8:1b::/64
        tor-a: BIRD, AS 65001                            tor-b: FRR (bgpd), AS 65001
                  | 192.0.2.0/28, 2001:db8:a::/64                | 192.0.2.16/28, 2001:db8:b::/64
                  +------------------ node N (kubgp-speaker, AS 64512) ----+
                                         | 192.0.2.32/28
                 ibgp-3: GoBGP .34, ibgp-1: BIRD .35, ibgp-2: BIRD .36 (iBGP, AS 64512, namespace C)

The node's own addresses, 203.0.113.1-32 and 2001:db8:ff::1-24 on its loopback, are the
sources of the traffic tests; the ToRs forward (static routes) between the node and their host,
and route the node's sources back to it. Everything is created here and deleted by `close()`.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass

from testing.routers.model import LabError
from testing.routers.netns import ip

V4_SOURCES = [f"203.0.113.{i}" for i in range(1, 33)]
V6_SOURCES = [f"2001:db8:ff::{i:x}" for i in range(1, 25)]
ANYCAST4 = "203.0.113.100"
ANYCAST6 = "2001:db8:100::100"


@dataclass(frozen=True)
class Names:
    node: str
    a: str
    b: str
    c: str
    ha: str
    hb: str


class Fabric:
    def __init__(self) -> None:
        tag = f"kgr{os.getpid() % 100000}"
        self.ns = Names(node=f"{tag}N", a=f"{tag}A", b=f"{tag}B", c=f"{tag}C", ha=f"{tag}hA",
                        hb=f"{tag}hB")  # fmt: skip
        self._made: list[str] = []

    def create(self) -> Fabric:
        ns = self.ns
        try:
            for name in (ns.node, ns.a, ns.b, ns.c, ns.ha, ns.hb):
                ip("netns", "add", name)
                self._made.append(name)
                ip("-n", name, "link", "set", "lo", "up")
            self._link(ns.node, "to-a", "192.0.2.1/28", ns.a, "to-node", "192.0.2.2/28",
                       "2001:db8:a::1/64", "2001:db8:a::2/64")  # fmt: skip
            self._link(ns.node, "to-b", "192.0.2.17/28", ns.b, "to-node", "192.0.2.18/28",
                       "2001:db8:b::1/64", "2001:db8:b::2/64")  # fmt: skip
            self._link(ns.node, "to-c", "192.0.2.33/28", ns.c, "to-node", "192.0.2.34/28")
            for extra in ("192.0.2.35/28", "192.0.2.36/28"):
                ip("-n", ns.c, "addr", "add", extra, "dev", "to-node")
            self._link(ns.a, "to-host", "192.0.2.49/30", ns.ha, "to-tor", "192.0.2.50/30",
                       "2001:db8:1a::1/64", "2001:db8:1a::2/64")  # fmt: skip
            self._link(ns.b, "to-host", "192.0.2.53/30", ns.hb, "to-tor", "192.0.2.54/30",
                       "2001:db8:1b::1/64", "2001:db8:1b::2/64")  # fmt: skip
            for source in V4_SOURCES:
                ip("-n", ns.node, "addr", "add", f"{source}/32", "dev", "lo")
            for source in V6_SOURCES:
                ip("-n", ns.node, "addr", "add", f"{source}/128", "dev", "lo")
            for tor, host, link, host4, host6, back4, back6 in (
                (ns.a, ns.ha, "192.0.2.49", "192.0.2.50", "2001:db8:1a::2", "192.0.2.1",
                 "2001:db8:a::1"),
                (ns.b, ns.hb, "192.0.2.53", "192.0.2.54", "2001:db8:1b::2", "192.0.2.17",
                 "2001:db8:b::1"),
            ):  # fmt: skip
                self.sysctl(tor, "net.ipv4.ip_forward=1")
                self.sysctl(tor, "net.ipv6.conf.all.forwarding=1")
                ip("-n", host, "addr", "add", f"{ANYCAST4}/32", "dev", "lo")
                ip("-n", host, "addr", "add", f"{ANYCAST6}/128", "dev", "lo")
                ip("-n", host, "route", "add", "default", "via", link)
                ip("-n", host, "-6", "route", "add", "default", "via", host6.replace("::2", "::1"))
                ip("-n", tor, "route", "add", f"{ANYCAST4}/32", "via", host4)
                ip("-n", tor, "-6", "route", "add", f"{ANYCAST6}/128", "via", host6)
                ip("-n", tor, "route", "add", "203.0.113.0/26", "via", back4)
                ip("-n", tor, "-6", "route", "add", "2001:db8:ff::/64", "via", back6)
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def sysctl(netns: str, setting: str) -> None:
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", setting], check=True,
                       capture_output=True, timeout=20)  # fmt: skip

    @staticmethod
    def _link(  # noqa: PLR0917 - the two ends, in the order they are written
        left: str, left_if: str, left4: str, right: str, right_if: str, right4: str,
        left6: str | None = None, right6: str | None = None,
    ) -> None:  # fmt: skip
        ip("-n", left, "link", "add", left_if, "type", "veth", "peer", "name", right_if,
           "netns", right)  # fmt: skip
        for ns, dev, v4, v6 in ((left, left_if, left4, left6), (right, right_if, right4, right6)):
            ip("-n", ns, "addr", "add", v4, "dev", dev)
            if v6 is not None:
                ip("-n", ns, "addr", "add", v6, "dev", dev, "nodad")
            ip("-n", ns, "link", "set", dev, "up")

    def close(self) -> None:
        for name in reversed(self._made):
            with contextlib.suppress(LabError):
                ip("netns", "del", name)
        self._made.clear()

    # ---- traffic -----------------------------------------------------------------------------

    def ping_all(self, *, v6: bool = False, timeout: float = 60.0) -> list[str]:
        """One echo from each of the node's sources to the anycast address, all at once;
        returns the sources that got no answer."""
        sources = V6_SOURCES if v6 else V4_SOURCES
        target = ANYCAST6 if v6 else ANYCAST4
        procs = [
            (s, subprocess.Popen(
                ["ip", "netns", "exec", self.ns.node, "ping", "-6" if v6 else "-4", "-n", "-c",
                 "1", "-W", "5", "-I", s, target],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            for s in sources
        ]  # fmt: skip
        failed = []
        for source, proc in procs:
            if proc.wait(timeout=timeout) != 0:
                failed.append(source)
        return failed

    def echoes(self, netns: str, *, v6: bool = False) -> int:
        """ICMP echo requests the namespace's stack has answered (its SNMP counters)."""
        done = subprocess.run(
            ["ip", "netns", "exec", netns, "cat", "/proc/net/snmp6" if v6 else "/proc/net/snmp"],
            capture_output=True, text=True, check=True, timeout=20,
        )  # fmt: skip
        if v6:
            match = re.search(r"^Icmp6InEchos\s+(\d+)", done.stdout, re.MULTILINE)
            assert match, done.stdout
            return int(match.group(1))
        heads, values = [ln.split() for ln in done.stdout.splitlines() if ln.startswith("Icmp:")]
        return int(values[heads.index("InEchos")])
