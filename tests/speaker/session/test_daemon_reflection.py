"""Route reflection in the running speaker (`Speaker` wiring `speaker.route_reflection` to the
route service's Loc-RIB consumer seam), with real sessions: in-process speakers on loopback
addresses, a reflector and two clients. The reflector's next hops resolve in namespace `a` of a
NetnsPair (192.0.2.0/24 connected there), where its received routes would go. The real
routers are in tests/interop/test_route_reflection.py, whole nodes in
tests/interop/test_in_cluster_routing.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from speaker.api.ipc import PeerStatus
from speaker.api.schema import parse_desired_state
from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.received_attributes import cluster_list, originator_id
from speaker.bgp.wire.context import IPV4_UNICAST
from speaker.bgp.wire.nlri import Prefix, prefix_from_str
from speaker.daemon import Speaker
from speaker.speaker_metrics import SpeakerMetrics
from testing.routers.lab import loopback_address
from testing.routers.netns import NetnsPair
from testing.wait import wait_for_async

pytestmark = pytest.mark.netns

ASN = 64512
CLUSTER_ID = "192.0.2.250"
IMPORT = [{"prefix": "10.0.0.0/8", "le": 32, "action": "accept"}]
V4 = IPV4_UNICAST

Doc = dict[str, Any]


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 120))


def rid(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def prefix(text: str) -> Prefix:
    return prefix_from_str(text)[1]


class Node:
    def __init__(self, name: str, pair: NetnsPair) -> None:
        self.name = name
        self.address = loopback_address()
        self.speaker = Speaker(fib_netns=pair.a.netns)

    def status(self, peer: str) -> PeerStatus:
        return next(s for s in self.speaker.status() if s.name == peer)

    def received(self, peer: str, text: str) -> ReceivedPath | None:
        runner = self.speaker.runners.get(peer)
        if runner is None or runner.session.established is None:
            return None
        return runner.session.rib_in.routes.get(V4, {}).get(prefix(text))


def client_state(client: Node, rr: Node, advertise: list[Doc]) -> Doc:
    return {"routerId": client.address, "asn": ASN,
            "listen": {"address": client.address, "port": 179},
            "peers": [{"name": "rr", "address": rr.address, "asn": ASN,
                       "sourceAddress": client.address, "holdTime": 9,
                       "connectRetryTime": 1}],
            "advertisements": advertise}  # fmt: skip


def rr_state(rr: Node, clients: list[Node], **c2: Any) -> Doc:
    return {"routerId": "192.0.2.100", "asn": ASN, "clusterId": CLUSTER_ID,
            "listen": {"address": rr.address, "port": 179},
            "peers": [{"name": c.name, "address": c.address, "asn": ASN, "passive": True,
                       "holdTime": 9, "connectRetryTime": 1, "routeReflectorClient": True,
                       "import": IMPORT, **(c2 if c.name == "c2" else {})}
                      for c in clients]}  # fmt: skip


def test_reflected_to_the_other_client_and_again_after_a_session_reset(
    netns_pair: NetnsPair,
) -> None:
    async def body() -> None:
        rr, c1, c2 = Node("rr", netns_pair), Node("c1", netns_pair), Node("c2", netns_pair)
        r1 = {"prefix": "10.1.0.0/24", "nextHop": "192.0.2.21"}
        r2 = {"prefix": "10.2.0.0/24", "nextHop": "192.0.2.22"}
        try:
            await rr.speaker.apply(parse_desired_state(rr_state(rr, [c1, c2])))
            await c1.speaker.apply(parse_desired_state(client_state(c1, rr, [r1])))
            await c2.speaker.apply(parse_desired_state(client_state(c2, rr, [r2])))

            # Each client gets the other's route from the reflector: next hop unchanged,
            # ORIGINATOR_ID the originating client's router id, CLUSTER_LIST our cluster id;
            # never its own back.
            await wait_for_async(lambda: c2.received("rr", "10.1.0.0/24") is not None,
                                 "c1's route at c2", timeout=60)  # fmt: skip
            await wait_for_async(lambda: c1.received("rr", "10.2.0.0/24") is not None,
                                 "c2's route at c1", timeout=60)  # fmt: skip
            got = c2.received("rr", "10.1.0.0/24")
            assert got is not None and got.next_hop == bytes((192, 0, 2, 21))
            assert originator_id(got.attributes) == rid(c1.address)
            assert cluster_list(got.attributes) == (rid(CLUSTER_ID),)
            assert c1.received("rr", "10.1.0.0/24") is None
            assert c2.received("rr", "10.2.0.0/24") is None
            metrics = SpeakerMetrics(rr.speaker).registry
            for name in ("c1", "c2"):
                assert metrics.get_sample_value("kubgp_bgp_prefixes_reflected",
                                                {"peer": name}) == 1.0  # fmt: skip
            assert metrics.get_sample_value("kubgp_route_reflector_clients") == 2.0
            assert (
                SpeakerMetrics(c1.speaker).registry.get_sample_value(
                    "kubgp_route_reflector_clients"
                )
                is None
            )  # a client reflects nothing

            # A session parameter of c2 changes at the reflector: that session is reset, and
            # the new one starts from the whole reflected table (the reflector's peers did not
            # change, so only a fresh export view brings c1's route back).
            old = rr.speaker.runners["c2"]
            await rr.speaker.apply(parse_desired_state(rr_state(rr, [c1, c2], holdTime=12)))
            assert rr.speaker.runners["c2"] is not old
            await wait_for_async(
                lambda: (
                    rr.status("c2").state == "Established"
                    and rr.status("c2").prefixes_advertised == 1
                ),
                "c1's route in the new session's Adj-RIB-Out",
                timeout=60,
            )
            await wait_for_async(lambda: c2.received("rr", "10.1.0.0/24") is not None,
                                 "c1's route at c2 again", timeout=60)  # fmt: skip

            # c1 withdraws: the reflector withdraws it from c2.
            await c1.speaker.apply(parse_desired_state(client_state(c1, rr, [])))
            await wait_for_async(lambda: c2.received("rr", "10.1.0.0/24") is None,
                                 "c1's route withdrawn from c2", timeout=60)  # fmt: skip
            assert rr.status("c2").prefixes_advertised == 0
            assert metrics.get_sample_value("kubgp_bgp_prefixes_reflected", {"peer": "c2"}) == 0
            assert metrics.get_sample_value("kubgp_bgp_prefixes_reflected", {"peer": "c1"}) == 1
            assert c1.received("rr", "10.2.0.0/24") is not None  # c2's stays
        finally:
            for node in (c1, c2, rr):
                await node.speaker.close()

    run(body)
