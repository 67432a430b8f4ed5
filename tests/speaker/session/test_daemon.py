"""The asyncio runtime: two `Speaker`s in one event loop on loopback, no lab daemons.

Proves what the interop tests cannot easily show: `apply()` returns with the state in the
Adj-RIB-Out, `status()` fields, a dead peer does not delay a live one, an unconfigured router
is refused while sessions stay up, and max-prefixes ends the session with Cease/1.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import pytest

from speaker.api.ipc import PeerStatus
from speaker.api.schema import DesiredState, parse_desired_state
from speaker.bgp.wire.capabilities import MultiprotocolCapability
from speaker.bgp.wire.framing import KEEPALIVE, UPDATE, Framer
from speaker.bgp.wire.messages import Keepalive, Open
from speaker.daemon import Speaker
from speaker.speaker_metrics import SpeakerMetrics
from testing.routers.lab import loopback_address
from testing.wait import wait_for_async
from tests.speaker.wire.hexmsg import NEXT_HOP_192_0_2_1, ORIGIN_IGP, msg, update


def state(me: str, asn: int, peers: list[dict[str, object]], advs: list[str]) -> DesiredState:
    return parse_desired_state({
        "routerId": me, "asn": asn, "listen": {"address": me, "port": 179},
        "peers": peers, "advertisements": [{"prefix": p} for p in advs],
    })  # fmt: skip


def peer(name: str, address: str, asn: int, **kw: object) -> dict[str, object]:
    return {"name": name, "address": address, "asn": asn, "sourceAddress": kw.pop("src", None),
            "holdTime": 9, "connectRetryTime": 1, **kw}  # fmt: skip


def status(speaker: Speaker, name: str) -> PeerStatus:
    return next(s for s in speaker.status() if s.name == name)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


def _clean(d: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in d.items() if v is not None}


def test_two_speakers_establish_exchange_and_apply_differences() -> None:
    a_addr, b_addr = loopback_address(), loopback_address()

    async def body() -> None:
        a, b = Speaker(), Speaker()
        try:
            await b.apply(state(b_addr, 65002, [_clean(peer("a", a_addr, 65001, passive=True))],
                                ["10.2.0.0/24"]))  # fmt: skip
            await a.apply(state(a_addr, 65001, [_clean(peer("b", b_addr, 65002, src=a_addr))],
                                ["10.1.0.0/24", "10.1.1.0/24"]))  # fmt: skip
            await wait_for_async(lambda: status(a, "b").state == "Established", "established")
            await wait_for_async(lambda: status(b, "a").prefixes_received == 2, "a's routes at b")
            s = status(a, "b")
            assert (s.address, s.prefixes_advertised, s.last_error) == (b_addr, 2, None)
            await wait_for_async(lambda: status(a, "b").prefixes_received == 1, "b's route at a")
            # apply() returns with the new state in the Adj-RIB-Out, before it is on the wire.
            await a.apply(state(a_addr, 65001, [_clean(peer("b", b_addr, 65002, src=a_addr))],
                                ["10.1.0.0/24", "10.1.2.0/24", "10.1.3.0/24"]))  # fmt: skip
            assert status(a, "b").prefixes_advertised == 3
            received = b.runners["a"].session.rib_in.routes
            await wait_for_async(lambda: len(received[(1, 1)]) == 3, "the difference at b")
            assert sorted(received[(1, 1)]) == [bytes((24, 10, 1, n)) for n in (0, 2, 3)]
            assert status(a, "b").state == "Established"  # no reset
        finally:
            await a.close()
            await b.close()
        assert "AdministrativeShutdown" in (status(b, "a").last_error or "")

    run(body)


def test_a_dead_peer_does_not_delay_a_live_one_and_strangers_are_refused() -> None:
    a_addr, b_addr, dead_addr, stranger = (loopback_address() for _ in range(4))

    async def body() -> None:
        # A "peer" that accepts TCP and then never says anything.
        dead = socket.create_server((dead_addr, 179))
        a, b = Speaker(), Speaker()
        try:
            await b.apply(state(b_addr, 65002, [_clean(peer("a", a_addr, 65001))], []))
            await a.apply(state(a_addr, 65001, [
                _clean(peer("dead", dead_addr, 65003, src=a_addr)),
                _clean(peer("b", b_addr, 65002, src=a_addr)),
            ], ["10.1.0.0/24"]))  # fmt: skip
            # Well within the dead peer's OpenSent hold time: it does not hold b up.
            await wait_for_async(lambda: status(a, "b").state == "Established", "b established")
            assert status(a, "dead").state == "OpenSent"
            await wait_for_async(lambda: status(b, "a").prefixes_received == 1, "route at b")

            loop = asyncio.get_running_loop()
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((stranger, 0))
            await loop.sock_connect(sock, (a_addr, 179))
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 100), 5)
            except ConnectionResetError:
                data = b""
            sock.close()
            assert data == b""  # closed before any OPEN
            assert status(a, "b").state == "Established"
        finally:
            dead.close()
            await a.close()
            await b.close()

    run(body)


def test_max_prefixes_and_wrong_asn_show_in_status() -> None:
    a_addr, b_addr = loopback_address(), loopback_address()

    async def body() -> None:
        a, b = Speaker(), Speaker()
        try:
            await b.apply(state(b_addr, 65002, [_clean(peer("a", a_addr, 65001, maxPrefixes=2))],
                                []))  # fmt: skip
            await a.apply(state(a_addr, 65001, [_clean(peer("b", b_addr, 65002, src=a_addr))],
                                ["10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24"]))  # fmt: skip
            await wait_for_async(lambda: "MaximumNumberOfPrefixesReached"
                                 in (status(a, "b").last_error or ""), "b refuses")  # fmt: skip
            assert "over 2 prefixes" in (status(b, "a").last_error or "")
            # b now expects a different AS from a: a's status says b refused it.
            await b.apply(state(b_addr, 65002, [_clean(peer("a", a_addr, 65009))], []))
            await wait_for_async(lambda: "received NOTIFICATION OPENMessageError/BadPeerAS"
                                 in (status(a, "b").last_error or ""), "bad peer AS")  # fmt: skip
        finally:
            await a.close()
            await b.close()

    run(body)


def test_tcp_md5_same_key_establishes_other_key_never() -> None:
    a_addr, b_addr, c_addr = loopback_address(), loopback_address(), loopback_address()

    async def body() -> None:
        listener = socket.create_server((c_addr, 179))  # no key: a signed SYN is dropped
        listener.setblocking(False)
        a, b = Speaker(), Speaker()
        try:
            await b.apply(state(b_addr, 65002, [
                _clean(peer("a", a_addr, 65001, src=b_addr, password="s3cret", passive=True)),
            ], []))  # fmt: skip
            await a.apply(state(a_addr, 65001, [
                _clean(peer("b", b_addr, 65002, src=a_addr, password="s3cret")),
                _clean(peer("c", c_addr, 65003, src=a_addr, password="s3cret")),
            ], []))  # fmt: skip
            await wait_for_async(lambda: status(a, "b").state == "Established", "a-b Established")
            await wait_for_async(lambda: bool(status(a, "c").last_error), "c: connect timed out")
            s = status(a, "c")
            assert s.state != "Established" and "MD5 password mismatch likely" in (
                s.last_error or ""
            )
            try:
                listener.accept()
                raise AssertionError("a signed SYN reached a listener without the key")
            except BlockingIOError:
                pass
        finally:
            listener.close()
            await a.close()
            await b.close()

    run(body)


async def _raw_peer(
    me: str, speaker_address: str, asn: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-driven BGP peer: connects from `me`, OPEN (hold time 0) and KEEPALIVE, reads the
    speaker's OPEN and KEEPALIVE; afterwards the test writes UPDATE bytes as it likes."""
    reader, writer = await asyncio.open_connection(speaker_address, 179, local_addr=(me, 0))
    offer = Open.create(asn=asn, hold_time=0, bgp_id=0xC0000263,
                        capabilities=(MultiprotocolCapability(afi=1, safi=1),))  # fmt: skip
    writer.write(offer.encode() + Keepalive().encode())
    framer = Framer()
    got: list[int] = []
    while KEEPALIVE not in got:
        data = await asyncio.wait_for(reader.read(4096), 10)
        assert data, "the speaker closed the connection"
        framer.feed(data)
        got += [t for t, _ in framer]
    return reader, writer


def test_inbound_outcomes_are_logged_once_per_kind_counted_and_gone_with_the_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kubgp.speaker")
    b_addr, raw_addr = loopback_address(), loopback_address()
    as_path = "40 02 06 02 01 0000fde9"  # [65001]
    bad_origin = update(attrs_hex="40 01 01 07" + as_path + NEXT_HOP_192_0_2_1,
                        nlri_hex="18 0a0001")  # fmt: skip
    looped = update(attrs_hex=ORIGIN_IGP + "40 02 0a 02 02 0000fde9 0000fdea" + NEXT_HOP_192_0_2_1,
                    nlri_hex="18 0a0002 18 0a0003")  # fmt: skip
    v6 = update(attrs_hex="800e 1e 0002 01 10 20010db8000000000000000000000001 00 40 "
                          "20010db800000001" + ORIGIN_IGP + as_path)  # fmt: skip
    good = update(attrs_hex=ORIGIN_IGP + as_path + NEXT_HOP_192_0_2_1, nlri_hex="18 0a0009")

    async def body() -> None:
        b = Speaker()
        metrics = SpeakerMetrics(b)

        def sample(name: str, outcome: str) -> float | None:
            value: float | None = metrics.registry.get_sample_value(
                name, {"peer": "raw", "outcome": outcome}
            )
            return value

        try:
            await b.apply(state(b_addr, 65002, [_clean(peer("raw", raw_addr, 65001))], []))
            _reader, writer = await _raw_peer(raw_addr, b_addr, 65001)
            await wait_for_async(lambda: status(b, "raw").state == "Established", "established")
            stream = [bad_origin] * 3 + [looped] * 2 + [v6] + [good]
            writer.write(b"".join(msg(UPDATE, u.hex()) for u in stream))
            await wait_for_async(lambda: status(b, "raw").prefixes_received == 1, "the good route")
            assert sample("kubgp_bgp_update_outcomes_total", "treat-as-withdraw") == 3
            assert sample("kubgp_bgp_update_outcomes_total", "as-loop") == 2
            assert sample("kubgp_bgp_update_outcome_prefixes_total", "as-loop") == 4
            assert sample("kubgp_bgp_update_outcomes_total", "family-not-negotiated") == 1
            assert sample("kubgp_bgp_update_outcomes_total", "attribute-discard") == 0
            lines = [r.getMessage() for r in caplog.records]
            (taw,) = [line for line in lines if "treat-as-withdraw" in line]
            assert "InvalidORIGINAttribute" in taw and "10.0.1.0/24" in taw
            assert bad_origin.hex() in taw
            (loop,) = [line for line in lines if "as-loop" in line]
            assert "10.0.2.0/24 10.0.3.0/24" in loop and looped.hex() in loop
            assert len([line for line in lines if "family-not-negotiated" in line]) == 1
            # The session goes down: what was not shown is counted in one line per outcome.
            writer.close()
            await wait_for_async(lambda: status(b, "raw").state != "Established", "down")
            lines = [r.getMessage() for r in caplog.records]
            assert [line for line in lines if "more UPDATEs" in line] == [
                f"peer raw ({raw_addr}): 2 more UPDATEs treat-as-withdraw since the last report"
                " (last: UPDATEMessageError/InvalidORIGINAttribute: ORIGIN value 7 (data "
                "40010107); NLRI ipv4-unicast 10.0.1.0/24)",
                f"peer raw ({raw_addr}): 1 more UPDATEs as-loop since the last report (last: AS "
                "path holds our own AS 65002 (loop, RFC 4271 §9.1.2); NLRI ipv4-unicast "
                "10.0.2.0/24 10.0.3.0/24)",
            ]
            # The peer is removed: its series go with it.
            await b.apply(state(b_addr, 65002, [], []))
            assert sample("kubgp_bgp_update_outcomes_total", "treat-as-withdraw") is None
        finally:
            await b.close()

    run(body)


def test_route_refresh_log_names_the_family_and_what_was_resent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kubgp.speaker")
    a_addr, b_addr = loopback_address(), loopback_address()
    both = ["ipv4-unicast", "ipv6-unicast"]

    async def body() -> None:
        a, b = Speaker(), Speaker()
        try:
            await b.apply(state(b_addr, 65002, [_clean(peer("a", a_addr, 65001, passive=True,
                                                            families=both))], []))  # fmt: skip
            await a.apply(state(a_addr, 65001, [_clean(peer("b", b_addr, 65002, src=a_addr,
                                                            families=both))],
                                ["10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24",
                                 "2001:db8:1::/48"]))  # fmt: skip
            await wait_for_async(lambda: status(b, "a").prefixes_received == 4, "routes at b")
            runner = b.runners["a"]
            runner._run(runner.session.request_refresh((2, 1)))
            await wait_for_async(
                lambda: any("ROUTE-REFRESH" in r.getMessage() for r in caplog.records),
                "refresh served",
            )
            (line,) = [r.getMessage() for r in caplog.records if "ROUTE-REFRESH" in r.getMessage()]
            assert line.endswith("ROUTE-REFRESH ipv6-unicast: re-sent 1 prefixes")
        finally:
            await a.close()
            await b.close()

    run(body)
