"""Sockets for BGP sessions: every per-peer socket option is set here, in one place.

Outgoing sockets get the source address, the TTL, the TCP MD5 key (RFC 2385) and the GTSM
minimum TTL (RFC 5082) before connecting. The listener holds one MD5 key per configured peer
address (the kernel copies it to the accepted socket, and drops a SYN that is unsigned or
wrongly signed before we ever see it); accepted sockets get TTL and minimum TTL after `accept()`.
The listener accepts with a plain non-blocking socket so that a connection from an address
that is not a configured peer is closed before any byte is read or any object allocated for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

# <linux/tcp.h>, <linux/in.h>, <linux/in6.h>: not all are exported by the socket module.
TCP_MD5SIG = 14
TCP_MD5SIG_MAXKEYLEN = 80
IP_MINTTL = 21
IPV6_MINHOPCOUNT = 73
GTSM_TTL = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketOptions:
    """What a peer's socket needs: source address, TTL (None = the OS default), TCP MD5 key,
    minimum TTL / hop limit of received packets (GTSM; None = off)."""

    source_address: str | None = None
    ttl: int | None = None
    password: str | None = field(default=None, repr=False)
    min_ttl: int | None = None


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def normalise(address: str) -> str:
    """Canonical text of an address; IPv4-mapped IPv6 (from a dual-stack accept) as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _md5sig(family: socket.AddressFamily, peer: str, key: bytes) -> bytes:
    """struct tcp_md5sig: sockaddr_storage (128), flags, prefixlen, keylen, ifindex, key[80].
    On an IPv6 socket an IPv4 peer is keyed by its IPv4-mapped address (a dual-stack accept)."""
    ip = ipaddress.ip_address(peer)
    if family == socket.AF_INET6:
        v6 = ip if ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{ip}")
        addr = struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, v6.packed, 0)
    else:
        addr = struct.pack("=HH4s8x", socket.AF_INET, 0, ip.packed)
    return addr.ljust(128, b"\0") + struct.pack("=BBHI80s", 0, 0, len(key), 0, key)


def set_md5_key(sock: socket.socket, peer: str, password: str | None) -> None:
    """Set (or with None, delete) the TCP MD5 key for `peer` on `sock` (RFC 2385). An IPv6
    peer on an IPv4 socket cannot connect to it: nothing to set."""
    if sock.family == socket.AF_INET and ipaddress.ip_address(peer).version == 6:
        return
    key = b"" if password is None else password.encode()
    if password is None:
        with contextlib.suppress(FileNotFoundError):  # ENOENT: there was no key
            sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, _md5sig(sock.family, peer, key))
        return
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"TCP MD5 key longer than {TCP_MD5SIG_MAXKEYLEN} bytes")
    sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, _md5sig(sock.family, peer, key))


def apply_options(sock: socket.socket, options: SocketOptions) -> None:
    v6 = sock.family == socket.AF_INET6
    if options.ttl is not None:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, options.ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, options.ttl)
    if options.min_ttl is not None:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, options.min_ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, options.min_ttl)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def connect(address: str, port: int, options: SocketOptions) -> socket.socket:
    """A connected non-blocking socket to a peer, with its options set before the SYN."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        apply_options(sock, options)
        if options.password is not None:
            set_md5_key(sock, address, options.password)
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
        self._keys: dict[str, str] = {}
        self.refused = 0

    @property
    def keys(self) -> dict[str, str]:
        """The keys set on the socket (a copy)."""
        return dict(self._keys)

    def set_keys(self, keys: dict[str, str]) -> None:
        """The TCP MD5 key per peer address; keys of addresses not in `keys` are deleted.
        If setting one fails, `keys` says what the socket has, so that setting the old keys
        again undoes the part that was done."""
        if self._sock is not None:
            for peer in sorted(self._keys.keys() - keys.keys()):
                set_md5_key(self._sock, peer, None)
                del self._keys[peer]
            for peer, password in keys.items():
                if self._keys.get(peer) != password:
                    set_md5_key(self._sock, peer, password)
                    self._keys[peer] = password
        self._keys = dict(keys)

    def start(self) -> None:
        sock = socket.socket(_family(self.address), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind((self.address, self.port))
            for peer, password in self._keys.items():
                set_md5_key(sock, peer, password)
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
