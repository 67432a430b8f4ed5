"""Sockets for BGP sessions: every per-peer socket option is set here, in one place.

Outgoing sockets get the source address and the TTL before connecting; accepted sockets get
the TTL after `accept()`. (TCP MD5, RFC 2385, and GTSM, RFC 5082, belong here too: issue 7.)
The listener accepts with a plain non-blocking socket so that a connection from an address
that is not a configured peer is closed before any byte is read or any object allocated for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketOptions:
    """What a peer's socket needs: source address, TTL (None = the OS default)."""

    source_address: str | None = None
    ttl: int | None = None


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def normalise(address: str) -> str:
    """Canonical text of an address; IPv4-mapped IPv6 (from a dual-stack accept) as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def apply_options(sock: socket.socket, options: SocketOptions) -> None:
    if options.ttl is not None:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, options.ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, options.ttl)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def connect(address: str, port: int, options: SocketOptions) -> socket.socket:
    """A connected non-blocking socket to a peer, with its options set before the SYN."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        apply_options(sock, options)
        if options.source_address:
            sock.bind((options.source_address, 0))
        await loop.sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def local_address_bytes(sock: socket.socket) -> bytes:
    return ipaddress.ip_address(normalise(sock.getsockname()[0])).packed


class Listener:
    """Accepts on (address, port); hands a socket to `on_accept(sock, peer_address)` only for
    an address `wanted(peer_address)` says is configured, and closes every other one at once."""

    def __init__(
        self,
        address: str,
        port: int,
        *,
        wanted: Callable[[str], bool],
        on_accept: Callable[[socket.socket, str], None],
    ) -> None:
        self.address = address
        self.port = port
        self._wanted = wanted
        self._on_accept = on_accept
        self._sock: socket.socket | None = None
        self.refused = 0

    def start(self) -> None:
        sock = socket.socket(_family(self.address), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind((self.address, self.port))
            sock.listen(64)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._ready)

    def _ready(self) -> None:
        assert self._sock is not None
        for _ in range(64):
            try:
                conn, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            peer = normalise(addr[0])
            if not self._wanted(peer):
                self.refused += 1
                conn.close()
                continue
            conn.setblocking(False)
            self._on_accept(conn, peer)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
