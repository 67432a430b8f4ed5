"""Separate hosts for tests that need them: a pair of network namespaces joined by a veth link.

Addresses come from the documentation ranges: 192.0.2.1/24 and 2001:db8::1/64 on side `a`,
.2 and ::2 on side `b`. Traffic never leaves the two namespaces. Both are deleted at teardown
(deleting a namespace deletes its end of the veth, and with it the other end).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from dataclasses import dataclass

from testing.routers.model import LabError

_SERIAL = itertools.count(1)


def ip(*args: str) -> str:
    """Runs `ip ARGS...`; raises LabError with its stderr when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    netns: str
    ipv4: str
    ipv6: str
    interface: str

    def run(self, *argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Runs a command inside this host's namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


class NetnsPair:
    """Two namespaces `a` and `b` with one veth link between them."""

    def __init__(self) -> None:
        tag = f"kubgp{os.getpid() % 100000}n{next(_SERIAL)}"
        self.a = Host(netns=f"{tag}a", ipv4="192.0.2.1", ipv6="2001:db8::1", interface="veth-a")
        self.b = Host(netns=f"{tag}b", ipv4="192.0.2.2", ipv6="2001:db8::2", interface="veth-b")
        self._created: list[str] = []

    def create(self) -> NetnsPair:
        try:
            for host in (self.a, self.b):
                ip("netns", "add", host.netns)
                self._created.append(host.netns)
                ip("-n", host.netns, "link", "set", "lo", "up")
            ip("-n", self.a.netns, "link", "add", self.a.interface, "type", "veth",
                "peer", "name", self.b.interface, "netns", self.b.netns)  # fmt: skip
            for host in (self.a, self.b):
                ip("-n", host.netns, "addr", "add", f"{host.ipv4}/24", "dev", host.interface)
                ip("-n", host.netns, "addr", "add", f"{host.ipv6}/64", "dev", host.interface,
                    "nodad")  # fmt: skip
                ip("-n", host.netns, "link", "set", host.interface, "up")
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
    def exists(name: str) -> bool:
        return name in ip("netns", "list").split()
