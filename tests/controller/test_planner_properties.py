"""Properties of plan(): deterministic, independent of object order, idempotent, and the
incremental NodePlanner always agrees with a fresh plan."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.domain.node_peering import session_node
from controller.domain.planner import NodePlanner, plan
from controller.domain.reasons import ObjectRef
from controller.domain.snapshot import Snapshot
from speaker.api.schema import DesiredState
from tests.controller.manifests import (
    Raw,
    advertisement,
    endpoint,
    endpoint_slice,
    node,
    node_peering,
    peer,
    service,
)

NODES = ["n1", "n2", "n3"]
KINDS = ["LoadBalancerIP", "ExternalIP", "ClusterIP"]


@st.composite
def services(draw: st.DrawFn, i: int) -> list[Raw]:
    name = f"s{i}"
    ns = draw(st.sampled_from(["default", "prod"]))
    out = [
        service(
            name,
            ns,
            type=draw(st.sampled_from(["LoadBalancer", "ClusterIP"])),
            cluster_ips=(f"10.96.0.{draw(st.integers(1, 6))}",),
            lb_ips=tuple(
                draw(st.lists(st.sampled_from(["203.0.113.1", "203.0.113.2", "2001:db8::1"])))
            ),
            external_ips=tuple(draw(st.lists(st.sampled_from(["198.51.100.1"]), max_size=1))),
            etp=draw(st.sampled_from(["Cluster", "Local"])),
            itp=draw(st.sampled_from(["Cluster", "Local"])),
            lb_class=draw(st.sampled_from([None, "kubgp.io/bgp", "other"])),
            labels=draw(st.sampled_from([{}, {"bgp": "yes"}])),
            annotations=draw(st.sampled_from([{}, {"kubgp.io/advertise": "false"}])),
        )
    ]
    for j in range(draw(st.integers(0, 2))):
        eps = [
            endpoint(
                draw(st.sampled_from(NODES)),
                ready=draw(st.sampled_from([True, False, None])),
                serving=draw(st.sampled_from([True, False, None])),
                terminating=draw(st.sampled_from([True, False, None])),
            )
            for _ in range(draw(st.integers(0, 3)))
        ]
        out.append(endpoint_slice(name, ns, *eps, name=f"{name}-{j}"))
    return out


@st.composite
def clusters(draw: st.DrawFn) -> list[Raw]:
    objects: list[Raw] = [
        node(
            n,
            ip=f"192.0.2.{11 + k}",
            labels={
                "rack": draw(st.sampled_from(["r1", "r2"])),
                **draw(st.sampled_from([{}, REFLECTOR])),
            },
            pod_cidrs=(f"10.244.{k}.0/24",),
        )
        for k, n in enumerate(NODES)
    ]
    objects.extend(draw(node_peerings()))
    for k in range(draw(st.integers(0, 3))):
        objects.append(
            peer(
                f"p{k}",
                peerAddress=f"192.0.2.{k + 1}",
                families=draw(
                    st.sampled_from([["ipv4-unicast"], ["ipv4-unicast", "ipv6-unicast"]])
                ),
                labels=draw(st.sampled_from([{}, {"role": "tor"}])),
                nodeSelector=draw(st.sampled_from([{}, {"matchLabels": {"rack": "r1"}}])),
            )
        )
    for k in range(draw(st.integers(0, 3))):
        objects.append(
            advertisement(
                f"a{k}",
                podCIDRs=draw(st.booleans()),
                serviceAddresses=draw(st.lists(st.sampled_from(KINDS), unique=True)),
                serviceSelector=draw(st.sampled_from([{}, {"matchLabels": {"bgp": "yes"}}])),
                peerSelector=draw(st.sampled_from([{}, {"matchLabels": {"role": "tor"}}])),
                aggregationLengthIPv4=draw(st.sampled_from([32, 24])),
                communities=draw(st.lists(st.sampled_from(["1:1", "1:2", "no-export"]))),
                localPreference=draw(st.none() | st.integers(0, 300)),
                med=draw(st.none() | st.integers(0, 300)),
            )
        )
    for i in range(draw(st.integers(0, 6))):
        objects.extend(draw(services(i)))
    return objects


REFLECTOR = {"kubgp.io/route-reflector": "true"}


@st.composite
def node_peerings(draw: st.DrawFn) -> list[Raw]:
    """None, a full mesh, route reflection, or two peerings (a node in both is in the first)."""
    kinds = draw(st.lists(st.sampled_from(["mesh", "rr"]), max_size=2))
    out = []
    for i, kind in enumerate(kinds):
        spec: dict[str, object] = {
            "nodeSelector": draw(st.sampled_from([{}, {"matchLabels": {"rack": "r1"}}]))
        }
        if kind == "rr":
            spec["routeReflectors"] = {
                "nodeSelector": {"matchLabels": REFLECTOR},
                **draw(st.sampled_from([{}, {"clusterId": "192.0.2.250"}])),
            }
        out.append(node_peering(f"{kind}{i}", **spec))
    return out


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(clusters(), st.randoms(use_true_random=False))
def test_plan_is_deterministic_and_independent_of_object_order(
    objects: list[Raw], rnd: object
) -> None:
    shuffled = list(objects)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = Snapshot.build(objects), Snapshot.build(shuffled)
    for n in NODES:
        first = plan(a, n)
        assert plan(a, n) == first  # twice, same answer
        assert plan(b, n) == first  # any order, same answer
        if first.state is not None:
            assert first.state.to_dict() == plan(b, n).state.to_dict()  # type: ignore[union-attr]


@SETTINGS
@given(clusters(), st.data())
def test_incremental_planner_agrees_with_a_fresh_plan(
    objects: list[Raw], data: st.DataObject
) -> None:
    snapshot = Snapshot.build(objects)
    planners = {n: NodePlanner(n) for n in NODES}
    for n in NODES:
        assert planners[n].plan(snapshot) == plan(snapshot, n)
        assert planners[n].plan(snapshot) == plan(snapshot, n)  # idempotent with a warm cache
    # Change one Service (or its endpoints, or an advertisement) at a time.
    for step in range(3):
        change = data.draw(
            st.sampled_from(
                ["service", "endpoints", "delete", "advertisement", "peer", "node", "peering"]
            )
        )
        deletes: list[ObjectRef] = []
        upserts: list[Raw] = []
        if change == "delete":
            ns, name = data.draw(st.sampled_from([*snapshot.services, ("default", "s0")]))
            deletes = [ObjectRef("Service", ns, name), ObjectRef("EndpointSlice", ns, f"{name}-0")]
            upserts = data.draw(services(data.draw(st.integers(8, 9))))  # and one added
        elif change == "service":
            upserts = data.draw(services(data.draw(st.integers(0, 7))))
        elif change == "endpoints":
            # Only the EndpointSlices of an existing Service change.
            key = data.draw(st.sampled_from([*snapshot.services, ("default", "s0")]))
            eps = [
                endpoint(data.draw(st.sampled_from(NODES)), ready=data.draw(st.booleans()))
                for _ in range(data.draw(st.integers(0, 2)))
            ]
            upserts = [endpoint_slice(key[1], key[0], *eps, name=f"{key[1]}-0")]
        elif change == "advertisement":
            upserts = [advertisement("a0", serviceAddresses=KINDS, communities=[f"9:{step}"])]
        elif change == "node":  # a node's labels, addresses or pod CIDRs change
            k = data.draw(st.integers(0, len(NODES) - 1))
            extra = data.draw(st.sampled_from([(), ("10.9.0.0/24",)]))
            upserts = [
                node(
                    NODES[k],
                    ip=data.draw(st.sampled_from([f"192.0.2.{11 + k}", "192.0.2.99"])),
                    labels=data.draw(st.sampled_from([{}, REFLECTOR, {"rack": "r1"}])),
                    pod_cidrs=(f"10.244.{k}.0/24", *extra),
                )
            ]
        elif change == "peering":
            deletes = [ObjectRef("BGPNodePeering", "", p.name) for p in snapshot.node_peerings]
            upserts = data.draw(node_peerings())
        else:
            upserts = [peer("p0", labels={"role": "tor"})]
        snapshot = snapshot.apply(upserts=upserts, deletes=deletes)
        for n in NODES:
            assert planners[n].plan(snapshot) == plan(snapshot, n)


def _without_node_sessions(state: DesiredState) -> DesiredState:
    """The state with its node-to-node sessions taken out: node peers gone, node peer names
    gone from advertisements (one only for them is gone; `peers` absent, meaning every peer,
    spelt out), and no listener (it follows whether there are sessions)."""
    peers = tuple(p for p in state.peers if session_node(p.name) is None)
    every = tuple(p.name for p in peers)
    advertisements = []
    for a in state.advertisements:
        names = every if a.peers is None else tuple(n for n in a.peers if session_node(n) is None)
        if names:
            advertisements.append(replace(a, peers=names))
    return state.replace(listen=None, peers=peers, advertisements=tuple(advertisements))


@SETTINGS
@given(clusters(), st.sampled_from([{}, REFLECTOR, {"rack": "r1"}]), st.booleans())
def test_adding_a_node_changes_the_other_nodes_sessions_and_nothing_else(
    objects: list[Raw], labels: dict[str, str], dual: bool
) -> None:
    """n4 joins: every other node's state differs only in its sessions to other nodes: some to
    n4 may appear, the import rules of others may accept n4's pod CIDRs too; nothing else."""
    before = Snapshot.build(objects)
    cidrs = ("10.244.9.0/24", "fd00:9::/64") if dual else ("10.244.9.0/24",)
    n4 = node("n4", ip="192.0.2.19", labels=labels, pod_cidrs=cidrs)
    after = before.apply(upserts=[n4])
    planners = {n: NodePlanner(n) for n in NODES}
    for n in NODES:
        old = planners[n].plan(before).state
        new = planners[n].plan(after).state  # incremental, and equal to a fresh plan
        assert planners[n].plan(after) == plan(after, n)
        assert (old is None) == (new is None)
        if old is None or new is None:
            continue
        assert _without_node_sessions(old) == _without_node_sessions(new)
        assert new.cluster_id == old.cluster_id
        old_peers = {p.name: p for p in old.peers if session_node(p.name) is not None}
        new_peers = {p.name: p for p in new.peers if session_node(p.name) is not None}
        assert {session_node(name) for name in new_peers.keys() - old_peers.keys()} <= {"n4"}
        assert old_peers.keys() <= new_peers.keys()
        for name, was in old_peers.items():
            now = new_peers[name]
            assert replace(now, import_rules=()) == replace(was, import_rules=())
            added = set(now.import_rules) - set(was.import_rules)
            assert set(was.import_rules) <= set(now.import_rules)
            assert {r.prefix for r in added} <= set(cidrs)
        for name in new_peers.keys() - old_peers.keys():
            assert n not in {session_node(name)}  # never a session to itself
