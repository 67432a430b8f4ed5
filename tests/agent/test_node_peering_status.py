"""`kubectl kubgp status` for node-to-node sessions: the ROLE column and the per-BGPNodePeering
view (members, reflectors, sessions counted once per pair of nodes, the ones down and why),
from BGPNodeStates as the agents write them (controller.agent.node_status.build_status)."""

from __future__ import annotations

import datetime
from typing import Any

from controller.agent.node_status import build_status
from controller.cli.kubectl_views import status_table, status_view
from controller.domain.planner import NodePlanner
from controller.domain.snapshot import Snapshot
from speaker.api.client import PeerStatus
from tests.controller.manifests import RR_SELECTOR, cluster_nodes, node_peering

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
OBJECTS = [
    *cluster_nodes(4, reflectors=(1, 2)),
    node_peering("rr", routeReflectors={"nodeSelector": RR_SELECTOR, "clusterId": "192.0.2.250"}),
]


def node_state(name: str, states: dict[str, str]) -> dict[str, Any]:
    """What node `name`'s agent writes when its speaker reports these session states."""
    snapshot = Snapshot.build(OBJECTS)
    planner = NodePlanner(name)
    state = planner.plan(snapshot).state
    peers = [
        PeerStatus(name=p.name, address=p.address, state=states.get(p.name, "Established"),
                   since=NOW.timestamp())
        for p in (state.peers if state is not None else ())
    ]  # fmt: skip
    status = build_status(
        state=state, applied=None, peers=peers, node_sessions=planner.node_sessions
    )
    return {"metadata": {"name": name}, "status": status}


def test_the_reflection_view_counts_each_pair_once_and_says_what_is_down() -> None:
    states = [
        node_state("n1", {"node/n3": "Active"}),
        node_state("n2", {}),
        node_state("n3", {"node/n1": "Connect"}),
        # n4's agent has not written yet: its sessions count by what the other end says
    ]
    nodes = [{"metadata": {"name": f"n{i}"}} for i in range(1, 5)]
    view = status_view(states, nodes)
    (rr,) = view["nodePeerings"]
    assert rr["mode"] == "RouteReflection"
    assert rr["members"] == ["n1", "n2", "n3"]  # those that reported
    assert rr["routeReflectors"] == ["n1", "n2"]
    assert rr["clusterIds"] == {"n1": "192.0.2.250", "n2": "192.0.2.250"}
    # pairs: n1-n2, n1-n3, n1-n4, n2-n3, n2-n4 (clients n3, n4 never peer with each other)
    assert rr["sessions"] == 5
    assert rr["down"] == [{"nodes": ["n1", "n3"], "why": "Active, Connect"}]
    assert rr["establishedSessions"] == 4
    n1 = {p["name"]: p for p in view["nodes"][0]["peers"]}
    assert (n1["node/n3"]["node"], n1["node/n3"]["role"]) == ("n3", "RouteReflectorClient")
    text = status_table(view, NOW)
    header = text.splitlines()[0].split()
    assert header[:3] == ["NODE", "PEER", "ROLE"]
    assert "n1    node/n3  RouteReflectorClient" in text
    peering_rows = text.split("\n\n")[1].splitlines()
    assert peering_rows[0].split()[:3] == ["NODE", "PEERING", "MODE"]
    assert peering_rows[1].split()[:6] == [
        "rr",
        "RouteReflection",
        "3",
        "n1,n2",
        "192.0.2.250",
        "4/5",
    ]


def test_without_node_peering_the_table_is_as_before() -> None:
    state = {"metadata": {"name": "n1"}, "status": {"peers": [{"name": "tor", "state": "Idle"}]}}
    view = status_view([state], [])
    assert "nodePeerings" not in view
    text = status_table(view, NOW)
    assert "ROLE" not in text and "NODE PEERING" not in text


def test_a_session_only_one_reporting_end_has_is_down() -> None:
    n1 = node_state("n1", {})
    n3 = node_state("n3", {})
    n3["status"]["peers"] = [p for p in n3["status"]["peers"] if p["name"] != "node/n1"]
    (rr,) = status_view([n1, n3], [])["nodePeerings"]
    assert {"nodes": ["n1", "n3"], "why": "not on n3"} in rr["down"]
