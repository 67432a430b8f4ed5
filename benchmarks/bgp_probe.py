"""An implementation-neutral BGP peer for the benchmarks: a receiver that counts the distinct
IPv4 prefixes each peer announces, and a sender that blasts N /32s as fast as the socket takes
them. Raw sockets and a few lines of message handling, none of kubgp's session code, so that
kubgp, BIRD, FRR and GoBGP meet the same peer.

    python -m benchmarks.bgp_probe receive --listen 127.1.0.2 --asn 65000 --expect 100000
    python -m benchmarks.bgp_probe send --connect 127.1.0.3 --source 127.1.0.2 --asn 65001 \\
        --count 100000 [--next-hop 192.0.2.77]

Each prints JSON lines on stdout, with `t` from `time.monotonic()` (CLOCK_MONOTONIC, the same
clock in every process of the machine):
- receive: `listening`; per session `established`; `all` when a peer's table first holds
  `--expect` prefixes; after that one `update` line per UPDATE (announced, withdrawn).
- send: `established`, then `sent` once every UPDATE is written (End-of-RIB last); keepalives
  until stdin closes.

The sender's NEXT_HOP is a documentation address (192.0.2.77 unless `--next-hop`), never its
own loopback source: FRR takes a 127/8 next hop for a martian and resets the session after the
first UPDATE, GoBGP treats such an UPDATE as a withdraw (RFC 7606). Every receiver gets the same
bytes. The next hop is an attribute only: nothing is sent to it.

Traffic only between the loopback addresses given. Ends on SIGTERM, or when stdin closes.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Sequence

MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
HOLD = 90
NEXT_HOP = "192.0.2.77"  # TEST-NET-1: valid for FRR, GoBGP, BIRD and kubgp (127/8 is not)
KEEPALIVE_MESSAGE = MARKER + b"\x00\x13\x04"


def emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


def open_message(asn: int, router_id: str) -> bytes:
    caps = (
        b"\x01\x04\x00\x01\x00\x01"  # multiprotocol IPv4 unicast
        + b"\x02\x00"  # route refresh
        + b"\x41\x04"
        + asn.to_bytes(4, "big")  # 4-octet AS
    )
    params = b"\x02" + bytes((len(caps),)) + caps
    my_as = asn if asn <= 0xFFFF else 23456
    body = (
        b"\x04"
        + my_as.to_bytes(2, "big")
        + HOLD.to_bytes(2, "big")
        + ipaddress.IPv4Address(router_id).packed
        + bytes((len(params),))
        + params
    )
    return MARKER + (19 + len(body)).to_bytes(2, "big") + bytes((OPEN,)) + body


def nlri_entries(data: bytes) -> list[bytes]:
    """Prefixes of an NLRI field as their wire entries (host routes sliced in one pass)."""
    n = len(data)
    if n >= 10 and data[0] == 32 and not n % 5 and data[::5] == b"\x20" * (n // 5):
        return [data[i : i + 5] for i in range(0, n, 5)]
    out, i = [], 0
    while i < n:
        end = i + 1 + ((data[i] + 7) >> 3)
        out.append(data[i:end])
        i = end
    return out


class Conn:
    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.buf = bytearray()
        self.out = bytearray()
        self.established = False
        self.sent_open = False
        self.prefixes: set[bytes] = set()
        self.reported_all = False
        self.last_keepalive = time.monotonic()

    def send(self, data: bytes) -> None:
        self.out += data
        self.flush()

    def flush(self) -> None:
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return
            del self.out[:n]

    def messages(self) -> list[tuple[int, bytes]]:
        out = []
        buf = self.buf
        while len(buf) >= 19:
            length = int.from_bytes(buf[16:18], "big")
            if len(buf) < length:
                break
            out.append((buf[18], bytes(buf[19:length])))
            del buf[:length]
        return out


def on_update(conn: Conn, body: bytes, expect: int) -> None:
    wlen = int.from_bytes(body[0:2], "big")
    withdrawn = nlri_entries(body[2 : 2 + wlen])
    alen = int.from_bytes(body[2 + wlen : 4 + wlen], "big")
    announced = nlri_entries(body[4 + wlen + alen :])
    conn.prefixes.difference_update(withdrawn)
    conn.prefixes.update(announced)
    if conn.reported_all:
        if announced or withdrawn:
            emit("update", peer=conn.name, announced=len(announced), withdrawn=len(withdrawn))
    elif len(conn.prefixes) >= expect:
        conn.reported_all = True
        emit("all", peer=conn.name, count=len(conn.prefixes))


def handle(conn: Conn, asn: int, router_id: str, expect: int) -> bool:
    """Read what there is; False when the connection is gone."""
    try:
        data = conn.sock.recv(1 << 20)
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    if not data:
        return False
    conn.buf += data
    for kind, body in conn.messages():
        if kind == OPEN:
            if not conn.sent_open:
                conn.send(open_message(asn, router_id))
                conn.sent_open = True
            conn.send(KEEPALIVE_MESSAGE)
        elif kind == KEEPALIVE and not conn.established:
            conn.established = True
            emit("established", peer=conn.name)
        elif kind == UPDATE:
            on_update(conn, body, expect)
        elif kind == NOTIFICATION:
            emit("notification", peer=conn.name, code=body[0], subcode=body[1])
            return False
    return True


def receive(listen: Sequence[str], port: int, asn: int, expect: int) -> None:
    sel = selectors.DefaultSelector()
    for address in listen:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((address, port))
        server.listen(16)
        server.setblocking(False)
        sel.register(server, selectors.EVENT_READ, ("listen", address))
    sel.register(sys.stdin, selectors.EVENT_READ, ("stdin", None))
    emit("listening")
    conns: list[Conn] = []
    router_id = listen[0]
    while True:
        for key, _ in sel.select(timeout=1.0):
            kind, what = key.data
            if kind == "stdin":
                if not sys.stdin.readline():
                    return
            elif kind == "listen":
                sock, peer = key.fileobj.accept()  # type: ignore[union-attr]
                sock.setblocking(False)
                conn = Conn(sock, f"{what}<-{peer[0]}")
                conns.append(conn)
                sel.register(sock, selectors.EVENT_READ, ("conn", conn))
            else:
                assert isinstance(what, Conn)
                if not handle(what, asn, router_id, expect):
                    sel.unregister(what.sock)
                    what.sock.close()
                    conns.remove(what)
                    emit("closed", peer=what.name)
        now = time.monotonic()
        for conn in conns:
            if conn.established and now - conn.last_keepalive > HOLD / 3:
                conn.send(KEEPALIVE_MESSAGE)
                conn.last_keepalive = now
            conn.flush()


def updates(asn: int, next_hop: str, count: int) -> bytes:
    """`count` /32s from 10.128.0.0 in 4096-octet UPDATEs: ORIGIN IGP, AS_PATH (asn),
    NEXT_HOP; then End-of-RIB."""
    attrs = (
        b"\x40\x01\x01\x00"
        + b"\x40\x02\x06\x02\x01"
        + asn.to_bytes(4, "big")
        + b"\x40\x03\x04"
        + ipaddress.IPv4Address(next_hop).packed
    )
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    room = 4096 - 19 - 4 - len(attrs)
    per = room // 5
    out = []
    for start in range(0, count, per):
        n = min(per, count - start)
        nlri = b"".join(b"\x20" + (base + i).to_bytes(4, "big") for i in range(start, start + n))
        body = b"\x00\x00" + len(attrs).to_bytes(2, "big") + attrs + nlri
        out.append(MARKER + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body)
    out.append(MARKER + b"\x00\x17\x02\x00\x00\x00\x00")  # End-of-RIB
    return b"".join(out)


def send(connect: str, port: int, source: str, asn: int, count: int, *, next_hop: str) -> None:
    stream = updates(asn, next_hop, count)
    sock = socket.create_connection((connect, port), timeout=30, source_address=(source, 0))
    sock.settimeout(None)
    sock.sendall(open_message(asn, source))
    conn = Conn(sock, connect)
    got_open = False
    while not conn.established:
        data = sock.recv(65536)
        if not data:
            emit("closed", peer=connect)
            return
        conn.buf += data
        for kind, body in conn.messages():
            if kind == OPEN:
                got_open = True
                sock.sendall(KEEPALIVE_MESSAGE)
            elif kind == KEEPALIVE and got_open:
                conn.established = True
            elif kind == NOTIFICATION:
                emit("notification", peer=connect, code=body[0], subcode=body[1])
                return
    emit("established", peer=connect)
    sock.sendall(stream)
    emit("sent", peer=connect, bytes=len(stream))
    sock.setblocking(False)
    last = time.monotonic()
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "bgp")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    while True:
        for key, _ in sel.select(timeout=1.0):
            if key.data == "stdin":
                if not sys.stdin.readline():
                    return
            else:
                try:
                    if not sock.recv(65536):
                        emit("closed", peer=connect)
                        return
                except BlockingIOError:
                    pass
        if time.monotonic() - last > HOLD / 3:
            sock.setblocking(True)
            sock.sendall(KEEPALIVE_MESSAGE)
            sock.setblocking(False)
            last = time.monotonic()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bgp_probe")
    sub = parser.add_subparsers(dest="role", required=True)
    rx = sub.add_parser("receive")
    rx.add_argument("--listen", action="append", required=True)
    rx.add_argument("--port", type=int, default=179)
    rx.add_argument("--asn", type=int, required=True)
    rx.add_argument("--expect", type=int, required=True)
    tx = sub.add_parser("send")
    tx.add_argument("--connect", required=True)
    tx.add_argument("--port", type=int, default=179)
    tx.add_argument("--source", required=True)
    tx.add_argument("--asn", type=int, required=True)
    tx.add_argument("--count", type=int, required=True)
    tx.add_argument("--next-hop", default=NEXT_HOP, help="NEXT_HOP of every route (not 127/8)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    for address in [*(getattr(args, "listen", None) or []), getattr(args, "connect", None)]:
        if address is not None and not ipaddress.ip_address(address).is_loopback:
            parser.error(f"{address}: loopback addresses only")
    if args.role == "receive":
        receive(args.listen, args.port, args.asn, args.expect)
    else:
        if ipaddress.ip_address(args.next_hop).is_loopback:
            parser.error(f"--next-hop {args.next_hop}: a loopback next hop is a martian to FRR")
        send(args.connect, args.port, args.source, args.asn, args.count, next_hop=args.next_hop)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "nlri_entries", "open_message", "updates"]
