"""Route reflection (RFC 4456) against real routers, nodes as network namespaces on one segment
(testing/routers/lan.py), each kubgp speaker running the state the planner gives its node from
Nodes and a BGPNodePeering with route reflectors:

- kubgp as the reflector, BIRD as its clients: a client's route reaches the other client with
  the originating client's next hop, ORIGINATOR_ID and our CLUSTER_LIST; one that carries our
  router id as ORIGINATOR_ID, or our cluster id in its CLUSTER_LIST, is dropped (loop), and is
  reflected once it no longer does.
- kubgp as a client of an FRR reflector: the kubgp nodes learn each other's pod CIDRs through
  FRR and install them via the originating node, and pod traffic flows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.domain.planner import plan
from controller.domain.snapshot import Snapshot
from speaker.api.client import status_sync
from speaker.api.schema import DEFAULT_FIB_PROTOCOL, DesiredState, Fib
from testing.kernel_routes import routes
from testing.procs import SpeakerProcess
from testing.routers.bird import Bird
from testing.routers.lab import Lab
from testing.routers.lan import Lan, LanHost
from testing.routers.model import Origination, PeerSpec, Route
from testing.wait import wait_for
from tests.controller.manifests import RR_SELECTOR, node, node_peering

pytestmark = [pytest.mark.netns, pytest.mark.lab, pytest.mark.slow]

CLUSTER_ID = "192.0.2.250"
ASN = 64512
TIMEOUT = 60.0


@pytest.fixture
def lan3() -> Iterator[Lan]:
    lan = Lan(3).create()
    try:
        yield lan
    finally:
        lan.delete()


def planned(lan: Lan, reflector: str, name: str) -> DesiredState:
    """The state the planner gives `name` in a cluster of the LAN's hosts with one reflector."""
    objects: list[Any] = [
        node(h.name, ip=h.address, pod_cidrs=(h.pod_cidr,),
             labels={"kubgp.io/route-reflector": "true"} if h.name == reflector else {})
        for h in lan.hosts
    ]  # fmt: skip
    objects.append(
        node_peering(
            "cluster",
            holdTimeSeconds=9,
            keepaliveTimeSeconds=3,
            connectRetryTimeSeconds=1,
            routeReflectors={"nodeSelector": RR_SELECTOR, "clusterId": CLUSTER_ID},
        )
    )
    state = plan(Snapshot.build(objects), name).state
    assert state is not None
    return state.replace(fib=Fib(protocol=DEFAULT_FIB_PROTOCOL))


def kernel_routes(host: LanHost) -> dict[str, tuple[str, ...]]:
    got = routes(host.netns, table=254)
    return {r.dst: r.gateways for r in got if r.protocol == DEFAULT_FIB_PROTOCOL}


def ibgp(name: str, host: LanHost, **kw: Any) -> PeerSpec:
    return PeerSpec(name=name, address=host.address, asn=ASN, multihop=1, hold_time=9, **kw)


def test_kubgp_reflector_with_bird_clients_and_loops_dropped(
    lan3: Lan, speaker_factory: Callable[..., SpeakerProcess], tmp_path: Path
) -> None:
    n1, n2, n3 = lan3.hosts
    state = planned(lan3, "n1", "n1")
    assert {p.name: p.route_reflector_client for p in state.peers} == {
        "node/n2": True,
        "node/n3": True,
    }
    lab = Lab(tmp_path / "lab")
    try:
        bird2 = lab.bird(asn=ASN, name="bird2", address=n2.address, netns=n2.netns,
                         peers=[ibgp("kubgp", n1)])  # fmt: skip
        bird3 = lab.bird(asn=ASN, name="bird3", address=n3.address, netns=n3.netns,
                         peers=[ibgp("kubgp", n1)])  # fmt: skip
        bird2.originated[n2.pod_cidr] = Origination(prefix=n2.pod_cidr, next_hop=n2.address)
        # n3's route first carries our own router id as ORIGINATOR_ID: a loop.
        bird3.originated[n3.pod_cidr] = Origination(
            prefix=n3.pod_cidr, next_hop=n3.address, originator_id=state.router_id
        )
        bird2.start()
        bird3.start()
        sock = tmp_path / "n1.sock"
        speaker = speaker_factory(n1.netns)
        speaker.start(state.to_dict(), "--socket", str(sock))
        speaker.wait_file(sock, timeout=TIMEOUT)
        bird2.wait_established("kubgp", timeout=TIMEOUT)
        bird3.wait_established("kubgp", timeout=TIMEOUT)

        def at(bird: Bird, prefix: str) -> list[Route]:
            return [r for r in bird.received_routes("kubgp") if r.prefix == prefix]

        def n3_counts() -> tuple[int, int | None]:
            (peer,) = [p for p in status_sync(sock, timeout=10).peers if p.name == "node/n3"]
            return peer.prefixes_received, peer.prefixes_accepted

        # n2's route reaches bird3 through the reflector, as RFC 4456 says: next hop n2,
        # ORIGINATOR_ID n2's router id, CLUSTER_LIST our cluster id.
        reflected = Route(prefix=n2.pod_cidr, next_hop=n2.address, local_pref=100, origin="IGP",
                          originator_id=n2.address, cluster_list=(CLUSTER_ID,))  # fmt: skip
        wait_for(lambda: at(bird3, n2.pod_cidr) == [reflected],
                 "n2's pod CIDR at bird3, reflected", TIMEOUT)  # fmt: skip
        # n3's looped route was received and dropped: not accepted, not installed, not
        # reflected; and nothing goes back to where it came from.
        wait_for(lambda: n3_counts() == (1, 0), "n3's route received, not accepted", TIMEOUT)
        wait_for(lambda: kernel_routes(n1) == {n2.pod_cidr: (n2.address,)},
                 "n2's pod CIDR in the reflector's kernel, not n3's", TIMEOUT)  # fmt: skip
        assert at(bird2, n3.pod_cidr) == []
        assert at(bird2, n2.pod_cidr) == [] and at(bird3, n3.pod_cidr) == []

        # Clean: reflected to bird2 (so what kept it out was the loop, nothing else).
        bird3.originated[n3.pod_cidr] = Origination(prefix=n3.pod_cidr, next_hop=n3.address)
        bird3.reconfigure()
        clean = Route(prefix=n3.pod_cidr, next_hop=n3.address, local_pref=100, origin="IGP",
                      originator_id=n3.address, cluster_list=(CLUSTER_ID,))  # fmt: skip
        wait_for(lambda: at(bird2, n3.pod_cidr) == [clean],
                 "n3's clean route reflected to bird2", TIMEOUT)  # fmt: skip
        both = {n2.pod_cidr: (n2.address,), n3.pod_cidr: (n3.address,)}
        wait_for(lambda: kernel_routes(n1) == both, "both pod CIDRs in the kernel", TIMEOUT)
        assert n3_counts() == (1, 1)

        # Our cluster id in its CLUSTER_LIST: a loop again, so the route that replaces the
        # clean one is dropped, and the clean one is withdrawn from bird2 and the kernel.
        bird3.originated[n3.pod_cidr] = Origination(
            prefix=n3.pod_cidr, next_hop=n3.address, cluster_list=(CLUSTER_ID,)
        )
        bird3.reconfigure()
        wait_for(lambda: at(bird2, n3.pod_cidr) == [],
                 "n3's route withdrawn from bird2 (its replacement looped)", TIMEOUT)  # fmt: skip
        wait_for(lambda: kernel_routes(n1) == {n2.pod_cidr: (n2.address,)},
                 "n3's pod CIDR out of the reflector's kernel", TIMEOUT)  # fmt: skip
        assert n3_counts() == (1, 0)
        assert at(bird3, n2.pod_cidr) == [reflected]  # the other client's route untouched
    finally:
        lab.close()


def test_kubgp_clients_of_an_frr_reflector(
    lan3: Lan, speaker_factory: Callable[..., SpeakerProcess], tmp_path: Path
) -> None:
    n1, n2, n3 = lan3.hosts
    lab = Lab(tmp_path / "lab")
    try:
        frr = lab.frr(asn=ASN, name="frr", address=n1.address, netns=n1.netns, peers=[
            ibgp("n2", n2, route_reflector_client=True),
            ibgp("n3", n3, route_reflector_client=True),
        ])  # fmt: skip
        frr.start()
        for host in (n2, n3):
            state = planned(lan3, "n1", host.name)
            assert [p.name for p in state.peers] == ["node/n1"]  # the reflector only
            speaker_factory(host.netns).start(state.to_dict())
        frr.wait_established("n2", timeout=TIMEOUT)
        frr.wait_established("n3", timeout=TIMEOUT)
        # Each kubgp node installs the other's pod CIDR via that node, not via FRR.
        wait_for(lambda: kernel_routes(n2) == {n3.pod_cidr: (n3.address,)},
                 "n3's pod CIDR in n2's kernel via n3", TIMEOUT)  # fmt: skip
        wait_for(lambda: kernel_routes(n3) == {n2.pod_cidr: (n2.address,)},
                 "n2's pod CIDR in n3's kernel via n2", TIMEOUT)  # fmt: skip
        assert lan3.unreachable_pairs([n2, n3]) == []
        # FRR saw our routes as iBGP from its clients, next hop the node itself.
        (from_n2,) = frr.received_routes("n2")
        assert (from_n2.prefix, from_n2.next_hop) == (n2.pod_cidr, n2.address)
    finally:
        lab.close()
