"""In-cluster routing end to end: network namespaces as nodes on one segment, each with a pod
network (testing/routers/lan.py), the real `kubgp-speaker` per node running the state the
planner gives it from Nodes and a BGPNodePeering (plus `fib`), and real traffic: every pod
address must answer every other, through kernel routes the speakers installed, read back with
iproute2.

Full mesh, then route reflectors with clients (sessions only to the reflectors, next hop
unchanged through them), one reflector killed (still reachable through the other), and a node
leaving (its routes leave every other node)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from controller.domain.planner import plan
from controller.domain.snapshot import Snapshot
from speaker.api.client import status_sync
from speaker.api.schema import DEFAULT_FIB_PROTOCOL, DesiredState, Fib
from testing.kernel_routes import routes
from testing.procs import SpeakerProcess
from testing.routers.lan import Lan, LanHost
from testing.wait import wait_for
from tests.controller.manifests import RR_SELECTOR, node, node_peering

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PROTOCOL = DEFAULT_FIB_PROTOCOL
TIMERS = {"holdTimeSeconds": 9, "keepaliveTimeSeconds": 3, "connectRetryTimeSeconds": 1}
CONVERGE = 90.0  # a loaded 2-core machine, several Python processes starting at once


@pytest.fixture
def lan4() -> Iterator[Lan]:
    lan = Lan(4).create()
    try:
        yield lan
    finally:
        lan.delete()


@pytest.fixture
def lan5() -> Iterator[Lan]:
    lan = Lan(5).create()
    try:
        yield lan
    finally:
        lan.delete()


def manifests(lan: Lan, hosts: list[LanHost], *, reflectors: tuple[str, ...] = ()) -> list[Any]:
    nodes = [
        node(
            h.name,
            ip=h.address,
            pod_cidrs=(h.pod_cidr,),
            labels={"kubgp.io/route-reflector": "true"} if h.name in reflectors else {},
        )
        for h in hosts
    ]
    spec: dict[str, Any] = dict(TIMERS)
    if reflectors:
        spec["routeReflectors"] = {"nodeSelector": RR_SELECTOR, "clusterId": "192.0.2.250"}
    return [*nodes, node_peering("cluster", **spec)]


def states(objects: list[Any], names: list[str]) -> dict[str, DesiredState]:
    snapshot = Snapshot.build(objects)
    out = {}
    for name in names:
        state = plan(snapshot, name).state
        assert state is not None, name
        out[name] = state.replace(fib=Fib(protocol=PROTOCOL))
    return out


class Nodes:
    """One speaker per host, each with a control socket, fed its planned state."""

    def __init__(self, lan: Lan, factory: Callable[..., SpeakerProcess], tmp: Path) -> None:
        self.lan = lan
        self.factory = factory
        self.tmp = tmp
        self.procs: dict[str, SpeakerProcess] = {}
        self.sockets: dict[str, Path] = {}

    def start(self, planned: dict[str, DesiredState]) -> None:
        for name, state in planned.items():
            host = self.lan.host(name)
            proc = self.factory(host.netns)
            sock = self.tmp / f"{name}.sock"
            proc.args = ["--socket", str(sock)]
            proc.name = f"speaker-{name}"
            proc.start(state.to_dict())
            self.procs[name], self.sockets[name] = proc, sock
        for name, proc in self.procs.items():
            proc.wait_file(self.sockets[name], timeout=60)

    def reload(self, planned: dict[str, DesiredState]) -> None:
        for name, state in planned.items():
            self.procs[name].reload(state.to_dict())

    def sessions(self, name: str) -> dict[str, str]:
        return {p.name: p.state for p in status_sync(self.sockets[name], timeout=10).peers}

    def without_session(self, name: str, peer: str) -> bool:
        return peer not in self.sessions(name)

    def session_down(self, name: str, peer: str) -> bool:
        return self.sessions(name)[peer] != "Established"


def kernel_routes(host: LanHost) -> dict[str, tuple[str, ...]]:
    """Our routes in the host's main table: prefix -> gateways."""
    return {r.dst: r.gateways for r in routes(host.netns, table=254) if r.protocol == PROTOCOL}


def wait_routes(host: LanHost, want: Mapping[str, tuple[str, ...]], what: str) -> None:
    wait_for(lambda: kernel_routes(host) == want, f"{host.name}: {what}", CONVERGE)


def wait_withdrawn(host: LanHost, cidr: str, what: str) -> None:
    wait_for(lambda: cidr not in kernel_routes(host), f"{host.name}: {what}", CONVERGE)


def wait_reachable(lan: Lan, hosts: list[LanHost] | None = None) -> None:
    last: list[tuple[str, str]] = []

    def none_left() -> bool:
        last[:] = lan.unreachable_pairs(hosts)
        return not last

    wait_for(none_left, f"every pod address answering every other (unanswered: {last})", CONVERGE)


def test_full_mesh_then_a_node_leaves(
    lan4: Lan, speaker_factory: Callable[..., SpeakerProcess], tmp_path: Path
) -> None:
    lan = lan4
    objects = manifests(lan, lan.hosts)
    planned = states(objects, [h.name for h in lan.hosts])
    assert all(len(s.peers) == 3 for s in planned.values())  # everyone with everyone else
    nodes = Nodes(lan, speaker_factory, tmp_path)
    nodes.start(planned)
    wait_reachable(lan)
    for host in lan.hosts:
        want = {h.pod_cidr: (h.address,) for h in lan.hosts if h is not host}
        wait_routes(host, want, "a route to every other node's pod CIDR via that node")
        assert set(nodes.sessions(host.name).values()) == {"Established"}

    # n4 leaves the cluster: its Node is gone, the others are planned without it. Its
    # speaker still runs: what removes its routes is the others' new plans, nothing else.
    leaving = lan.host("n4")
    staying = [h for h in lan.hosts if h is not leaving]
    nodes.reload(states(manifests(lan, staying), [h.name for h in staying]))
    for host in staying:
        wait_withdrawn(host, leaving.pod_cidr, "n4's pod CIDR withdrawn")
        wait_for(partial(nodes.without_session, host.name, "node/n4"),
                 f"{host.name}: no session to n4", CONVERGE)  # fmt: skip
        want = {h.pod_cidr: (h.address,) for h in staying if h is not host}
        assert kernel_routes(host) == want
    assert nodes.procs["n4"].running()
    nodes.procs["n4"].stop()
    wait_reachable(lan, staying)
    assert not lan.ping(staying[0], leaving)


def test_route_reflectors_then_one_dies_then_a_client_leaves(
    lan5: Lan, speaker_factory: Callable[..., SpeakerProcess], tmp_path: Path
) -> None:
    lan = lan5
    reflectors = ("n1", "n2")
    objects = manifests(lan, lan.hosts, reflectors=reflectors)
    planned = states(objects, [h.name for h in lan.hosts])
    nodes = Nodes(lan, speaker_factory, tmp_path)
    nodes.start(planned)
    wait_reachable(lan)
    # Clients peer with the reflectors only; reflectors with everyone.
    both = {"node/n1": "Established", "node/n2": "Established"}
    for name in ("n3", "n4", "n5"):
        assert nodes.sessions(name) == both, f"{name}: both reflectors and nothing else"
    for name in reflectors:
        assert len(nodes.sessions(name)) == 4
    # Through a reflector the next hop is the originating node, not the reflector.
    n3 = lan.host("n3")
    want = {h.pod_cidr: (h.address,) for h in lan.hosts if h is not n3}
    wait_routes(n3, want, "routes via the originating nodes")

    # Kill -9 one reflector: clients still reach each other (and n2) through the other.
    nodes.procs["n1"].kill()
    survivors = [h for h in lan.hosts if h.name != "n1"]
    n1 = lan.host("n1")
    for host in survivors:
        wait_withdrawn(host, n1.pod_cidr, "the dead reflector's pod CIDR withdrawn")
        wait_for(partial(nodes.session_down, host.name, "node/n1"),
                 f"{host.name}: the session to n1 down", CONVERGE)  # fmt: skip
    wait_reachable(lan, survivors)
    for host in survivors:  # every other survivor's pod CIDR, via that node, through n2
        want = {h.pod_cidr: (h.address,) for h in survivors if h is not host}
        assert kernel_routes(host) == want, host.name

    # Client n5 leaves: the others are planned without it (its speaker still runs), and its
    # routes leave every other node.
    n5 = lan.host("n5")
    staying = [h for h in survivors if h is not n5]
    remaining = [h for h in lan.hosts if h is not n5]
    replanned = states(manifests(lan, remaining, reflectors=reflectors), [h.name for h in staying])
    nodes.reload(replanned)
    for host in staying:
        wait_withdrawn(host, n5.pod_cidr, "n5's pod CIDR withdrawn")
    assert nodes.procs["n5"].running()
    nodes.procs["n5"].signal(signal.SIGTERM)
    wait_reachable(lan, staying)
