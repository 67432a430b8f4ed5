"""UDP sockets for BFD: RFC 5881 (single hop, port 3784) and RFC 5883 (multihop, port 4784).

- `Receiver`: one socket per (local address, port), shared by every session on it, read with
  `recvmsg` from the event loop so that the TTL (IPv4, IP_RECVTTL) or hop limit (IPv6,
  IPV6_RECVHOPLIMIT) each packet arrived with reaches the demultiplexer, which requires 255 on
  single hop (RFC 5881 §5). Single-hop sockets also set IP_MINTTL / IPV6_MINHOPCOUNT 255, so
  the kernel drops anything else before we wake up for it.
- `Sender`: one socket per session, bound to the session's local address and a source port
  from 49152-65535 that no other of our sessions uses (RFC 5881 §4), sending with TTL / hop
  limit 255 and DSCP CS6 (network control, as BIRD and FRR send BFD). Never connected, so an
  ICMP error from the peer's side cannot turn into a socket error here; sending never blocks:
  a full buffer or a missing route drops the packet and counts it (BFD is lossy by design).
- `route_source(remote)`: the address the kernel would send from to reach `remote` (a UDP
  `connect`, which sends nothing), for a peer without `sourceAddress`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import struct
from collections.abc import Callable
from typing import Final

from speaker.transport import IP_MINTTL, IPV6_MINHOPCOUNT, normalise

SINGLE_HOP_PORT: Final = 3784
MULTIHOP_PORT: Final = 4784
SOURCE_PORTS: Final = (49152, 65535)
TTL: Final = 255
DSCP_CS6: Final = 0xC0
# <linux/in.h>, <linux/in6.h>: not all are exported by the socket module.
IP_RECVTTL: Final = 12
IPV6_RECVHOPLIMIT: Final = 51
IPV6_HOPLIMIT: Final = 52
MAX_PACKET: Final = 512
READS_PER_WAKEUP: Final = 256
_CMSG_SPACE: Final = socket.CMSG_SPACE(4)

PacketHandler = Callable[[bytes, str, "int | None"], None]


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def route_source(remote: str) -> str:
    """The local address the kernel picks to reach `remote`; OSError when there is no route."""
    with socket.socket(family_of(remote), socket.SOCK_DGRAM) as sock:
        sock.connect((remote, SINGLE_HOP_PORT))
        return normalise(sock.getsockname()[0])


def _ttl_of(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancdata:
        if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL),
                             (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)):  # fmt: skip
            if len(data) >= 4:
                return int(struct.unpack("=i", data[:4])[0])
            if len(data) == 1:
                return data[0]
    return None


class Receiver:
    """The socket that BFD packets to (`local`, `port`) arrive on."""

    def __init__(self, local: str, port: int, on_packet: PacketHandler) -> None:
        self.local = local
        self.port = port
        self.single_hop = port == SINGLE_HOP_PORT
        self._on_packet = on_packet
        self._sock: socket.socket | None = None
        self.errors = 0

    def start(self) -> None:
        family = family_of(self.local)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
                if self.single_hop:
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, TTL)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
                if self.single_hop:
                    sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, TTL)
            sock.bind((self.local, self.port))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self.drain)

    def drain(self) -> None:
        """Read what has arrived (bounded per call) and hand each packet on."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(READS_PER_WAKEUP):
            try:
                data, ancdata, _flags, address = sock.recvmsg(MAX_PACKET, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1
                return
            self._on_packet(data, normalise(address[0]), _ttl_of(ancdata))

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None


class Sender:
    """One session's sending socket."""

    def __init__(self, local: str, remote: str, port: int, *, used_ports: set[int]) -> None:
        self.local = local
        self.remote = remote
        self.port = port
        self._used = used_ports
        self._sock: socket.socket | None = None
        self.source_port = 0
        self.errors = 0

    def open(self, rng: Callable[[int, int], int] = random.randint) -> None:
        family = family_of(self.local)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, DSCP_CS6)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, DSCP_CS6)
            self.source_port = self._bind(sock, rng)
        except BaseException:
            sock.close()
            raise
        self._used.add(self.source_port)
        self._sock = sock

    def _bind(self, sock: socket.socket, rng: Callable[[int, int], int]) -> int:
        low, high = SOURCE_PORTS
        start = rng(low, high)
        for i in range(high - low + 1):
            port = low + (start - low + i) % (high - low + 1)
            if port in self._used:
                continue
            try:
                sock.bind((self.local, port))
            except OSError:
                continue  # taken by another process; try the next
            return port
        raise OSError(f"no free UDP source port in {low}-{high} on {self.local}")

    def send(self, data: bytes) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.sendto(data, (self.remote, self.port))
        except OSError:  # BlockingIOError, ENETUNREACH, EPERM from a firewall, ...
            self.errors += 1
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._used.discard(self.source_port)


__all__ = [
    "MULTIHOP_PORT",
    "SINGLE_HOP_PORT",
    "TTL",
    "Receiver",
    "Sender",
    "route_source",
]
