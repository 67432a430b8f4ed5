"""Nodes of a cluster as network namespaces on one Ethernet segment, each with a "pod" network.

    lan = Lan(4).create()        # namespaces <tag>n1..n4 and a switch namespace with a bridge
    lan.hosts[0].address         # 192.0.2.11 (on eth0, 192.0.2.0/24)
    lan.hosts[0].pod_cidr        # 203.0.113.16/28, on the interface `pods`
    lan.hosts[0].pod_address     # 203.0.113.17
    lan.ping(lan.hosts[0], lan.hosts[1])   # from one pod address to another, True if answered
    lan.delete()

Node i (1-based) is 192.0.2.(10+i) and owns 203.0.113.(16*i)/28 (so at most 14 nodes), all
documentation addresses; nothing leaves the namespaces. A pod address on another node is
reachable only through a route to that node's pod CIDR, which is what the routing under test
must install. Deleting the namespaces deletes every interface in them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from dataclasses import dataclass

from testing.routers.model import LabError
from testing.routers.netns import ip

_SERIAL = itertools.count(1)
MAX_HOSTS = 14
SUBNET = "192.0.2"
PODS = "203.0.113"


@dataclass(frozen=True, slots=True, kw_only=True)
class LanHost:
    name: str  # the node name, n1..
    netns: str
    address: str  # on eth0, /24
    pod_cidr: str
    pod_address: str  # the first address of the pod CIDR, on the interface `pods`

    def run(self, *argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Runs a command inside this host's namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


class Lan:
    """`count` hosts on a bridge (see the module doc)."""

    def __init__(self, count: int) -> None:
        if not 1 <= count <= MAX_HOSTS:
            raise ValueError(f"1..{MAX_HOSTS} hosts")
        tag = f"kgl{os.getpid() % 100000}x{next(_SERIAL)}"
        self.switch = f"{tag}sw"
        self.hosts = [
            LanHost(
                name=f"n{i}",
                netns=f"{tag}n{i}",
                address=f"{SUBNET}.{10 + i}",
                pod_cidr=f"{PODS}.{16 * i}/28",
                pod_address=f"{PODS}.{16 * i + 1}",
            )
            for i in range(1, count + 1)
        ]
        self._created: list[str] = []

    def host(self, name: str) -> LanHost:
        return next(h for h in self.hosts if h.name == name)

    def create(self) -> Lan:
        try:
            ip("netns", "add", self.switch)
            self._created.append(self.switch)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            for i, host in enumerate(self.hosts, start=1):
                ip("netns", "add", host.netns)
                self._created.append(host.netns)
                ip("-n", host.netns, "link", "set", "lo", "up")
                port = f"p{i}"
                ip("-n", self.switch, "link", "add", port, "type", "veth",
                   "peer", "name", "eth0", "netns", host.netns)  # fmt: skip
                ip("-n", self.switch, "link", "set", port, "master", "br0")
                ip("-n", self.switch, "link", "set", port, "up")
                ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
                ip("-n", host.netns, "link", "set", "eth0", "up")
                # A dummy interface, in effect: this kernel has no dummy driver, so a veth pair
                # whose other end stays in the namespace (up, for carrier) holds the pods.
                ip("-n", host.netns, "link", "add", "pods", "type", "veth", "peer", "name",
                   "pods-peer")  # fmt: skip
                ip("-n", host.netns, "link", "set", "pods-peer", "up")
                length = host.pod_cidr.split("/")[1]
                ip("-n", host.netns, "addr", "add", f"{host.pod_address}/{length}", "dev",
                   "pods")  # fmt: skip
                ip("-n", host.netns, "link", "set", "pods", "up")
        except BaseException:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        for name in reversed(self._created):
            with contextlib.suppress(LabError):
                ip("netns", "del", name)
        self._created.clear()

    @staticmethod
    def ping(source: LanHost, target: LanHost, *, timeout: float = 1.0) -> bool:
        """One echo from `source`'s pod address to `target`'s; True when it was answered."""
        done = source.run(
            "ping", "-n", "-q", "-c", "1", "-W", f"{timeout:g}", "-I", source.pod_address,
            target.pod_address, timeout=timeout + 10,
        )  # fmt: skip
        return done.returncode == 0

    def unreachable_pairs(
        self, hosts: list[LanHost] | None = None, *, timeout: float = 2.0
    ) -> list[tuple[str, str]]:
        """Every ordered pair of `hosts` (default all) whose pod addresses do not answer one
        echo within `timeout`; the pings run all at once."""
        group = self.hosts if hosts is None else hosts
        pings = [
            ((a.name, b.name), subprocess.Popen(
                ["ip", "netns", "exec", a.netns, "ping", "-n", "-q", "-c", "1", "-W",
                 f"{timeout:g}", "-I", a.pod_address, b.pod_address],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            for a in group for b in group if a is not b
        ]  # fmt: skip
        return [pair for pair, proc in pings if proc.wait(timeout=timeout + 20) != 0]


__all__ = ["Lan", "LanHost"]
