"""The BFD runtime on real sockets (loopback, one event loop): `BfdService` pairs, the TTL rule
of RFC 5881 enforced by the kernel, and the BFD -> BGP coupling in `Speaker` (RFC 5882):
teardown with Cease/BFD Down and a hold until BFD is Up again, BGP unhindered by BFD that has
never been Up, and a remote AdminDown that is not a failure.

A one-way path failure is made by dropping what one side sends (its `Sender.send` replaced
for a while): the other side's detection time runs out, exactly as when a link loses packets.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from speaker.api.ipc import PeerStatus
from speaker.api.schema import DesiredState, Peer, parse_desired_state
from speaker.bfd.packet import ControlPacket, Diagnostic, State
from speaker.bfd.session import StateChanged, Timers
from speaker.bfd_service import BfdPeer, BfdService
from speaker.bfd_transport import SINGLE_HOP_PORT
from speaker.bgp.session.fsm import IdleReason
from speaker.daemon import Speaker, bfd_peer
from testing.routers.lab import loopback_address
from testing.wait import wait_for_async

# Real sockets and real time on a loaded 2-core machine: 200 ms x 3 holds there (docs/bfd.md:
# the event loop can be ~100 ms late under a CPU hog), 50 ms x 3 gives false Downs.
FAST = Timers.from_ms(min_tx=200, min_rx=200, multiplier=3)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


def _state(service: BfdService, name: str) -> State | None:
    session = service.session(name)
    return None if session is None else session.state


def _silence(monkeypatch: pytest.MonkeyPatch, service: BfdService, name: str) -> None:
    sender = service.sender(name)
    assert sender is not None
    monkeypatch.setattr(sender, "send", lambda data: False)


@pytest.mark.slow  # real sockets and BFD timers: seconds of waiting
def test_service_pair_comes_up_and_detects_one_way_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    a_addr, b_addr = loopback_address(), loopback_address()
    seen: list[tuple[str, StateChanged, float]] = []

    async def body() -> None:
        loop = asyncio.get_running_loop()
        a = BfdService(on_state=lambda n, e: seen.append(("a", e, loop.time())))
        b = BfdService(on_state=lambda n, e: seen.append(("b", e, loop.time())))
        try:
            a.configure({"b": BfdPeer(remote=b_addr, local=a_addr, multihop=False, timers=FAST)})
            b.configure({"a": BfdPeer(remote=a_addr, local=b_addr, multihop=False, timers=FAST)})
            await wait_for_async(lambda: _state(a, "b") is _state(b, "a") is State.Up, "both Up")
            session = a.session("b")
            assert session is not None
            await wait_for_async(lambda: not session.polling, "fast timers")
            assert session.tx_interval() == pytest.approx(0.2)
            assert session.detection_time() == pytest.approx(0.6)
            with monkeypatch.context() as m:
                _silence(m, b, "a")
                cut = loop.time()
                await wait_for_async(lambda: _state(a, "b") is State.Down, "a Down")
                (down,) = [e for who, e, _ in seen if who == "a" and e.new is State.Down]
                assert down.diagnostic is Diagnostic.ControlDetectionTimeExpired
                took = next(t for who, e, t in seen if who == "a" and e.new is State.Down) - cut
                # Not before the detection time runs out after b's last packet (at most one
                # transmit interval before the cut); how late it may be is for the benchmark.
                assert took >= 0.6 - 0.2, took
                # a now says Down: b hears it and goes Down too (it still hears a).
                await wait_for_async(lambda: _state(b, "a") is State.Down, "b Down")
            await wait_for_async(lambda: _state(a, "b") is _state(b, "a") is State.Up, "Up again")
            assert session.flaps == 1
        finally:
            await a.close()
            await b.close()

    run(body)


def test_single_hop_takes_only_ttl_255() -> None:
    a_addr, peer_addr = loopback_address(), loopback_address()

    async def body() -> None:
        a = BfdService(on_state=lambda n, e: None)
        try:
            a.configure({"p": BfdPeer(remote=peer_addr, local=a_addr, multihop=False, timers=FAST)})
            session = a.session("p")
            assert session is not None
            down = ControlPacket(state=State.Down, detect_mult=3, my_discriminator=77,
                                 your_discriminator=0, desired_min_tx=1_000_000,
                                 required_min_rx=50_000).encode()  # fmt: skip
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.bind((peer_addr, 49999))
                raw.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 254)
                raw.sendto(down, (a_addr, SINGLE_HOP_PORT))
                await asyncio.sleep(0.3)
                assert session.received == 0 and session.state is State.Down
                raw.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
                raw.sendto(down, (a_addr, SINGLE_HOP_PORT))
                await wait_for_async(lambda: session.received == 1, "the TTL 255 packet")
                assert _state(a, "p") is State.Init
        finally:
            await a.close()

    run(body)


# ---- the coupling, in Speaker ------------------------------------------------------------


def _doc(me: str, asn: int, peer: dict[str, object]) -> DesiredState:
    return parse_desired_state({
        "routerId": me, "asn": asn, "listen": {"address": me, "port": 179},
        "peers": [{"holdTime": 30, "connectRetryTime": 1, "sourceAddress": me, **peer}],
    })  # fmt: skip


def _status(speaker: Speaker, name: str) -> PeerStatus:
    return next(s for s in speaker.status() if s.name == name)


def _established(speaker: Speaker, name: str) -> bool:
    return _status(speaker, name).state == "Established"


class Pair:
    """Speaker `a` with BFD towards `b`; speaker `b` without; `b`'s BFD is a separate
    BfdService on b's address (so it can be silenced, or turned off, on its own)."""

    def __init__(self, a_addr: str, b_addr: str, bfd: dict[str, int] | None = None) -> None:
        self.a_addr, self.b_addr = a_addr, b_addr
        self.bfd = bfd or {"minTx": 200, "minRx": 200, "multiplier": 3}
        self.a, self.b = Speaker(), Speaker()
        self.responder: BfdService | None = None

    def a_state(self, **bfd: int) -> DesiredState:
        return _doc(self.a_addr, 65001, {"name": "b", "address": self.b_addr, "asn": 65002,
                                         "bfd": {**self.bfd, **bfd}})  # fmt: skip

    async def start(self, *, responder: bool = True) -> None:
        if responder:
            self.responder = BfdService(on_state=lambda n, e: None)
            self.responder.configure({"a": BfdPeer(remote=self.a_addr, local=self.b_addr,
                                                   multihop=False, timers=FAST)})  # fmt: skip
        await self.b.apply(_doc(self.b_addr, 65002, {"name": "a", "address": self.a_addr,
                                                     "asn": 65001}))  # fmt: skip
        await self.a.apply(self.a_state())

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()
        if self.responder is not None:
            await self.responder.close()


@pytest.mark.slow  # real sockets and BFD timers: seconds of waiting
def test_bfd_down_tears_bgp_down_and_holds_it_until_bfd_is_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = Pair(loopback_address(), loopback_address())

    async def body() -> None:
        try:
            await pair.start()
            assert pair.responder is not None
            await wait_for_async(
                lambda: (_status(pair.a, "b").bfd or _NONE).state == "Up", "BFD Up"
            )
            await wait_for_async(lambda: _established(pair.a, "b"), "Established")
            with monkeypatch.context() as m:
                _silence(m, pair.responder, "a")
                # Torn down by BFD (seconds before any hold timer could); how fast is measured
                # by benchmarks/bench_bfd.py.
                await wait_for_async(lambda: not _established(pair.a, "b"), "BGP down")
                assert pair.a.runners["b"].session.last_reason is IdleReason.BfdDown
                # b was told why (RFC 9384), and keeps trying to reconnect; a refuses.
                await wait_for_async(lambda: not _established(pair.b, "a"), "b down")
                assert "BFDDown" in (_status(pair.b, "a").last_error or "")
                bfd = _status(pair.a, "b").bfd
                assert bfd is not None and bfd.bgp_held and bfd.state == "Down"
                assert bfd.last_diagnostic == "control-detection-time-expired" and bfd.flaps == 1
                await asyncio.sleep(2.5)  # > 2 connect retries of b (1 s)
                assert not _established(pair.a, "b") and not _established(pair.b, "a")
            await wait_for_async(
                lambda: (_status(pair.a, "b").bfd or _NONE).state == "Up", "BFD Up again"
            )
            await wait_for_async(lambda: _established(pair.a, "b"), "Established again")
            bfd = _status(pair.a, "b").bfd
            assert bfd is not None and not bfd.bgp_held
        finally:
            await pair.close()

    run(body)


def test_bgp_establishes_while_bfd_has_never_been_up() -> None:
    pair = Pair(loopback_address(), loopback_address())

    async def body() -> None:
        try:
            await pair.start(responder=False)
            await wait_for_async(lambda: _established(pair.a, "b"), "Established")
            bfd = _status(pair.a, "b").bfd
            assert bfd is not None and bfd.state == "Down" and not bfd.bgp_held
        finally:
            await pair.close()

    run(body)


def test_remote_admin_down_is_not_a_failure_and_timers_change_without_bgp_reset() -> None:
    pair = Pair(loopback_address(), loopback_address())

    async def body() -> None:
        try:
            await pair.start()
            assert pair.responder is not None
            await wait_for_async(
                lambda: (_status(pair.a, "b").bfd or _NONE).state == "Up", "BFD Up"
            )
            await wait_for_async(lambda: _established(pair.a, "b"), "Established")
            runner = pair.a.runners["b"]
            # New timers: the BFD session is retuned by a Poll, the BGP session untouched.
            await pair.a.apply(pair.a_state(minTx=80))
            assert pair.a.bfd is not None
            session = pair.a.bfd.session("b")
            assert session is not None
            await wait_for_async(lambda: not session.polling, "the Poll done")
            assert session.desired_min_tx == 80_000 and session.state is State.Up
            assert pair.a.runners["b"] is runner and runner.session.counters.flaps == 0
            # The peer turns BFD off: AdminDown, which is not a path failure.
            pair.responder.configure({})
            await wait_for_async(lambda: session.state is State.Down, "BFD Down")
            assert session.local_diag is Diagnostic.NeighborSignaledSessionDown
            await asyncio.sleep(0.5)
            assert _established(pair.a, "b") and runner.session.counters.flaps == 0
            bfd = _status(pair.a, "b").bfd
            assert bfd is not None and not bfd.bgp_held
        finally:
            await pair.close()

    run(body)


class _None:
    state = "absent"


_NONE = _None()


def test_bfd_peer_single_hop_multihop_and_ttl_rules() -> None:
    def peer(**kw: object) -> Peer:
        return parse_desired_state({"routerId": "192.0.2.1", "asn": 1, "peers": [
            {"name": "t", "address": "2001:DB8::1", "asn": 2, "bfd": {"minTx": 50}, **kw}
        ]}).peers[0]  # fmt: skip

    single = bfd_peer(peer(sourceAddress="2001:db8::2"))
    assert single is not None
    assert (single.remote, single.local, single.multihop, single.min_ttl, single.port) == (
        "2001:db8::1", "2001:db8::2", False, 255, 3784
    )  # fmt: skip
    assert single.timers == Timers(desired_min_tx=50_000, required_min_rx=300_000, detect_mult=3)
    multi = bfd_peer(peer(ebgpMultihop=3))
    assert multi is not None and (multi.multihop, multi.min_ttl, multi.port) == (True, 1, 4784)
    gtsm = bfd_peer(peer(ebgpMultihop=3, ttlSecurity=True))
    assert gtsm is not None and gtsm.min_ttl == 253
    plain = {"name": "t", "address": "192.0.2.2", "asn": 2}
    no_bfd = parse_desired_state({"routerId": "192.0.2.1", "asn": 1, "peers": [plain]})
    assert bfd_peer(no_bfd.peers[0]) is None
