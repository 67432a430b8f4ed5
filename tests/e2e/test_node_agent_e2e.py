"""Kubernetes objects in, routes at a real router out: the emulated API server (real HTTP, our
CRDs), the real `kubgp-controller node` and `kubgp-speaker run --socket` processes, and BIRD as
the top-of-rack router.

One test walks the issue's scenarios in order, on one session, so that the whole run stays
short: routes with communities, an endpoint turning unready, the agent killed and restarted
(watched continuously at the ToR), BGPNodeState and Events, a quiet cluster writing nothing,
and the BGPPeer deleted. Latencies are measured and printed, not asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from speaker.api.client import status_sync
from testing.kube.emulator import KubeAPI
from testing.procs import Procs, free_port, probe, scrape
from testing.routers.bird import Bird
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, PeerSpec, Route
from testing.wait import wait_for
from tests.packaging.rbac import assert_granted, sent_by

pytestmark = pytest.mark.lab

NODE = "n1"
NODE_ASN = 64512
TOR_ASN = 65000
POD_CIDR = "10.244.1.0/24"
LB_IP = "203.0.113.10"
LB_PREFIX = f"{LB_IP}/32"
COMMUNITY = "64512:100"
LARGE_COMMUNITY = "64512:1:2"


# -- the cluster --------------------------------------------------------------------------


def node(address: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        "spec": {"podCIDRs": [POD_CIDR]},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]},
    }


def bgp_peer(tor: Bird, me: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPPeer",
        "metadata": {"name": "tor-a"},
        "spec": {
            "peerAddress": tor.address,
            "peerASN": TOR_ASN,
            "sourceAddress": me,
            "holdTimeSeconds": 9,
            "connectRetryTimeSeconds": 1,
            "ebgpMultihop": 255,
        },
    }


def advertisement() -> dict[str, Any]:
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPAdvertisement",
        "metadata": {"name": "default"},
        "spec": {
            "podCIDRs": True,
            "serviceAddresses": ["LoadBalancerIP"],
            "communities": [COMMUNITY],
            "largeCommunities": [LARGE_COMMUNITY],
        },
    }


def service(name: str = "web", ip: str = LB_IP, etp: str = "Local") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": etp,
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
    }


def endpoint_slice(*, ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abcde",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.1.5"], "nodeName": NODE, "conditions": {"ready": ready}}
        ],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }


# -- the ToR ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorView:
    """One look at the ToR's session with the node: state, since, counters, routes."""

    state: str
    since: str
    import_updates: int
    import_withdraws: int
    prefixes: frozenset[str]


def tor_view(tor: Bird, peer: str) -> TorView:
    out = tor.birdc("show", "protocols", "all", tor.protocol(peer))
    summary = re.search(rf"^{tor.protocol(peer)}\s+BGP\s+\S+\s+\S+\s+(\S+ \S+)", out, re.M)
    state = re.search(r"BGP state:\s+(\w+)", out)
    updates = re.search(r"Import updates:\s+(\d+)", out)
    withdraws = re.search(r"Import withdraws:\s+(\d+)", out)
    routes = tor.received_routes(peer)
    return TorView(
        state=state.group(1) if state else "Down",
        since=summary.group(1) if summary else "",
        import_updates=int(updates.group(1)) if updates else 0,
        import_withdraws=int(withdraws.group(1)) if withdraws else 0,
        prefixes=frozenset(r.prefix for r in routes),
    )


class TorWatch:
    """Looks at the ToR as often as birdc answers, in a thread, until stopped."""

    def __init__(self, tor: Bird, peer: str) -> None:
        self.tor, self.peer = tor, peer
        self.views: list[TorView] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tor-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.views.append(tor_view(self.tor, self.peer))

    def __enter__(self) -> TorWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def route(tor: Bird, peer: str, prefix: str) -> Route | None:
    return next((r for r in tor.received_routes(peer) if r.prefix == prefix), None)


# -- the measurements ---------------------------------------------------------------------


def applied_generation(sock: Path) -> tuple[int, int] | None:
    applied = status_sync(sock, timeout=5).applied
    return None if applied is None else (applied.epoch, applied.generation)


def measure(
    kube_api: KubeAPI, obj: dict[str, Any], sock: Path, tor: Bird, done_at_tor: Callable[[], bool]
) -> tuple[float, float]:
    """Apply `obj`; return (event -> speaker ack, event -> route at the ToR) in seconds, the
    ack seen as the speaker's applied version changing, the ToR by polling birdc."""
    before = applied_generation(sock)
    t0 = time.monotonic()
    kube_api.apply(obj)
    wait_for(lambda: applied_generation(sock) != before, "the speaker's ack")
    ack = time.monotonic() - t0
    wait_for(done_at_tor, "the change at the ToR")
    return ack, time.monotonic() - t0


def node_state(kube_api: KubeAPI) -> dict[str, Any]:
    obj = kube_api.get("BGPNodeState", NODE)
    return {} if obj is None else dict(obj.get("status") or {})


def events(kube_api: KubeAPI) -> list[dict[str, Any]]:
    return [
        e
        for e in kube_api.objects("Event", "default")
        if e.get("involvedObject", {}).get("kind") == "BGPPeer"
    ]


def agent_writes(kube_api: KubeAPI) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in kube_api.writes()]


# -- the test -----------------------------------------------------------------------------


def test_node_agent_end_to_end(kube_api: KubeAPI, lab: Lab, procs: Callable[[Path], Procs]) -> None:
    p = procs(kube_api.kubeconfig)
    me = lab.address()
    tor = lab.bird(asn=TOR_ASN)
    tor.peers[NODE] = PeerSpec(name=NODE, address=me, asn=NODE_ASN, passive=True, hold_time=9)
    tor.start()

    kube_api.apply(node(me))
    kube_api.apply(bgp_peer(tor, me))
    kube_api.apply(advertisement())
    kube_api.apply(service())

    # The agent first, its speaker not there yet: it lists and plans, but is not ready
    # until the speaker has acknowledged that first state.
    speaker, sock = p.speaker()
    port, health = free_port(), free_port()
    agent = p.agent(NODE, sock, metrics_port=port, health_port=health).start()
    wait_for(lambda: probe(health, "/livez") == (200, "Running\n"), "the agent's /livez")
    wait_for(lambda: (probe(health, "/readyz") or (0, ""))[1].startswith("NotAcked"),
             "the agent planned, waiting for the speaker")  # fmt: skip
    assert probe(health, "/readyz") == (503, "NotAcked: waiting for the speaker to acknowledge\n")
    speaker.start()
    acked = (200, "Acked: the speaker runs this agent's state\n")
    wait_for(lambda: probe(health, "/readyz") == acked, "/readyz 200 after the first ack")
    assert applied_generation(sock) is not None

    # The session comes up and the ToR learns the pod CIDR, with the advertisement's
    # communities and the node as next hop. The Service has no ready endpoint yet (eTP Local).
    tor.wait_established(NODE)
    pod = tor.wait_routes(NODE, lambda rs: any(r.prefix == POD_CIDR for r in rs))
    [pod_route] = [r for r in pod if r.prefix == POD_CIDR]
    assert pod_route.next_hop == me and pod_route.as_path == (NODE_ASN,)
    assert pod_route.communities == (COMMUNITY,)
    assert pod_route.large_communities == (LARGE_COMMUNITY,)
    assert route(tor, NODE, LB_PREFIX) is None

    # A ready endpoint on this node: the /32 is announced; unready: withdrawn. A few rounds
    # for the latency figures.
    acks: list[float] = []
    at_tor: list[float] = []
    for _ in range(5):
        ack, seen = measure(kube_api, endpoint_slice(ready=True), sock, tor,
                            lambda: route(tor, NODE, LB_PREFIX) is not None)  # fmt: skip
        acks.append(ack)
        at_tor.append(seen)
        lb = route(tor, NODE, LB_PREFIX)
        assert lb is not None and lb.next_hop == me
        assert lb.communities == (COMMUNITY,) and lb.large_communities == (LARGE_COMMUNITY,)
        ack, seen = measure(kube_api, endpoint_slice(ready=False), sock, tor,
                            lambda: route(tor, NODE, LB_PREFIX) is None)  # fmt: skip
        acks.append(ack)
        at_tor.append(seen)
        assert route(tor, NODE, POD_CIDR) is not None
    kube_api.apply(endpoint_slice(ready=True))
    wait_for(lambda: route(tor, NODE, LB_PREFIX), "the /32 back at the ToR")

    # BGPNodeState shows the session Established, and the Event says it came up.
    applied = applied_generation(sock)
    assert applied is not None
    state = wait_for(
        lambda: (s := node_state(kube_api)).get("appliedGeneration") == applied[1] and s,
        "BGPNodeState of the speaker's applied version",
    )
    assert state["appliedEpoch"] == applied[0]
    assert state["establishedPeers"] == 1 and state["configuredPeers"] == 1
    assert state["advertisedPrefixes"] == 2
    assert state["routerId"] == me and state["asn"] == NODE_ASN
    [peer_state] = state["peers"]
    assert peer_state["name"] == "tor-a" and peer_state["state"] == ESTABLISHED
    assert peer_state["address"] == tor.address and peer_state["prefixesAdvertised"] == 2
    assert peer_state["since"].endswith("Z")
    up = wait_for(lambda: [e for e in events(kube_api) if e["reason"] == "SessionEstablished"],
                  "a SessionEstablished Event")  # fmt: skip
    peer_obj = kube_api.get("BGPPeer", "tor-a")
    assert peer_obj is not None
    assert len(up) == 1 and up[0]["type"] == "Normal"
    assert up[0]["involvedObject"]["name"] == "tor-a"
    assert up[0]["involvedObject"]["uid"] == peer_obj["metadata"]["uid"]
    assert NODE in up[0]["message"] and up[0]["source"]["host"] == NODE

    # The agent's own figures, from its /metrics.
    metrics = scrape(port)
    count = metrics["kubgp_agent_event_to_ack_seconds_count"]
    assert count >= 10
    # Announcing the /32 is a delta (1 entry vs a 2-entry snapshot); withdrawing it leaves a
    # 1-entry state, as small as the delta, so that goes as a snapshot.
    assert metrics['kubgp_agent_pushes_total{kind="delta"}'] >= 5
    assert metrics['kubgp_agent_pushes_total{kind="snapshot"}'] >= 6
    assert metrics['kubgp_agent_push_failures_total{reason="connection"}'] == 0
    inside = metrics["kubgp_agent_event_to_ack_seconds_sum"] / count
    plans = metrics["kubgp_agent_plan_duration_seconds_count"]
    assert plans >= 11
    plan_ms = metrics["kubgp_agent_plan_duration_seconds_sum"] / plans * 1000

    # A quiet cluster writes nothing (the agent reads the speaker's status every 0.2 s).
    writes_before = len(kube_api.writes())
    time.sleep(1.5)
    assert len(kube_api.writes()) == writes_before

    # The agent is killed and a new one starts: the ToR sees no withdrawal and no session
    # reset, watched continuously, and the new agent's snapshot changes nothing there.
    before = tor_view(tor, NODE)
    assert before.prefixes == {POD_CIDR, LB_PREFIX} and before.state == ESTABLISHED
    old_epoch = state["appliedEpoch"]
    with TorWatch(tor, NODE) as watch:
        agent.kill()
        agent = p.agent(NODE, sock, metrics_port=free_port(), name="agent2").start()
        agent.wait_log("speaker applied snapshot generation 1")
        wait_for(lambda: node_state(kube_api).get("appliedEpoch") not in (None, old_epoch),
                 "the new agent's epoch in BGPNodeState")  # fmt: skip
        time.sleep(0.5)
    assert len(watch.views) >= 10, len(watch.views)
    assert all(v == before for v in watch.views), {v for v in watch.views if v != before}
    assert tor_view(tor, NODE) == before
    # ...and it posted no second "up": the session did not change.
    assert len([e for e in events(kube_api) if e["reason"] == "SessionEstablished"]) == 1

    # The agents wrote only their node's BGPNodeState and Events about its sessions.
    paths = {path for _, path in agent_writes(kube_api)}
    assert paths == {
        "/apis/kubgp.io/v1alpha1/bgpnodestates",
        f"/apis/kubgp.io/v1alpha1/bgpnodestates/{NODE}/status",
        "/api/v1/namespaces/default/events",
    }, paths

    # Every API request the agents made is granted by the chart's RBAC for the node's
    # ServiceAccount (Events go to "default"; no BGPPeer here has a password Secret).
    theirs = sent_by(kube_api.requests, "kubgp-node-agent/", "kopf/")
    assert len(theirs) == len(kube_api.requests)  # this test talks to the API in-process
    checked = assert_granted(theirs, component="node")
    assert {c.verb for c in checked} >= {"list", "watch", "get", "create", "patch"}

    # Nodes are listed and watched through a server-side field selector for this node only.
    node_reads = [r for r in kube_api.requests if r.url.path == "/api/v1/nodes"]
    assert node_reads and all(
        r.params.get("fieldSelector") == f"metadata.name={NODE}" for r in node_reads
    )

    # A Service deleted while the agent's watches were broken: kopf lists again after the
    # 410 Gone, but only reports what is there; the agent lists that kind itself and forgets
    # what vanished, so the ToR loses the address.
    kube_api.apply(service("api", "203.0.113.11", etp="Cluster"))
    wait_for(lambda: route(tor, NODE, "203.0.113.11/32"), "the second Service at the ToR")
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        kube_api.compact(expire_watches=True)
        kube_api.delete("Service", "api", "default")
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    wait_for(lambda: route(tor, NODE, "203.0.113.11/32") is None,
             "the vanished Service's route withdrawn")  # fmt: skip
    assert route(tor, NODE, LB_PREFIX) is not None
    agent.wait_log("vanished while unwatched")

    # The speaker dies and comes back without its saved state (say, a new pod): the agent
    # notices at its next status read, reconnects, and re-sends everything as a snapshot.
    speaker.kill()
    shutil.rmtree(p.workdir / "speaker" / "state")
    mark = len(agent.log())
    p.again(speaker, "speaker-restarted").start()
    agent.wait_log("the next push is a snapshot", after=mark)
    tor.wait_established(NODE)
    wait_for(lambda: {POD_CIDR, LB_PREFIX} <= tor_view(tor, NODE).prefixes,
             "the routes back at the ToR after the speaker restart")  # fmt: skip
    # The agent saw the session go down and come back, and said so on the BGPPeer.
    down = wait_for(lambda: [e for e in events(kube_api) if e["reason"] == "SessionDown"],
                    "a SessionDown Event")  # fmt: skip
    assert down[0]["type"] == "Warning" and "went down" in down[0]["message"]
    wait_for(lambda: len([e for e in events(kube_api) if e["reason"] == "SessionEstablished"])
             == 2, "a second SessionEstablished Event")  # fmt: skip

    # The BGPPeer is deleted: the session closes and the ToR forgets the routes.
    kube_api.delete("BGPPeer", "tor-a")
    wait_for(lambda: tor_view(tor, NODE).state != ESTABLISHED, "the session to close")
    wait_for(lambda: not tor.received_routes(NODE), "the ToR to drop the routes")
    wait_for(lambda: node_state(kube_api).get("configuredPeers") == 0,
             "BGPNodeState without peers")  # fmt: skip

    print(
        "\nevent -> speaker ack (test's view: apply to the emulator .. applied version "
        f"changes): median {statistics.median(acks) * 1000:.0f} ms, "
        f"max {max(acks) * 1000:.0f} ms over {len(acks)} changes"
        f"\nevent -> route at the ToR (apply .. birdc shows it): median "
        f"{statistics.median(at_tor) * 1000:.0f} ms, max {max(at_tor) * 1000:.0f} ms"
        f"\nevent -> ack inside the agent (watch event .. ack, its histogram): mean "
        f"{inside * 1000:.0f} ms over {count:.0f} events"
        f"\nplan duration (its histogram, mean): {plan_ms:.2f} ms over {plans:.0f} plans"
    )
