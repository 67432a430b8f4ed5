"""Typed views: every invalid field is named in the error; the snapshot indexes and updates."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.domain.objects import (
    InvalidObjectError,
    LabelSelector,
    Requirement,
    Service,
    parse_object,
)
from controller.domain.reasons import ObjectRef, Reason, ReasonCode
from controller.domain.snapshot import Snapshot, parse
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

POOL: Raw = {
    "apiVersion": "kubgp.io/v1alpha1",
    "kind": "LoadBalancerIPPool",
    "metadata": {"name": "pool"},
    "spec": {"cidrs": ["203.0.113.0/24"]},
}


def with_field(raw: Raw, path: str, value: object) -> Raw:
    out = copy.deepcopy(raw)
    *parents, last = path.split(".")
    target: Any = out
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return out


INVALID = [
    (node(), "metadata.name", None, "metadata.name: missing"),
    (node(), "spec.podCIDRs", ["10.244.1.1/24"], "spec.podCIDRs[0]:"),
    (node(), "metadata.labels", {"a": 1}, "metadata.labels.a: must be a string"),
    (service(), "spec.clusterIPs", ["10.96.0.300"], "spec.clusterIPs[0]:"),
    (service(), "spec.externalTrafficPolicy", "Nearest", "spec.externalTrafficPolicy:"),
    (service(), "spec.type", "Magic", "spec.type: unknown type"),
    (service(), "status.loadBalancer.ingress", [{"ip": "x"}], "status.loadBalancer.ingress[0].ip"),
    (endpoint_slice(), "metadata.labels", {}, "metadata.labels.kubernetes.io/service-name"),
    (
        endpoint_slice("web", "default", endpoint()),
        "endpoints",
        [{"conditions": {"ready": "yes"}}],
        "endpoints[0].conditions.ready",
    ),
    (secret(), "data", {"password": "%%%"}, "data.password: is not base64"),
    (peer(), "spec.peerAddress", "tor-a.example", "spec.peerAddress:"),
    (peer(), "spec.peerASN", 0, "spec.peerASN: must be between 1 and 4294967295"),
    (peer(), "spec.peerASN", None, "spec.peerASN: must be an integer"),
    (peer(), "spec.localASN", 4294967296, "spec.localASN:"),
    (peer(), "spec.port", 0, "spec.port:"),
    (peer(), "spec.holdTimeSeconds", 2, "spec.holdTimeSeconds: must be 0 or at least 3"),
    (peer(), "spec.keepaliveTimeSeconds", 90, "spec.keepaliveTimeSeconds: must be below"),
    (peer(), "spec.ebgpMultihop", 256, "spec.ebgpMultihop:"),
    (peer(), "spec.families", ["l2vpn-evpn"], "spec.families[0]:"),
    (peer(), "spec.passwordSecretRef", {"name": "x"}, "spec.passwordSecretRef.namespace"),
    (peer(), "spec.sourceAddress", "eth0", "spec.sourceAddress:"),
    (peer(), "spec.bfd", "fast", "spec.bfd: must be a mapping"),
    (peer(), "spec.bfd.minTxMilliseconds", 10, "spec.bfd.minTxMilliseconds: must be between 50"),
    (peer(), "spec.bfd.minRxMilliseconds", 60001, "spec.bfd.minRxMilliseconds: must be between"),
    (peer(), "spec.bfd.multiplier", 1, "spec.bfd.multiplier: must be between 2 and 255"),
    (
        peer(),
        "spec.nodeSelector",
        {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
        "spec.nodeSelector.matchExpressions[0].values: must not be empty",
    ),
    (
        peer(),
        "spec.nodeSelector",
        {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
        "spec.nodeSelector.matchExpressions[0].operator: unknown operator",
    ),
    (advertisement(), "spec.serviceAddresses", ["NodeIP"], "spec.serviceAddresses[0]:"),
    (advertisement(), "spec.aggregationLengthIPv4", 33, "spec.aggregationLengthIPv4:"),
    (advertisement(), "spec.aggregationLengthIPv6", -1, "spec.aggregationLengthIPv6:"),
    (advertisement(), "spec.communities", ["65536:1"], "spec.communities[0]:"),
    (advertisement(), "spec.largeCommunities", ["1:2"], "spec.largeCommunities[0]:"),
    (advertisement(), "spec.localPreference", -1, "spec.localPreference:"),
    (advertisement(), "spec.med", "low", "spec.med: must be an integer"),
    (advertisement(), "spec.podCIDRs", "yes", "spec.podCIDRs: must be true or false"),
    (POOL, "spec.cidrs", [], "spec: a pool needs at least one CIDR or range"),
    (POOL, "spec.ranges", [{"start": "203.0.113.9", "end": "203.0.113.1"}], "spec.ranges[0]:"),
    (peer(), "spec.sourceAddress", "2001:db8::1", "spec.sourceAddress: must be of the same"),
    (POOL, "spec.cidrs", ["203.0.113.1/24"], "spec.cidrs[0]:"),
]


@pytest.mark.parametrize(
    ("raw", "path", "value", "message"), INVALID, ids=[f"{r['kind']}.{p}" for r, p, _, _ in INVALID]
)
def test_invalid_fields_are_named(raw: Raw, path: str, value: object, message: str) -> None:
    parse_object(raw)  # the base object is valid, so the one field is what breaks it
    with pytest.raises(InvalidObjectError) as caught:
        parse_object(with_field(raw, path, value))
    assert caught.value.detail.startswith(message), caught.value.detail


def test_unknown_kind_is_invalid() -> None:
    with pytest.raises(InvalidObjectError, match="not a kind the planner reads"):
        parse_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})


def test_service_view() -> None:
    svc = parse_object(
        service(
            "web",
            "prod",
            cluster_ips=("10.96.0.10", "fd00::a"),
            lb_ips=("203.0.113.10",),
            external_ips=("2001:DB8::7",),
            etp="Local",
        )
    )
    assert isinstance(svc, Service)
    assert svc.ref == ObjectRef("Service", "prod", "web")
    assert svc.cluster_ips == ("10.96.0.10", "fd00::a")
    assert svc.external_ips == ("2001:db8::7",)
    assert svc.load_balancer_ips == ("203.0.113.10",)
    assert svc.external_traffic_local and not svc.internal_traffic_local


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (LabelSelector(), {}, True),
        (LabelSelector((("a", "1"),)), {"a": "1", "b": "2"}, True),
        (LabelSelector((("a", "1"),)), {"a": "2"}, False),
        (LabelSelector((), (Requirement("a", "In", frozenset({"1", "2"})),)), {"a": "2"}, True),
        (LabelSelector((), (Requirement("a", "In", frozenset({"1"})),)), {}, False),
        (LabelSelector((), (Requirement("a", "NotIn", frozenset({"1"})),)), {}, True),
        (LabelSelector((), (Requirement("a", "NotIn", frozenset({"1"})),)), {"a": "1"}, False),
        (LabelSelector((), (Requirement("a", "Exists", frozenset()),)), {"a": ""}, True),
        (LabelSelector((), (Requirement("a", "Exists", frozenset()),)), {}, False),
        (LabelSelector((), (Requirement("a", "DoesNotExist", frozenset()),)), {}, True),
        (LabelSelector((), (Requirement("a", "DoesNotExist", frozenset()),)), {"a": "x"}, False),
    ],
)
def test_label_selector(selector: LabelSelector, labels: dict[str, str], expected: bool) -> None:
    assert selector.matches(labels) is expected


def test_snapshot_indexes_slices_by_service_and_updates_share_unchanged_views() -> None:
    snap = Snapshot.build(
        [
            service("a"),
            service("b"),
            endpoint_slice("a", "default", endpoint("n1"), name="a-1"),
            endpoint_slice("a", "default", endpoint("n2"), name="a-2"),
            endpoint_slice("b", "default", endpoint("n3"), name="b-1"),
        ]
    )
    assert [s.ref.name for s in snap.slices_by_service[("default", "a")]] == ["a-1", "a-2"]
    after = snap.apply(
        upserts=[endpoint_slice("a", "default", endpoint("n9"), name="a-2")],
        deletes=[ObjectRef("EndpointSlice", "default", "b-1")],
    )
    assert [n for s in after.slices_by_service[("default", "a")] for n in s.ready_nodes] == [
        "n1",
        "n9",
    ]
    assert ("default", "b") not in after.slices_by_service
    assert after.services[("default", "b")] is snap.services[("default", "b")]
    # The old snapshot is unchanged.
    assert len(snap.slices_by_service) == 2


def test_snapshot_keeps_services_sorted_when_one_is_added() -> None:
    snap = Snapshot.build([service("m"), service("c")]).apply(upserts=[service("a")])
    assert [k[1] for k in snap.services] == ["a", "c", "m"]


def test_an_invalid_update_replaces_the_valid_view_with_a_reason() -> None:
    snap = Snapshot.build([peer()])
    after = snap.apply(upserts=[peer(peerASN=0)])
    assert after.peers == ()
    ref = ObjectRef("BGPPeer", "", "tor-a")
    assert after.invalid[ref].code is ReasonCode.InvalidObject
    fixed = after.apply(upserts=[peer()])
    assert [p.name for p in fixed.peers] == ["tor-a"] and not fixed.invalid
    gone = after.apply(deletes=[ref])
    assert not gone.invalid


def test_pool_parses() -> None:
    snap = Snapshot.build([POOL])
    assert snap.pools[0].cidrs == ("203.0.113.0/24",)
    assert snap.pools[0].auto_assign is True


def test_snapshot_keeps_services_sorted_when_one_is_replaced() -> None:
    snap = Snapshot.build([service("a"), service("c")]).apply(upserts=[service("b")])
    snap = snap.apply(upserts=[service("a", lb_ips=())])
    assert [k[1] for k in snap.services] == ["a", "b", "c"]


def test_snapshot_indexes_which_advertisements_select_each_service() -> None:
    snap = Snapshot.build(
        [
            service("a", labels={"bgp": "yes"}),
            service("b", "prod"),
            advertisement("everything", serviceAddresses=["ClusterIP"]),
            advertisement("tagged", serviceSelector={"matchLabels": {"bgp": "yes"}}),
            advertisement("prod-only", namespaces=["prod"]),
        ]
    )
    assert snap.ads_for_service[("default", "a")] == ("everything", "tagged")
    assert snap.ads_for_service[("prod", "b")] == ("everything", "prod-only")
    snap = snap.apply(
        upserts=[service("a")], deletes=[ObjectRef("BGPAdvertisement", "", "everything")]
    )
    assert snap.ads_for_service[("default", "a")] == ()
    assert snap.ads_for_service[("prod", "b")] == ("prod-only",)
    snap = snap.apply(deletes=[ObjectRef("Service", "prod", "b")])
    assert ("prod", "b") not in snap.ads_for_service


def test_parsed_views_and_reasons_go_into_a_snapshot_as_raw_objects_do() -> None:
    raws = [service("a"), endpoint_slice("a", "default", endpoint("n1")), peer(peerASN=0)]
    from_raws = Snapshot.build(raws)
    from_views = Snapshot().apply(views=[parse(r) for r in raws])
    assert from_views.services == from_raws.services
    assert from_views.slices_by_service == from_raws.slices_by_service
    assert from_views.invalid == from_raws.invalid
    assert isinstance(parse(peer(peerASN=0)), Reason)
    assert from_views.ads_for_service == from_raws.ads_for_service
