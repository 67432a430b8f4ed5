"""BGPPeer status roll-up from BGPNodeStates through the running controller."""

from __future__ import annotations

import pytest

from testing.kube.emulator import KubeAPI
from testing.wait import wait_for
from tests.cluster.harness import condition, running, status_of, status_writes
from tests.cluster.manifests import bgp_peer, node, node_state

pytestmark = pytest.mark.slow  # the real kopf against the emulated API server


def ready(api: KubeAPI, peer: str) -> tuple[str, str]:
    c = condition(api, "BGPPeer", peer, "Ready")
    return (c.get("status", ""), c.get("message", ""))


def test_rollup_after_node_sessions_go_up_and_down(kube_api: KubeAPI) -> None:
    for name in ("n1", "n2", "n3"):
        kube_api.apply(node(name, rack="r1" if name != "n3" else "r2"))
    kube_api.apply(bgp_peer("tor-a", {"rack": "r1"}))
    kube_api.apply(bgp_peer("tor-b", {"rack": "r2"}))
    kube_api.apply(node_state("n1", **{"tor-a": "Established"}))
    kube_api.apply(node_state("n2", **{"tor-a": "Active"}))
    with running(kube_api):
        wait_for(
            lambda: ready(kube_api, "tor-a") == ("False", "1/2 established; down on n2 (Active)"),
            "tor-a down on n2",
        )
        assert status_of(kube_api, "BGPPeer", "tor-a")["selectedNodes"] == 2
        wait_for(
            lambda: (
                ready(kube_api, "tor-b")
                == ("False", "0/1 established; down on n3 (no BGPNodeState)")
            ),
            "tor-b without state",
        )
        # n2's session comes up: Ready.
        kube_api.apply(node_state("n2", **{"tor-a": "Established"}))
        wait_for(
            lambda: ready(kube_api, "tor-a") == ("True", "established on all 2 selected node(s)"),
            "tor-a ready",
        )
        assert status_of(kube_api, "BGPPeer", "tor-a")["establishedNodes"] == 2
        writes = status_writes(kube_api, "/bgppeers/tor-a/status")
        # A change that does not change the roll-up writes nothing; n3's state does move tor-b.
        kube_api.apply(node("n1", rack="r1", touched="yes"))
        kube_api.apply(node_state("n3", **{"tor-b": "Established"}))
        wait_for(lambda: ready(kube_api, "tor-b")[0] == "True", "tor-b ready")
        assert status_writes(kube_api, "/bgppeers/tor-a/status") == writes
        # A node leaves the selection; another one's session drops.
        kube_api.apply(node("n2", rack="r2"))
        kube_api.apply(node_state("n1", **{"tor-a": "Idle"}))
        wait_for(
            lambda: ready(kube_api, "tor-a") == ("False", "0/1 established; down on n1 (Idle)"),
            "tor-a down",
        )
        wait_for(
            lambda: (
                ready(kube_api, "tor-b")
                == ("False", "1/2 established; down on n2 (no session configured)")
            ),
            "tor-b down on n2",
        )
        transition = condition(kube_api, "BGPPeer", "tor-a", "Ready")["lastTransitionTime"]
        kube_api.apply(node_state("n1", **{"tor-a": "Connect"}))
        wait_for(lambda: ready(kube_api, "tor-a")[1].endswith("n1 (Connect)"), "message update")
        assert condition(kube_api, "BGPPeer", "tor-a", "Ready")["lastTransitionTime"] == transition
