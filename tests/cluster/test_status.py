"""Pure status roll-ups: BGPPeer from BGPNodeStates, LoadBalancerIPPool counts and conditions."""

from __future__ import annotations

import ipaddress
from typing import Any

from controller.domain.conditions import Condition, set_condition
from controller.domain.ipam import Pool, parse_lb_service, pool_status
from controller.domain.objects import parse_load_balancer_ip_pool
from controller.domain.peer_status import parse_node_labels, parse_node_state, peer_status
from tests.cluster.manifests import bgp_peer, lb_service, node, node_state, pool

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"
NODES = [parse_node_labels(node(n, rack="r1" if n != "n3" else "r2")) for n in ("n1", "n2", "n3")]


def states(*raws: dict[str, Any]) -> dict[str, Any]:
    return {s.name: s for s in (parse_node_state(r) for r in raws)}


def ready(status: dict[str, Any]) -> dict[str, Any]:
    (cond,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    return dict(cond)


def test_rollup_counts_and_names_down_nodes() -> None:
    peer = bgp_peer("tor-a", {"rack": "r1"})
    s = states(
        node_state("n1", **{"tor-a": "Established"}), node_state("n2", **{"tor-a": "Active"})
    )
    status = peer_status(peer, NODES, s, T0)
    assert status is not None
    assert (status["selectedNodes"], status["establishedNodes"]) == (2, 1)
    assert ready(status) == {
        "type": "Ready",
        "status": "False",
        "reason": "SessionsDown",
        "message": "1/2 established; down on n2 (Active)",
        "lastTransitionTime": T0,
    }
    # No BGPNodeState, or one without this peer, is down too, and says so.
    status = peer_status(
        bgp_peer("tor-a"), NODES, states(node_state("n1", other="Established")), T0
    )
    assert status is not None
    assert ready(status)["message"] == (
        "0/3 established; down on n1 (no session configured), n2 (no BGPNodeState),"
        " n3 (no BGPNodeState)"
    )


def test_written_only_on_change_and_transition_time_kept() -> None:
    peer = bgp_peer("tor-a", {"rack": "r1"})
    up = states(
        node_state("n1", **{"tor-a": "Established"}), node_state("n2", **{"tor-a": "Established"})
    )
    status = peer_status(peer, NODES, up, T0)
    assert status is not None and ready(status)["status"] == "True"
    assert ready(status)["message"] == "established on all 2 selected node(s)"
    peer["status"] = status
    assert peer_status(peer, NODES, up, T1) is None  # nothing changed: no write
    # A session goes down: the condition flips at T1; the message changes while it stays down
    # but the transition time does not.
    down = states(
        node_state("n1", **{"tor-a": "Idle"}), node_state("n2", **{"tor-a": "Established"})
    )
    status = peer_status(peer, NODES, down, T1)
    assert status is not None and ready(status)["lastTransitionTime"] == T1
    peer["status"] = status
    worse = states(node_state("n1", **{"tor-a": "Idle"}), node_state("n2", **{"tor-a": "Connect"}))
    status = peer_status(peer, NODES, worse, "2026-01-01T00:02:00Z")
    assert status is not None and ready(status)["lastTransitionTime"] == T1
    assert status["establishedNodes"] == 0


def test_no_nodes_selected_and_invalid_peer() -> None:
    status = peer_status(bgp_peer("p", {"rack": "nowhere"}), NODES, {}, T0)
    assert status is not None and ready(status)["reason"] == "NoNodesSelected"
    bad = bgp_peer("p", holdTimeSeconds=2)
    status = peer_status(bad, NODES, {}, T0)
    assert status is not None and ready(status)["reason"] == "InvalidSpec"
    assert "holdTimeSeconds" in ready(status)["message"]


def test_set_condition_keeps_other_types() -> None:
    existing = [
        {"type": "Other", "status": "True", "lastTransitionTime": T0, "reason": "x", "message": ""}
    ]
    out = set_condition(
        existing, Condition(type="Ready", status="True", reason="r", message="m"), T1
    )
    assert [c["type"] for c in out] == ["Other", "Ready"]


def test_pool_status_counts_conditions_and_only_on_change() -> None:
    raw = pool("p", cidrs=("203.0.113.0/30",))
    pools = [Pool.from_view(parse_load_balancer_ip_pool(raw))]
    held = {
        ipaddress.ip_address(ip): [parse_lb_service(lb_service(f"s{i}", assigned=(ip,)))]
        for i, ip in enumerate(["203.0.113.0", "203.0.113.1", "203.0.113.2", "203.0.113.3"])
    }
    status = pool_status(raw, pools, held, T0)
    assert status is not None
    assert (status["total"], status["assigned"], status["available"]) == (4, 4, 0)
    exhausted = next(c for c in status["conditions"] if c["type"] == "Exhausted")
    assert (exhausted["status"], exhausted["message"]) == ("True", "0 of 4 addresses free")
    raw["status"] = status
    assert pool_status(raw, pools, held, T1) is None
    # Shrunk under allocated addresses: reported on the pool, counted out.
    shrunk = pool("p", cidrs=("203.0.113.0/31",))
    shrunk["status"] = status
    pools = [Pool.from_view(parse_load_balancer_ip_pool(shrunk))]
    status = pool_status(shrunk, pools, held, T1)
    assert status is not None
    assert (status["total"], status["assigned"], status["available"]) == (2, 2, 0)
    outside = next(c for c in status["conditions"] if c["type"] == "AddressesOutsidePool")
    assert outside["status"] == "True"
    assert outside["message"].endswith("default/s2 203.0.113.2, default/s3 203.0.113.3")


def test_pool_status_for_an_invalid_pool_and_huge_ipv6() -> None:
    bad = pool("bad", cidrs=("203.0.113.1/30",))
    status = pool_status(bad, [], {}, T0)
    assert status is not None
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False" and "host bits" in valid["message"]
    big = pool("big", cidrs=("2001:db8::/32",))
    status = pool_status(big, [Pool.from_view(parse_load_balancer_ip_pool(big))], {}, T0)
    assert status is not None and status["total"] == 2**63 - 1
