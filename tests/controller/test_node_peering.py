"""Planning node-to-node sessions from BGPNodePeerings (docs/in-cluster-routing.md): full mesh,
route reflectors and their clients, the import rules that come with them, and every reason a
session is left out."""

from __future__ import annotations

import pytest

from controller.domain.node_peering import Role, membership, node_sessions, session_node
from controller.domain.planner import NodePlanner, Plan, plan
from controller.domain.reasons import ReasonCode
from controller.domain.snapshot import Snapshot
from speaker.api.schema import (
    Advertisement,
    DesiredState,
    ImportRule,
    Peer,
    parse_desired_state,
)
from tests.controller.manifests import (
    RR_SELECTOR,
    Raw,
    advertisement,
    cluster_nodes,
    node,
    node_peering,
    peer,
    secret,
    service,
)

R = ReasonCode


def run(objects: list[Raw], name: str = "n1", *, all_nodes: bool = True) -> Plan:
    result = plan(Snapshot.build(objects), name, all_nodes=all_nodes)
    if result.state is not None:
        assert parse_desired_state(result.state.to_dict()) == result.state
    return result


def state_of(objects: list[Raw], name: str = "n1") -> DesiredState:
    state = run(objects, name).state
    assert state is not None
    return state


def node_peers(state: DesiredState) -> dict[str, Peer]:
    return {p.name: p for p in state.peers if p.name.startswith("node/")}


def accepted(p: Peer) -> list[str]:
    assert all(r.action == "accept" and r.ge is None and r.le is None for r in p.import_rules)
    return [r.prefix for r in p.import_rules if r.prefix is not None]


def advertised(state: DesiredState) -> dict[str, tuple[str, ...] | None]:
    return {a.prefix: a.peers for a in state.advertisements}


def test_full_mesh_every_member_peers_with_every_other() -> None:
    objects = [*cluster_nodes(4), node_peering("mesh")]
    for i in range(1, 5):
        state = state_of(objects, f"n{i}")
        peers = node_peers(state)
        others = [j for j in range(1, 5) if j != i]
        assert sorted(peers) == [f"node/n{j}" for j in others]  # never itself
        for j in others:
            p = peers[f"node/n{j}"]
            assert (p.address, p.source_address) == (f"192.0.2.{10 + j}", f"192.0.2.{10 + i}")
            assert p.asn == state.asn == 64512  # iBGP
            assert p.families == ("ipv4-unicast",) and not p.passive
            assert not p.route_reflector_client
            assert accepted(p) == [f"10.244.{j}.0/24"]  # only its own pod CIDR
        assert advertised(state) == {f"10.244.{i}.0/24": tuple(sorted(peers))}
        assert state.listen is not None and state.listen.address == f"192.0.2.{10 + i}"
        assert state.cluster_id is None


def test_route_reflectors_and_clients() -> None:
    objects = [
        *cluster_nodes(5, reflectors=(1, 2)),
        node_peering(
            "rr", routeReflectors={"nodeSelector": RR_SELECTOR, "clusterId": "192.0.2.250"}
        ),
    ]
    every = {i: f"10.244.{i}.0/24" for i in range(1, 6)}
    for rr in (1, 2):
        state = state_of(objects, f"n{rr}")
        peers = node_peers(state)
        assert sorted(peers) == [f"node/n{j}" for j in range(1, 6) if j != rr]
        other_rr = peers[f"node/n{3 - rr}"]
        assert not other_rr.route_reflector_client  # reflectors peer as non-clients
        assert accepted(other_rr) == [c for j, c in every.items() if j != rr]
        for client in (3, 4, 5):
            p = peers[f"node/n{client}"]
            assert p.route_reflector_client and accepted(p) == [every[client]]
        assert state.cluster_id == "192.0.2.250"
    for client in (3, 4, 5):
        state = state_of(objects, f"n{client}")
        peers = node_peers(state)
        assert sorted(peers) == ["node/n1", "node/n2"]  # only the reflectors
        for p in peers.values():
            assert not p.route_reflector_client
            assert accepted(p) == [c for j, c in every.items() if j != client]
        assert state.cluster_id is None  # a client reflects nothing
        assert advertised(state) == {every[client]: ("node/n1", "node/n2")}


def test_without_a_cluster_id_each_reflector_uses_its_router_id() -> None:
    objects = [
        *cluster_nodes(3, reflectors=(1,)),
        node_peering(routeReflectors={"nodeSelector": RR_SELECTOR}),
    ]
    assert state_of(objects, "n1").cluster_id is None  # the speaker's default: the router id


def test_roles_seen_from_each_side() -> None:
    snapshot = Snapshot.build(
        [
            *cluster_nodes(3, reflectors=(1,)),
            node_peering(routeReflectors={"nodeSelector": RR_SELECTOR}),
        ]
    )
    members = membership(snapshot.nodes, snapshot.node_peerings, 64512)
    roles = {}
    for name in ("n1", "n2"):
        found = node_sessions(
            snapshot.nodes[name],
            64512,
            members=members,
            peerings=snapshot.node_peerings,
            secrets={},
            unreadable={},
        )
        roles[name] = {(s.node, s.role) for s in found.sessions}
    assert roles["n1"] == {("n2", Role.RouteReflectorClient), ("n3", Role.RouteReflectorClient)}
    assert roles["n2"] == {("n1", Role.RouteReflector)}
    assert session_node("node/n2") == session_node("node/n2/ipv6") == "n2"
    assert session_node("tor-a") is None


def test_dual_stack_nodes_get_a_session_per_family_and_listen_on_every_address() -> None:
    objects = [
        node(
            "n1", ip="192.0.2.11", ipv6="2001:db8::11", pod_cidrs=("10.244.1.0/24", "fd00:1::/64")
        ),
        node(
            "n2", ip="192.0.2.12", ipv6="2001:db8::12", pod_cidrs=("10.244.2.0/24", "fd00:2::/64")
        ),
        node("n3", ip="192.0.2.13", pod_cidrs=("10.244.3.0/24",)),
        node_peering(),
    ]
    state = state_of(objects)
    peers = node_peers(state)
    assert sorted(peers) == ["node/n2", "node/n2/ipv6", "node/n3"]
    v6 = peers["node/n2/ipv6"]
    assert (v6.address, v6.source_address, v6.families) == (
        "2001:db8::12",
        "2001:db8::11",
        ("ipv6-unicast",),
    )
    assert accepted(v6) == ["fd00:2::/64"] and accepted(peers["node/n2"]) == ["10.244.2.0/24"]
    assert advertised(state) == {
        "10.244.1.0/24": ("node/n2", "node/n3"),
        "fd00:1::/64": ("node/n2/ipv6",),
    }
    assert state.listen is not None and state.listen.address == "::"


def test_bgp_advertisements_name_their_peers_so_nothing_else_reaches_other_nodes() -> None:
    objects = [
        *cluster_nodes(2),
        peer("tor-a"),
        advertisement("pods", podCIDRs=True, communities=["64512:1"]),
        advertisement("lb", serviceAddresses=["LoadBalancerIP"]),
        service("web", lb_ips=("203.0.113.10",)),
        node_peering(),
    ]
    state = state_of(objects)
    ads = {a.prefix: a for a in state.advertisements}
    # A Service address goes to the ToR only, though the advertisement selects every peer.
    assert ads["203.0.113.10/32"].peers == ("tor-a",)
    # The pod CIDR goes to the ToR (its advertisement) and to the other node (the peering).
    assert ads["10.244.1.0/24"] == Advertisement(
        prefix="10.244.1.0/24", peers=("node/n2", "tor-a"), communities=("64512:1",)
    )
    # Without node sessions an advertisement for every peer still leaves `peers` absent.
    alone = state_of(
        [
            node("n1"),
            peer("tor-a"),
            advertisement("lb", serviceAddresses=["LoadBalancerIP"]),
            service("web"),
        ]
    )
    assert {a.prefix: a.peers for a in alone.advertisements} == {"203.0.113.10/32": None}


def test_members_must_share_the_asn() -> None:
    objects = [
        *cluster_nodes(2),
        node(
            "n3",
            ip="192.0.2.13",
            pod_cidrs=("10.244.3.0/24",),
            annotations={"kubgp.io/asn": "64999"},
        ),
        node_peering(),
    ]
    result = run(objects, "n1")
    assert result.state is not None and sorted(node_peers(result.state)) == ["node/n2"]
    assert (R.NoNodeSession, "n3") in {(r.code, r.ref.name) for r in result.reasons}
    other = run(objects, "n3")  # the same from the other end: neither side has the session
    assert other.state is not None and node_peers(other.state) == {}


def test_a_member_without_an_address_of_a_common_family() -> None:
    objects = [*cluster_nodes(1), node("n2", ip=None, ipv6="2001:db8::12"), node_peering()]
    result = run(objects)
    assert result.state is not None and node_peers(result.state) == {}
    assert (R.NoNodeSession, "n2") in {(r.code, r.ref.name) for r in result.reasons}


def test_a_bgp_peer_at_a_member_address_wins() -> None:
    objects = [
        *cluster_nodes(2),
        peer("n2-by-hand", peerAddress="192.0.2.12", peerASN=64512),
        node_peering(),
    ]
    result = run(objects)
    assert result.state is not None
    assert [p.name for p in result.state.peers] == ["n2-by-hand"]
    assert (R.NoNodeSession, "n2") in {(r.code, r.ref.name) for r in result.reasons}


def test_password_secret() -> None:
    ref = {"namespace": "kubgp", "name": "mesh-auth", "key": "password"}
    objects = [*cluster_nodes(2), node_peering(passwordSecretRef=ref)]
    missing = run(objects)
    assert missing.state is not None and node_peers(missing.state) == {}
    assert (R.PeerSecretMissing, "mesh") in {(r.code, r.ref.name) for r in missing.reasons}
    found = state_of([*objects, secret("mesh-auth", password="s3cret")])
    assert node_peers(found)["node/n2"].password == "s3cret"


def test_a_node_is_a_member_of_the_first_peering_by_name_only() -> None:
    objects = [
        *cluster_nodes(3),
        node_peering(
            "a",
            nodeSelector={
                "matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1", "n2"]}
                ]
            },
        ),
        node_peering("b"),
    ]
    n1 = run(objects, "n1")
    assert n1.state is not None and sorted(node_peers(n1.state)) == ["node/n2"]
    assert (R.NodePeeringConflict, "b") in {(r.code, r.ref.name) for r in n1.reasons}
    n3 = run(objects, "n3")  # alone in "b": n1 and n2 belong to "a"
    assert n3.state is not None and node_peers(n3.state) == {}
    assert (R.NotSelected, "a") in {(r.code, r.ref.name) for r in n3.reasons}


def test_selected_by_no_peering_and_reflectors_selecting_no_member() -> None:
    objects = [*cluster_nodes(2), node_peering(nodeSelector={"matchLabels": {"x": "y"}})]
    result = run(objects)
    assert result.state is not None and node_peers(result.state) == {}
    assert (R.NotSelected, "mesh") in {(r.code, r.ref.name) for r in result.reasons}
    none = run([*cluster_nodes(2), node_peering(routeReflectors={"nodeSelector": RR_SELECTOR})])
    assert none.state is not None and node_peers(none.state) == {}
    assert (R.NoNodeSession, "mesh") in {(r.code, r.ref.name) for r in none.reasons}


def test_an_agent_watching_only_its_own_node_plans_no_node_session_and_says_why() -> None:
    objects = [*cluster_nodes(2), node_peering()]
    result = run(objects, all_nodes=False)
    assert result.state is not None and node_peers(result.state) == {}
    assert result.state.listen is None
    why = [r for r in result.reasons if r.code is R.NoNodeSession]
    assert len(why) == 1 and "--all-nodes" in why[0].detail


def test_session_parameters_come_from_the_peering() -> None:
    objects = [
        *cluster_nodes(2),
        node_peering(
            holdTimeSeconds=9,
            keepaliveTimeSeconds=3,
            connectRetryTimeSeconds=2,
            gracefulRestart={"enabled": True, "restartTimeSeconds": 30},
            bfd={"minTxMilliseconds": 100, "multiplier": 5},
        ),
    ]
    p = node_peers(state_of(objects))["node/n2"]
    assert (p.hold_time, p.keepalive_time, p.connect_retry_time) == (9, 3, 2)
    assert p.graceful_restart.enabled and p.graceful_restart.restart_time == 30
    assert p.bfd is not None and (p.bfd.min_tx, p.bfd.min_rx, p.bfd.multiplier) == (100, 300, 5)


def test_import_rules_accept_nothing_but_pod_cidrs() -> None:
    state = state_of([*cluster_nodes(2), peer("tor-a"), node_peering()])
    tor = next(p for p in state.peers if p.name == "tor-a")
    assert tor.import_rules == ()  # a ToR still gets nothing accepted by default
    assert node_peers(state)["node/n2"].import_rules == (
        ImportRule(action="accept", prefix="10.244.2.0/24"),
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"routeReflectors": {}},
        {"routeReflectors": {"nodeSelector": {}}},
        {"routeReflectors": {"nodeSelector": RR_SELECTOR, "clusterId": "2001:db8::1"}},
        {"holdTimeSeconds": 2},
    ],
)
def test_an_invalid_peering_is_a_reason_on_every_node(bad: dict[str, object]) -> None:
    result = run([*cluster_nodes(2), node_peering("bad", **bad)])
    assert result.state is not None and node_peers(result.state) == {}
    assert (R.InvalidObject, "bad") in {(r.code, r.ref.name) for r in result.reasons}


def test_the_planner_reuses_node_sessions_until_their_inputs_change() -> None:
    snapshot = Snapshot.build([*cluster_nodes(3), node_peering(), service("web")])
    planner = NodePlanner("n1")
    first = planner.plan(snapshot)
    again = planner.plan(snapshot.apply(upserts=[service("web", lb_ips=("203.0.113.99",))]))
    assert first.state is not None and again.state is not None
    assert node_peers(first.state) == node_peers(again.state)
    assert again == plan(snapshot.apply(upserts=[service("web", lb_ips=("203.0.113.99",))]), "n1")
    moved = snapshot.apply(upserts=[node("n2", ip="192.0.2.99", pod_cidrs=("10.244.2.0/24",))])
    moved_state = planner.plan(moved).state
    assert moved_state is not None and node_peers(moved_state)["node/n2"].address == "192.0.2.99"
