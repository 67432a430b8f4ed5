"""A `listen` change that fails leaves the running state exactly as it was, listener included.

Two `Speaker`s in one event loop on loopback: `b` only accepts (its peer is passive), `a`
connects. A change of `b`'s listen address that cannot be bound raises `StateRefused`; `b`
keeps its old listener, its state and its session, and `a` can connect to it again after its
own session was reset. Sending the failing state again fails again (it is not taken as already
applied). The overlapping case (a wildcard address on the old port) swaps when it can and
restores the old listener when it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from speaker.api.schema import DesiredState, parse_desired_state
from speaker.control import StateRefused
from speaker.daemon import Speaker
from testing.routers.lab import loopback_address
from testing.wait import wait_for_async

NOT_LOCAL = "192.0.2.1"  # TEST-NET-1: never an address of this host, so bind() fails


def state(me: str, asn: int, port: int, peers: list[dict[str, object]], advs: list[str], *,
          listen: str | None = None) -> DesiredState:  # fmt: skip
    return parse_desired_state({
        "routerId": me, "asn": asn, "listen": {"address": listen or me, "port": port},
        "peers": peers, "advertisements": [{"prefix": p} for p in advs],
    })  # fmt: skip


def peer(name: str, address: str, asn: int, port: int, src: str, **kw: object) -> dict[str, object]:
    return {"name": name, "address": address, "asn": asn, "port": port, "sourceAddress": src,
            "holdTime": 9, "connectRetryTime": 1, **kw}  # fmt: skip


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 90))


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def free_wildcard_port() -> int:
    """A port free on every IPv4 address (0.0.0.0 binds it) and below the kernel's ephemeral
    range, so no outgoing connection of another test or process takes it as its source port
    meanwhile: a port that `free_port` gives is only free on one address, and only for now."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10_000, low)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between 10000 and {low} on 0.0.0.0")


async def accepts(address: str, port: int) -> bool:
    """Whether something listens on (address, port): the kernel completes the handshake."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def test_failed_listen_change_keeps_the_old_listener_state_and_sessions() -> None:
    a_addr, b_addr = loopback_address(), loopback_address()
    port = free_port(b_addr)

    async def body() -> None:
        a, b = Speaker(), Speaker()
        b_peers = [peer("a", a_addr, 65001, 179, src=b_addr, passive=True)]
        b_state = state(b_addr, 65002, port, b_peers, ["10.2.0.0/24"])
        a_peer = peer("b", b_addr, 65002, port, src=a_addr)
        a_state = state(a_addr, 65001, 179, [a_peer], [])
        try:
            await b.apply(b_state)
            await a.apply(a_state)
            await wait_for_async(lambda: b.status()[0].state == "Established", "established")

            moved = state(b_addr, 65002, port, b_peers, ["10.2.0.0/24", "10.2.1.0/24"],
                          listen=NOT_LOCAL)  # fmt: skip
            for attempt in (1, 2):  # the same failing state again fails again
                with pytest.raises(
                    StateRefused, match=re.escape(f"cannot listen on {NOT_LOCAL} port")
                ):
                    await b.apply(moved)
                assert b.state == b_state, attempt
                assert b.status()[0].state == "Established"
                assert b.status()[0].prefixes_advertised == 1
                assert await accepts(b_addr, port), attempt

            # a's session is reset by a parameter change; it connects to b's listener again.
            before = b.runners["a"].session.since
            await a.apply(state(a_addr, 65001, 179, [{**a_peer, "holdTime": 12}], []))
            await wait_for_async(lambda: b.runners["a"].session.since != before
                                 and b.status()[0].state == "Established",
                                 "re-established")  # fmt: skip
            assert a.status()[0].prefixes_received == 1
        finally:
            await a.close()
            await b.close()

    run(body)


@contextlib.contextmanager
def listening(address: str, port: int) -> Iterator[socket.socket]:
    sock = socket.socket()
    try:
        sock.bind((address, port))
        sock.listen()
        yield sock
    finally:
        sock.close()


def test_overlapping_listen_change_swaps_or_restores_the_old_listener() -> None:
    """0.0.0.0 on the old port cannot be bound beside the old listener: the old one is closed
    first; if the new one still cannot be bound, the old one is bound again."""
    me, other = loopback_address(), loopback_address()
    port = free_wildcard_port()  # the test binds 0.0.0.0 on it

    async def body() -> None:
        b = Speaker()
        old = state(me, 65002, port, [], [])
        try:
            await b.apply(old)
            with listening(other, port):  # someone else holds the port on another address
                with pytest.raises(
                    StateRefused, match=re.escape("cannot listen on 0.0.0.0 port")
                ) as err:
                    await b.apply(state(me, 65002, port, [], [], listen="0.0.0.0"))
                assert str(err.value).endswith("Address already in use")
                assert b.state == old
                assert await accepts(me, port)
            await b.apply(state(me, 65002, port, [], [], listen="0.0.0.0"))
            assert await accepts(me, port) and await accepts(other, port)
            await b.apply(old)
            assert await accepts(me, port) and not await accepts(other, port)
        finally:
            await b.close()

    run(body)
