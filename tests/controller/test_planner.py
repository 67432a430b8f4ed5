"""The planner's rules, one table row each: what is announced, with which attributes, and the
reason for everything left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.domain.planner import DRAIN_AS_PATH_PREPEND, NodePlanner, Plan, plan
from controller.domain.reasons import ObjectRef, Reason, ReasonCode
from controller.domain.snapshot import Snapshot
from speaker.api.schema import Bfd, DesiredState, Fib, parse_desired_state
from tests.controller.manifests import (
    Raw,
    advertisement,
    endpoint,
    endpoint_slice,
    node,
    peer,
    secret,
    service,
)

R = ReasonCode
DUAL = ["ipv4-unicast", "ipv6-unicast"]
LB = ["LoadBalancerIP"]


def run(objects: list[Raw], node_name: str = "n1") -> Plan:
    result = plan(Snapshot.build(objects), node_name)
    if result.state is not None:
        # Whatever the planner emits, the speaker accepts unchanged.
        assert parse_desired_state(result.state.to_dict()) == result.state
    return result


def prefixes(state: DesiredState | None) -> set[str]:
    assert state is not None
    return {a.prefix for a in state.advertisements}


def codes(reasons: tuple[Reason, ...]) -> set[tuple[ReasonCode, str]]:
    return {(r.code, r.ref.name) for r in reasons}


@dataclass
class Case:
    id: str
    objects: list[Raw]
    announced: set[str]
    reasons: set[tuple[ReasonCode, str]] = field(default_factory=set)


BASE = [node(), peer()]

CASES = [
    Case("pod CIDR", [*BASE, advertisement(podCIDRs=True)], {"10.244.1.0/24"}),
    Case(
        "dual-stack pod CIDRs to a dual-stack peer",
        [
            node(pod_cidrs=("10.244.1.0/24", "fd00:244:1::/64")),
            peer(families=DUAL),
            advertisement(podCIDRs=True),
        ],
        {"10.244.1.0/24", "fd00:244:1::/64"},
    ),
    Case(
        "IPv6 pod CIDR with only an IPv4 peer",
        [
            node(pod_cidrs=("10.244.1.0/24", "fd00:244:1::/64")),
            peer(),
            advertisement(podCIDRs=True),
        ],
        {"10.244.1.0/24"},
        {(R.NoAddressFamily, "n1")},
    ),
    Case(
        "node without pod CIDRs",
        [node(pod_cidrs=()), peer(), advertisement(podCIDRs=True)],
        set(),
        {(R.NoPodCIDR, "n1")},
    ),
    Case(
        "advertisement for other nodes",
        [*BASE, advertisement(podCIDRs=True, nodeSelector={"matchLabels": {"rack": "r2"}})],
        set(),
        {(R.NotSelected, "all")},
    ),
    Case(
        "advertisement selecting this node by expression",
        [
            node(labels={"rack": "r1"}),
            peer(),
            advertisement(
                podCIDRs=True,
                nodeSelector={
                    "matchExpressions": [
                        {"key": "rack", "operator": "In", "values": ["r1", "r3"]},
                        {"key": "spare", "operator": "DoesNotExist"},
                    ]
                },
            ),
        ],
        {"10.244.1.0/24"},
    ),
    Case(
        "advertisement excluding this node by NotIn",
        [
            node(labels={"rack": "r1"}),
            peer(),
            advertisement(
                podCIDRs=True,
                nodeSelector={
                    "matchExpressions": [{"key": "rack", "operator": "NotIn", "values": ["r1"]}]
                },
            ),
        ],
        set(),
        {(R.NotSelected, "all")},
    ),
    Case(
        "peerSelector selecting none of the node's peers",
        [*BASE, advertisement(podCIDRs=True, peerSelector={"matchLabels": {"role": "spine"}})],
        set(),
        {(R.NoPeerSelected, "all")},
    ),
    Case(
        "LoadBalancer Service, Cluster policy",
        [*BASE, advertisement(serviceAddresses=LB), service()],
        {"203.0.113.10/32"},
    ),
    Case(
        "ClusterIP and ExternalIP when asked",
        [
            *BASE,
            advertisement(serviceAddresses=["ClusterIP", "ExternalIP"]),
            service(type="ClusterIP", lb_ips=(), external_ips=("198.51.100.7",)),
        ],
        {"10.96.0.10/32", "198.51.100.7/32"},
    ),
    Case(
        "LoadBalancerIP asked of a NodePort Service: nothing to announce, nothing left out",
        [*BASE, advertisement(serviceAddresses=LB), service(type="NodePort", lb_ips=())],
        set(),
    ),
    Case(
        "loadBalancerClass of another implementation",
        [*BASE, advertisement(serviceAddresses=LB), service(lb_class="metallb.io/metallb")],
        set(),
        {(R.ForeignLoadBalancerClass, "web")},
    ),
    Case(
        "loadBalancerClass kubgp.io/bgp",
        [*BASE, advertisement(serviceAddresses=LB), service(lb_class="kubgp.io/bgp")],
        {"203.0.113.10/32"},
    ),
    Case(
        "LoadBalancer without an assigned address",
        [*BASE, advertisement(serviceAddresses=LB), service(lb_ips=())],
        set(),
        {(R.NoAddressAssigned, "web")},
    ),
    Case(
        "opt-out annotation",
        [
            *BASE,
            advertisement(serviceAddresses=LB),
            service(annotations={"kubgp.io/advertise": "false"}),
        ],
        set(),
        {(R.OptedOut, "web")},
    ),
    Case(
        "Service outside the advertisement's serviceSelector",
        [
            *BASE,
            advertisement(serviceAddresses=LB, serviceSelector={"matchLabels": {"bgp": "yes"}}),
            service(),
            service("tagged", labels={"bgp": "yes"}, lb_ips=("203.0.113.20",)),
        ],
        {"203.0.113.20/32"},
        {(R.ServiceNotSelected, "web")},
    ),
    Case(
        "Service outside the advertisement's namespaces",
        [
            *BASE,
            advertisement(serviceAddresses=LB, namespaces=["prod"]),
            service(),
            service("api", "prod", lb_ips=("203.0.113.20",)),
        ],
        {"203.0.113.20/32"},
        {(R.ServiceNotSelected, "web")},
    ),
    Case(
        "eTP Local with a ready endpoint here",
        [
            *BASE,
            advertisement(serviceAddresses=LB),
            service(etp="Local"),
            endpoint_slice("web", "default", endpoint("n2", ready=False), endpoint("n1")),
        ],
        {"203.0.113.10/32"},
    ),
    Case(
        "eTP Local with endpoints ready only elsewhere",
        [
            *BASE,
            advertisement(serviceAddresses=LB),
            service(etp="Local"),
            endpoint_slice("web", "default", endpoint("n2"), endpoint("n1", ready=False)),
        ],
        set(),
        {(R.NoLocalReadyEndpoint, "web")},
    ),
    Case(
        "eTP Local with no EndpointSlice at all",
        [*BASE, advertisement(serviceAddresses=LB), service(etp="Local")],
        set(),
        {(R.NoLocalReadyEndpoint, "web")},
    ),
    Case(
        "eTP Local: ready condition absent means ready (discovery/v1)",
        [
            *BASE,
            advertisement(serviceAddresses=LB),
            service(etp="Local"),
            endpoint_slice("web", "default", endpoint("n1", ready=None)),
        ],
        {"203.0.113.10/32"},
    ),
    Case(
        "eTP Local: terminating and no longer serving is gone",
        [
            *BASE,
            advertisement(serviceAddresses=LB),
            service(etp="Local"),
            endpoint_slice(
                "web", "default", endpoint("n1", ready=False, serving=False, terminating=True)
            ),
        ],
        set(),
        {(R.NoLocalReadyEndpoint, "web")},
    ),
    Case(
        "eTP Local: terminating but serving drains",
        [
            *BASE,
            advertisement(serviceAddresses=LB),
            service(etp="Local"),
            endpoint_slice(
                "web", "default", endpoint("n1", ready=False, serving=True, terminating=True)
            ),
        ],
        {"203.0.113.10/32"},
        {(R.DrainingTerminatingEndpoint, "web")},
    ),
    Case(
        "eTP Local does not govern the ClusterIP",
        [
            *BASE,
            advertisement(serviceAddresses=["LoadBalancerIP", "ClusterIP"]),
            service(etp="Local"),
        ],
        {"10.96.0.10/32"},
        {(R.NoLocalReadyEndpoint, "web")},
    ),
    Case(
        "iTP Local governs the ClusterIP",
        [
            *BASE,
            advertisement(serviceAddresses=["ClusterIP"]),
            service(type="ClusterIP", lb_ips=(), itp="Local"),
            endpoint_slice("web", "default", endpoint("n2")),
        ],
        set(),
        {(R.NoLocalReadyEndpoint, "web")},
    ),
    Case(
        "headless Service",
        [
            *BASE,
            advertisement(serviceAddresses=["ClusterIP"]),
            service(type="ClusterIP", cluster_ips=("None",), lb_ips=()),
        ],
        set(),
        {(R.HeadlessService, "web")},
    ),
    Case(
        "aggregation lengths",
        [
            node(),
            peer(families=DUAL),
            advertisement(serviceAddresses=LB, aggregationLengthIPv4=24, aggregationLengthIPv6=64),
            service(lb_ips=("203.0.113.10", "2001:db8:1:2::10")),
            service("other", lb_ips=("203.0.113.99",)),
        ],
        {"203.0.113.0/24", "2001:db8:1:2::/64"},
    ),
    Case(
        "IPv6 Service address with only IPv4 peers",
        [*BASE, advertisement(serviceAddresses=LB), service(lb_ips=("2001:db8::10",))],
        set(),
        {(R.NoAddressFamily, "web")},
    ),
    Case(
        "no advertisement for Services at all: Services are not reported",
        [*BASE, advertisement(podCIDRs=True), service()],
        {"10.244.1.0/24"},
    ),
    Case(
        "invalid BGPPeer is skipped, the valid one stays",
        [*BASE, peer("broken", peerAddress="not-an-ip"), advertisement(podCIDRs=True)],
        {"10.244.1.0/24"},
        {(R.InvalidObject, "broken")},
    ),
    Case(
        "invalid Service is reported, others announced",
        [
            *BASE,
            advertisement(serviceAddresses=LB),
            service(),
            service("bad", lb_ips=("999.1.1.1",)),
        ],
        {"203.0.113.10/32"},
        {(R.InvalidObject, "bad")},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(case: Case) -> None:
    state, reasons = run(case.objects)
    assert prefixes(state) == case.announced
    assert codes(reasons) == case.reasons


def test_draining_prepends_the_as_path() -> None:
    state, _ = run(
        CASES[[c.id for c in CASES].index("eTP Local: terminating but serving drains")].objects
    )
    assert state is not None
    (adv,) = state.advertisements
    assert adv.as_path_prepend == DRAIN_AS_PATH_PREPEND


def test_ready_elsewhere_and_draining_here_share_an_ip_the_ready_service_wins() -> None:
    objects = [
        *BASE,
        advertisement(serviceAddresses=LB),
        service("a", etp="Local"),
        service("b", etp="Local"),
        endpoint_slice("a", "default", endpoint("n1", ready=False, serving=True, terminating=True)),
        endpoint_slice("b", "default", endpoint("n1")),
    ]
    state, _ = run(objects)
    assert state is not None
    assert [(a.prefix, a.as_path_prepend) for a in state.advertisements] == [("203.0.113.10/32", 0)]


def test_attributes_and_peer_subsets_flow_into_the_advertisement() -> None:
    state, _ = run(
        [
            node(),
            peer("tor-a", labels={"role": "tor"}),
            peer("tor-b", peerAddress="192.0.2.2", labels={"role": "tor"}),
            peer("spine", peerAddress="192.0.2.3"),
            advertisement(
                podCIDRs=True,
                peerSelector={"matchLabels": {"role": "tor"}},
                communities=["64512:100", "no-export"],
                largeCommunities=["64512:1:2"],
                localPreference=150,
                med=10,
            ),
        ]
    )
    assert state is not None
    (adv,) = state.advertisements
    assert adv.peers == ("tor-a", "tor-b")
    assert adv.communities == ("64512:100", "no-export")
    assert adv.large_communities == ("64512:1:2",)
    assert (adv.local_preference, adv.med, adv.next_hop) == (150, 10, "self")


def test_empty_peer_selector_leaves_peers_absent_meaning_every_peer() -> None:
    state, _ = run([*BASE, advertisement(podCIDRs=True)])
    assert state is not None
    assert state.advertisements[0].peers is None


def test_several_advertisements_merge_on_one_prefix() -> None:
    state, _ = run(
        [
            node(),
            peer("tor-a", labels={"side": "a"}),
            peer("tor-b", peerAddress="192.0.2.2", labels={"side": "b"}),
            advertisement(
                "one",
                podCIDRs=True,
                peerSelector={"matchLabels": {"side": "a"}},
                communities=["64512:1"],
                largeCommunities=["1:1:1"],
                localPreference=100,
                med=50,
            ),
            advertisement(
                "two",
                podCIDRs=True,
                peerSelector={"matchLabels": {"side": "b"}},
                communities=["64512:2", "64512:1"],
                localPreference=200,
                med=20,
            ),
            advertisement("three", podCIDRs=True, peerSelector={"matchLabels": {"side": "a"}}),
        ]
    )
    assert state is not None
    (adv,) = state.advertisements
    assert adv.peers == ("tor-a", "tor-b")
    assert adv.communities == ("64512:1", "64512:2")
    assert adv.large_communities == ("1:1:1",)
    assert (adv.local_preference, adv.med) == (200, 20)


def test_a_selector_for_all_peers_absorbs_a_subset_when_merging() -> None:
    state, _ = run(
        [
            *BASE,
            peer("tor-b", peerAddress="192.0.2.2", labels={"x": "y"}),
            advertisement("all", podCIDRs=True),
            advertisement("sub", podCIDRs=True, peerSelector={"matchLabels": {"x": "y"}}),
        ]
    )
    assert state is not None
    assert state.advertisements[0].peers is None


# --- node identity --------------------------------------------------------------------------


def test_node_asn_and_router_id_default_and_annotations() -> None:
    state, _ = run(BASE)
    assert state is not None
    assert (state.asn, state.router_id) == (64512, "192.0.2.11")
    state, _ = run(
        [node(annotations={"kubgp.io/asn": "65123", "kubgp.io/router-id": "10.0.0.1"}), peer()]
    )
    assert state is not None
    assert (state.asn, state.router_id) == (65123, "10.0.0.1")


def test_default_asn_is_a_parameter() -> None:
    state, _ = plan(Snapshot.build(BASE), "n1", default_asn=4200000000)
    assert state is not None and state.asn == 4200000000


def test_router_id_prefers_the_ipv4_internal_ip() -> None:
    state, _ = run([node(ip="192.0.2.12", ipv6="2001:db8::12"), peer()])
    assert state is not None and state.router_id == "192.0.2.12"


@pytest.mark.parametrize(
    ("annotations", "ip", "code"),
    [
        ({"kubgp.io/asn": "0"}, "192.0.2.11", R.InvalidObject),
        ({"kubgp.io/asn": "4294967296"}, "192.0.2.11", R.InvalidObject),
        ({"kubgp.io/asn": "AS65000"}, "192.0.2.11", R.InvalidObject),
        ({"kubgp.io/router-id": "2001:db8::1"}, "192.0.2.11", R.InvalidObject),
        ({}, None, R.NoRouterId),
    ],
)
def test_node_without_a_valid_identity_gets_no_state(
    annotations: dict[str, str], ip: str | None, code: ReasonCode
) -> None:
    state, reasons = run([node(annotations=annotations, ip=ip, ipv6="2001:db8::11"), peer()])
    assert state is None
    assert codes(reasons) == {(code, "n1")}


def test_unknown_node_gets_no_state() -> None:
    state, reasons = run(BASE, node_name="n9")
    assert state is None
    assert reasons == (Reason(R.NodeNotFound, ObjectRef("Node", "", "n9"), reasons[0].detail),)


def test_no_peers_is_an_empty_state_not_no_state() -> None:
    state, reasons = run([node(), peer(nodeSelector={"matchLabels": {"x": "y"}})])
    assert state is not None
    assert state.peers == () and state.advertisements == ()
    assert codes(reasons) == {(R.NotSelected, "tor-a")}


# --- peers ----------------------------------------------------------------------------------


def test_peer_fields_map_onto_the_speaker_peer() -> None:
    state, _ = run(
        [
            node(),
            peer(
                peerAddress="2001:db8::1",
                peerASN=64512,
                localASN=65001,
                port=1179,
                holdTimeSeconds=9,
                keepaliveTimeSeconds=3,
                connectRetryTimeSeconds=2,
                ebgpMultihop=2,
                ttlSecurity=True,
                sourceAddress="2001:db8::11",
                gracefulRestart={"enabled": True, "restartTimeSeconds": 60},
                maxPrefixes=100,
            ),
        ]
    )
    assert state is not None
    (p,) = state.peers
    assert (p.address, p.asn, p.local_asn, p.port) == ("2001:db8::1", 64512, 65001, 1179)
    assert (p.hold_time, p.keepalive_time, p.connect_retry_time) == (9, 3, 2)
    assert (p.ebgp_multihop, p.ttl_security, p.source_address) == (2, True, "2001:db8::11")
    assert (p.graceful_restart.enabled, p.graceful_restart.restart_time) == (True, 60)
    assert (p.families, p.max_prefixes, p.password, p.passive) == (
        ("ipv6-unicast",),
        100,
        None,
        False,
    )
    assert state.listen is None


def test_peer_bfd_maps_onto_the_speaker_peer_with_defaults() -> None:
    state, _ = run([node(), peer(bfd={"minTxMilliseconds": 100, "multiplier": 5})])
    assert state is not None
    assert state.peers[0].bfd == Bfd(min_tx=100, min_rx=300, multiplier=5)
    state, _ = run([node(), peer()])
    assert state is not None and state.peers[0].bfd is None


def test_peer_import_rules_map_onto_the_speaker_peer_and_fib_comes_from_the_agent() -> None:
    rules: list[Raw] = [
        {"prefix": "0.0.0.0/0", "action": "accept"},
        {"prefix": "198.51.100.0/24", "ge": 25, "communities": ["65000:10"], "originASN": 65009,
         "asPathContains": [65001], "action": "accept", "set": {"localPreference": 200}},
        {"action": "reject"},
    ]  # fmt: skip
    imports: dict[str, Any] = {"import": rules}
    state, _ = run([node(), peer(**imports), peer("tor-b", peerAddress="192.0.2.2")])
    assert state is not None
    a, b = state.peers
    assert b.import_rules == ()  # none: the speaker accepts nothing from tor-b
    assert [(r.prefix, r.ge, r.le, r.action) for r in a.import_rules] == [
        ("0.0.0.0/0", None, None, "accept"),
        ("198.51.100.0/24", 25, None, "accept"),
        (None, None, None, "reject"),
    ]
    second = a.import_rules[1]
    assert (second.communities, second.origin_asn, second.as_path_contains) == (
        ("65000:10",), 65009, (65001,))  # fmt: skip
    assert second.set is not None and second.set.local_preference == 200
    assert state.fib is None  # the agent without --fib
    fib = Fib(table=1000, protocol=200, metric=30, max_paths=2)
    with_fib = plan(Snapshot.build([node(), peer(**imports)]), "n1", fib=fib).state
    assert with_fib is not None and with_fib.fib == fib
    assert parse_desired_state(with_fib.to_dict()) == with_fib
    assert not with_fib.always_compare_med
    compared = plan(Snapshot.build([node(), peer(**imports)]), "n1", always_compare_med=True)
    assert compared.state is not None and compared.state.always_compare_med
    assert compared.state.to_dict()["alwaysCompareMed"] is True
    assert parse_desired_state(compared.state.to_dict()) == compared.state


def test_invalid_import_rules_are_an_invalid_peer() -> None:
    """What bypassed admission (or an older API server without the CEL rules) is caught."""
    bad: dict[str, Any] = {
        "import": [{"prefix": "198.51.100.0/24", "le": 20, "originASN": 0, "action": "accept"}]
    }
    state, reasons = run([node(), peer(**bad)])
    assert state is not None and state.peers == ()
    (reason,) = [r for r in reasons if r.code is R.InvalidObject]
    assert "spec.import[0].le" in reason.detail
    bad = {"import": [{"originASN": 0, "action": "accept"}]}
    _, reasons = run([node(), peer(**bad)])
    assert any("spec.import[0].originASN" in r.detail for r in reasons)


def test_passive_peer_makes_the_speaker_listen_on_the_node_address() -> None:
    state, _ = run([node(), peer(passive=True)])
    assert state is not None
    assert state.listen is not None
    assert (state.listen.address, state.listen.port) == ("192.0.2.11", 179)


REF = {"namespace": "kubgp", "name": "bgp-auth", "key": "password"}


def test_peer_password_comes_from_the_secret() -> None:
    state, _ = run([*BASE[:1], peer(passwordSecretRef=REF), secret(password="s3cret")])
    assert state is not None
    assert state.peers[0].password == "s3cret"


def test_peer_password_from_string_data() -> None:
    raw = secret()
    raw["stringData"] = {"password": "plain"}
    state, _ = run([node(), peer(passwordSecretRef=REF), raw])
    assert state is not None and state.peers[0].password == "plain"


@pytest.mark.parametrize(
    ("objects", "code"),
    [
        ([], R.PeerSecretMissing),
        ([secret(other="x")], R.PeerSecretMissing),
        ([secret(name="bgp-auth", namespace="default", password="x")], R.PeerSecretMissing),
        ([secret(password="x" * 81)], R.InvalidObject),
    ],
    ids=["secret missing", "key missing", "secret in another namespace", "password too long"],
)
def test_peer_without_its_password_gets_no_session(objects: list[Raw], code: ReasonCode) -> None:
    state, reasons = run(
        [node(), peer(passwordSecretRef=REF), advertisement(podCIDRs=True), *objects]
    )
    assert state is not None
    assert state.peers == ()
    assert state.advertisements == ()
    assert (code, "tor-a") in codes(reasons)
    assert (R.NoPeerSelected, "all") in codes(reasons)


def test_reasons_come_in_plan_order_with_services_sorted() -> None:
    _, reasons = run(
        [
            *BASE,
            peer("far", nodeSelector={"matchLabels": {"x": "y"}}),
            advertisement(serviceAddresses=LB),
            service("b", lb_ips=()),
            service("a", lb_ips=()),
        ]
    )
    assert [(r.code, r.ref.name) for r in reasons] == [
        (R.NotSelected, "far"),
        (R.NoAddressAssigned, "a"),
        (R.NoAddressAssigned, "b"),
    ]


def test_node_planner_follows_endpoint_changes_of_an_unchanged_service() -> None:
    snap = Snapshot.build(
        [
            *BASE,
            advertisement(serviceAddresses=LB),
            service(etp="Local"),
            endpoint_slice("web", "default", endpoint("n2")),
        ]
    )
    planner = NodePlanner("n1")
    assert prefixes(planner.plan(snap).state) == set()
    snap = snap.apply(upserts=[endpoint_slice("web", "default", endpoint("n1"))])
    again = planner.plan(snap)
    assert prefixes(again.state) == {"203.0.113.10/32"}
    assert again == plan(snap, "n1")
    snap = snap.apply(deletes=[ObjectRef("EndpointSlice", "default", "web-abcde")])
    assert prefixes(planner.plan(snap).state) == set()


def test_node_planner_follows_a_removed_service_and_a_changed_advertisement() -> None:
    snap = Snapshot.build([*BASE, advertisement(serviceAddresses=LB), service()])
    planner = NodePlanner("n1")
    assert prefixes(planner.plan(snap).state) == {"203.0.113.10/32"}
    snap = snap.apply(upserts=[advertisement(serviceAddresses=LB, communities=["1:1"])])
    assert planner.plan(snap).state.advertisements[0].communities == ("1:1",)  # type: ignore[union-attr]
    snap = snap.apply(deletes=[ObjectRef("Service", "default", "web")])
    assert prefixes(planner.plan(snap).state) == set()


def test_a_secret_the_caller_could_not_read_drops_only_the_peers_needing_it() -> None:
    detail = "Secret kubgp/bgp-auth is not readable by the node agent: list it in rbac.peerSecrets"
    snap = Snapshot.build(
        [
            node(),
            peer(),
            peer("tor-b", peerAddress="192.0.2.2", passwordSecretRef=REF),
            advertisement(podCIDRs=True),
        ]
    ).apply(unreadable_secrets={("kubgp", "bgp-auth"): detail})
    state, reasons = plan(snap, "n1")
    assert state is not None
    assert [p.name for p in state.peers] == ["tor-a"]
    assert prefixes(state) == {"10.244.1.0/24"}
    assert Reason(R.PeerSecretMissing, ObjectRef("BGPPeer", "", "tor-b"), detail) in reasons
    # Readable again: the peer is back with its password; nothing else says unreadable.
    snap = snap.apply(upserts=[secret(password="s3cret")], unreadable_secrets={})
    state, reasons = plan(snap, "n1")
    assert state is not None and [p.password for p in state.peers] == [None, "s3cret"]
    assert not [r for r in reasons if r.code is R.PeerSecretMissing]
