"""A node and its ToR in two network namespaces, joined through a third (the "wire") that holds
a bridge, so that the path between them can be cut where neither end sees it.

    node (192.0.2.11, 2001:db8::11) eth0 ==veth== wn [br0 in the wire] wt ==veth== eth0 tor
                                                                            (192.0.2.1, 2001:db8::1)

`cut()` takes the node's port off the bridge: every frame in both directions is lost, while
both ends keep their carrier and their addresses (as when a switch in between fails, or a
link's far side goes dark): only a liveness protocol (BFD, or BGP's hold timer) notices.
`restore()` puts it back. All three namespaces are deleted by `delete()`.
"""

from __future__ import annotations

import contextlib
import itertools
import os

from testing.routers.model import LabError
from testing.routers.netns import Host, ip

_SERIAL = itertools.count(1)


class Wire:
    def __init__(self) -> None:
        tag = f"kubgp{os.getpid() % 100000}w{next(_SERIAL)}"
        self.node = Host(netns=f"{tag}n", ipv4="192.0.2.11", ipv6="2001:db8::11", interface="eth0")
        self.tor = Host(netns=f"{tag}t", ipv4="192.0.2.1", ipv6="2001:db8::1", interface="eth0")
        self.wire = f"{tag}w"
        self._created: list[str] = []

    def create(self) -> Wire:
        try:
            for ns in (self.node.netns, self.wire, self.tor.netns):
                ip("netns", "add", ns)
                self._created.append(ns)
                ip("-n", ns, "link", "set", "lo", "up")
                # No duplicate address detection: link-local addresses are usable at once
                # (FRR needs one for IPv6 next hops, and resets sessions until it has it).
                for scope in ("all", "default"):
                    ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
            ip("-n", self.wire, "link", "add", "br0", "type", "bridge")
            for host, port in ((self.node, "wn"), (self.tor, "wt")):
                ip("-n", host.netns, "link", "add", host.interface, "type", "veth",
                   "peer", "name", port, "netns", self.wire)  # fmt: skip
                ip("-n", self.wire, "link", "set", port, "master", "br0")
                ip("-n", self.wire, "link", "set", port, "up")
                ip("-n", host.netns, "addr", "add", f"{host.ipv4}/24", "dev", host.interface)
                ip("-n", host.netns, "addr", "add", f"{host.ipv6}/64", "dev", host.interface,
                   "nodad")  # fmt: skip
                ip("-n", host.netns, "link", "set", host.interface, "up")
            ip("-n", self.wire, "link", "set", "br0", "up")
        except BaseException:
            self.delete()
            raise
        return self

    def cut(self) -> None:
        ip("-n", self.wire, "link", "set", "wn", "nomaster")

    def restore(self) -> None:
        ip("-n", self.wire, "link", "set", "wn", "master", "br0")

    def delete(self) -> None:
        for ns in reversed(self._created):
            with contextlib.suppress(LabError):
                ip("netns", "del", ns)
        self._created.clear()
