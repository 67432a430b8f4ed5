# ruff: noqa: E501  (the admission table reads best one row per line)
"""The CRDs in crds/: valid apiextensions.k8s.io/v1 structure, structural schemas, and every CEL
rule compiled and exercised with cel-python (testing/kube/crd_schema.py), after defaulting as
the API server does."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from controller.domain.objects import InvalidObjectError, parse_object
from testing.kube import crd_schema
from testing.kube.crd_schema import (
    CEL,
    KINDS,
    TYPES,
    admit,
    default,
    evaluate,
    load,
    root_schema,
    validate,
    walk,
)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_crd_is_valid_apiextensions_v1(name: str) -> None:
    crd = load(name)
    assert (crd["apiVersion"], crd["kind"]) == (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
    )
    spec = crd["spec"]
    names = spec["names"]
    assert names["kind"] == KINDS[name]
    assert crd["metadata"]["name"] == f"{names['plural']}.kubgp.io"
    assert (spec["group"], spec["scope"]) == ("kubgp.io", "Cluster")
    assert names["listKind"] == f"{names['kind']}List"
    assert names["singular"] == names["kind"].lower() and names["plural"] == name[: -len(".yaml")]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = version["additionalPrinterColumns"]
    assert columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for column in columns:
        assert column["type"] in ("integer", "number", "string", "boolean", "date")
        assert column["jsonPath"].startswith(".")
        # Every column points at a field the schema declares.
        node = version["schema"]["openAPIV3Schema"]
        for part in column["jsonPath"].strip(".").split("."):
            if part in ("metadata",):
                break
            node = node["properties"][part]


@pytest.mark.parametrize("name", sorted(KINDS))
def test_schema_is_structural(name: str) -> None:
    schema = root_schema(name)
    assert schema["properties"]["metadata"] == {"type": "object"}
    for path, node in walk(schema):
        assert "type" in node, f"{path}: every node needs a type (structural schema)"
        assert node["type"] in TYPES, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node["type"] == "array":
            assert "items" in node, path
            assert node.get("x-kubernetes-list-type", "atomic") in ("atomic", "set", "map"), path
            if node.get("x-kubernetes-list-type") == "map":
                for key in node["x-kubernetes-list-map-keys"]:
                    assert key in node["items"].get("required", []), f"{path}: map key {key}"
        if "default" in node:
            assert not list(validate(node, node["default"], path)), f"{path}: invalid default"
        for check in node.get("x-kubernetes-validations", []):
            assert set(check) <= {"rule", "message", "fieldPath", "reason"}, path
            assert check["message"], path
            CEL.compile(check["rule"])  # parses


def rules() -> Iterator[tuple[str, str, str]]:
    for name in sorted(KINDS):
        for path, node in walk(root_schema(name)):
            for check in node.get("x-kubernetes-validations", []):
                yield name, path, check["rule"]


# --- admission, one row per rule ---------------------------------------------------------


def obj(kind: str, spec: dict[str, Any] | None = None, status: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x"},
    }
    if spec is not None:
        out["spec"] = spec
    if status is not None:
        out["status"] = status
    return out


PEER = {"peerAddress": "192.0.2.1", "peerASN": 65000}
SEL_BAD = {"matchExpressions": [{"key": "a", "operator": "In"}]}
SEL_BAD2 = {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
RR = {"matchLabels": {"kubgp.io/route-reflector": "true"}}

ADMISSION: list[tuple[str, str, dict[str, Any], str | None]] = [
    # (file, id, object, expected error fragment or None when admitted)
    ("bgppeers.yaml", "minimal", obj("BGPPeer", PEER), None),
    ("bgppeers.yaml", "ipv6", obj("BGPPeer", {**PEER, "peerAddress": "2001:db8::1"}), None),
    ("bgppeers.yaml", "address", obj("BGPPeer", {**PEER, "peerAddress": "tor1"}), "must be an IPv4 or IPv6"),
    ("bgppeers.yaml", "asn 0", obj("BGPPeer", {**PEER, "peerASN": 0}), ".spec.peerASN: must be >= 1"),
    ("bgppeers.yaml", "asn 2^32", obj("BGPPeer", {**PEER, "localASN": 2**32}), "must be <= 4294967295"),
    ("bgppeers.yaml", "hold 0", obj("BGPPeer", {**PEER, "holdTimeSeconds": 0}), None),
    ("bgppeers.yaml", "hold 0 keepalive 0", obj("BGPPeer", {**PEER, "holdTimeSeconds": 0, "keepaliveTimeSeconds": 0}), None),
    ("bgppeers.yaml", "hold 2", obj("BGPPeer", {**PEER, "holdTimeSeconds": 2}), "must be 0 or at least 3"),
    ("bgppeers.yaml", "keepalive = hold", obj("BGPPeer", {**PEER, "holdTimeSeconds": 9, "keepaliveTimeSeconds": 9}), "keepaliveTimeSeconds must be below"),
    ("bgppeers.yaml", "keepalive vs default hold", obj("BGPPeer", {**PEER, "keepaliveTimeSeconds": 90}), "keepaliveTimeSeconds must be below"),
    ("bgppeers.yaml", "keepalive with hold 0", obj("BGPPeer", {**PEER, "holdTimeSeconds": 0, "keepaliveTimeSeconds": 3}), "keepaliveTimeSeconds must be below"),
    ("bgppeers.yaml", "keepalive ok", obj("BGPPeer", {**PEER, "holdTimeSeconds": 9, "keepaliveTimeSeconds": 3}), None),
    ("bgppeers.yaml", "source family", obj("BGPPeer", {**PEER, "sourceAddress": "2001:db8::2"}), "same address family"),
    ("bgppeers.yaml", "source bad", obj("BGPPeer", {**PEER, "sourceAddress": "eth0"}), ".spec.sourceAddress: must be an IPv4 or IPv6"),
    ("bgppeers.yaml", "source ok", obj("BGPPeer", {**PEER, "sourceAddress": "192.0.2.11"}), None),
    ("bgppeers.yaml", "selector In without values", obj("BGPPeer", {**PEER, "nodeSelector": SEL_BAD}), "values must be non-empty"),
    ("bgppeers.yaml", "selector Exists with values", obj("BGPPeer", {**PEER, "nodeSelector": SEL_BAD2}), "values must be non-empty"),
    ("bgppeers.yaml", "selector", obj("BGPPeer", {**PEER, "nodeSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}, {"key": "b", "operator": "Exists"}]}}), None),
    ("bgppeers.yaml", "family", obj("BGPPeer", {**PEER, "families": ["l2vpn-evpn"]}), "must be one of"),
    ("bgppeers.yaml", "secret ref", obj("BGPPeer", {**PEER, "passwordSecretRef": {"name": "s"}}), ".spec.passwordSecretRef.namespace: required"),
    ("bgppeers.yaml", "unknown field", obj("BGPPeer", {**PEER, "peerAS": 1}), "unknown field"),
    ("bgppeers.yaml", "bfd", obj("BGPPeer", {**PEER, "bfd": {"minTxMilliseconds": 50, "minRxMilliseconds": 60000, "multiplier": 255}}), None),
    ("bgppeers.yaml", "bfd defaults", obj("BGPPeer", {**PEER, "bfd": {}}), None),
    ("bgppeers.yaml", "bfd 10 ms", obj("BGPPeer", {**PEER, "bfd": {"minTxMilliseconds": 10}}), ".spec.bfd.minTxMilliseconds: must be >= 50"),
    ("bgppeers.yaml", "bfd rx 60001", obj("BGPPeer", {**PEER, "bfd": {"minRxMilliseconds": 60001}}), "must be <= 60000"),
    ("bgppeers.yaml", "bfd multiplier 1", obj("BGPPeer", {**PEER, "bfd": {"multiplier": 1}}), ".spec.bfd.multiplier: must be >= 2"),
    ("bgppeers.yaml", "import", obj("BGPPeer", {**PEER, "import": [{"prefix": "0.0.0.0/0", "le": 0, "action": "accept"}, {"prefix": "198.51.100.0/24", "ge": 25, "le": 28, "communities": ["65000:10", "no-export"], "largeCommunities": ["65000:1:2"], "asPathContains": [65001], "originASN": 65009, "action": "accept", "set": {"localPreference": 200, "addCommunities": ["64512:1"], "addLargeCommunities": ["64512:0:1"]}}, {"action": "reject"}]}), None),
    ("bgppeers.yaml", "import ipv6", obj("BGPPeer", {**PEER, "import": [{"prefix": "2001:db8::/32", "ge": 48, "le": 128, "action": "accept"}]}), None),
    ("bgppeers.yaml", "import ge without prefix", obj("BGPPeer", {**PEER, "import": [{"ge": 8, "action": "accept"}]}), ".spec.import[0].ge: ge needs a prefix"),
    ("bgppeers.yaml", "import ge below length", obj("BGPPeer", {**PEER, "import": [{"prefix": "198.51.100.0/24", "ge": 16, "action": "accept"}]}), "ge needs a prefix and must be between"),
    ("bgppeers.yaml", "import le over 32", obj("BGPPeer", {**PEER, "import": [{"prefix": "198.51.100.0/24", "le": 33, "action": "accept"}]}), ".spec.import[0].le: le needs a prefix"),
    ("bgppeers.yaml", "import le below ge", obj("BGPPeer", {**PEER, "import": [{"prefix": "198.51.100.0/24", "ge": 28, "le": 26, "action": "accept"}]}), "le needs a prefix and must be between"),
    ("bgppeers.yaml", "import set on reject", obj("BGPPeer", {**PEER, "import": [{"action": "reject", "set": {"localPreference": 1}}]}), "only an accepting rule"),
    ("bgppeers.yaml", "import host bits", obj("BGPPeer", {**PEER, "import": [{"prefix": "198.51.100.1/24", "action": "accept"}]}), "no host bits"),
    ("bgppeers.yaml", "import not a cidr", obj("BGPPeer", {**PEER, "import": [{"prefix": "198.51.100.1", "action": "accept"}]}), "must be a CIDR"),
    ("bgppeers.yaml", "import action", obj("BGPPeer", {**PEER, "import": [{"action": "permit"}]}), "must be one of"),
    ("bgppeers.yaml", "import community", obj("BGPPeer", {**PEER, "import": [{"communities": ["65536:1"], "action": "accept"}]}), "pattern"),
    ("bgpadvertisements.yaml", "pods", obj("BGPAdvertisement", {"podCIDRs": True}), None),
    ("bgpadvertisements.yaml", "nothing", obj("BGPAdvertisement", {}), "announce something"),
    ("bgpadvertisements.yaml", "services", obj("BGPAdvertisement", {"serviceAddresses": ["ClusterIP"]}), None),
    ("bgpadvertisements.yaml", "bad kind", obj("BGPAdvertisement", {"serviceAddresses": ["NodeIP"]}), "must be one of"),
    ("bgpadvertisements.yaml", "communities", obj("BGPAdvertisement", {"podCIDRs": True, "communities": ["65535:0", "no-export", "0:65535"]}), None),
    ("bgpadvertisements.yaml", "community 65536", obj("BGPAdvertisement", {"podCIDRs": True, "communities": ["65536:1"]}), "pattern"),
    ("bgpadvertisements.yaml", "community name", obj("BGPAdvertisement", {"podCIDRs": True, "communities": ["no-exports"]}), "pattern"),
    ("bgpadvertisements.yaml", "large", obj("BGPAdvertisement", {"podCIDRs": True, "largeCommunities": ["4294967295:0:1"]}), None),
    ("bgpadvertisements.yaml", "large 2^32", obj("BGPAdvertisement", {"podCIDRs": True, "largeCommunities": ["4294967296:0:1"]}), "pattern"),
    ("bgpadvertisements.yaml", "large short", obj("BGPAdvertisement", {"podCIDRs": True, "largeCommunities": ["1:2"]}), "pattern"),
    ("bgpadvertisements.yaml", "aggregation", obj("BGPAdvertisement", {"podCIDRs": True, "aggregationLengthIPv4": 33}), "must be <= 32"),
    ("bgpadvertisements.yaml", "peer selector", obj("BGPAdvertisement", {"podCIDRs": True, "peerSelector": SEL_BAD}), "values must be non-empty"),
    ("bgpnodepeerings.yaml", "mesh", obj("BGPNodePeering", {}), None),
    ("bgpnodepeerings.yaml", "mesh of some", obj("BGPNodePeering", {"nodeSelector": {"matchLabels": {"rack": "r1"}}}), None),
    ("bgpnodepeerings.yaml", "reflectors", obj("BGPNodePeering", {"routeReflectors": {"nodeSelector": RR, "clusterId": "192.0.2.250"}}), None),
    ("bgpnodepeerings.yaml", "reflectors by expression", obj("BGPNodePeering", {"routeReflectors": {"nodeSelector": {"matchExpressions": [{"key": "rr", "operator": "Exists"}]}}}), None),
    ("bgpnodepeerings.yaml", "reflectors empty", obj("BGPNodePeering", {"routeReflectors": {"nodeSelector": {}}}), "must not be empty"),
    ("bgpnodepeerings.yaml", "reflectors empty lists", obj("BGPNodePeering", {"routeReflectors": {"nodeSelector": {"matchLabels": {}, "matchExpressions": []}}}), "must not be empty"),
    ("bgpnodepeerings.yaml", "reflectors no selector", obj("BGPNodePeering", {"routeReflectors": {"clusterId": "192.0.2.250"}}), ".spec.routeReflectors.nodeSelector: required"),
    ("bgpnodepeerings.yaml", "cluster id v6", obj("BGPNodePeering", {"routeReflectors": {"nodeSelector": RR, "clusterId": "2001:db8::1"}}), "IPv4 dotted quad"),
    ("bgpnodepeerings.yaml", "cluster id name", obj("BGPNodePeering", {"routeReflectors": {"nodeSelector": RR, "clusterId": "rr-1"}}), "IPv4 dotted quad"),
    ("bgpnodepeerings.yaml", "keepalive = hold", obj("BGPNodePeering", {"holdTimeSeconds": 9, "keepaliveTimeSeconds": 9}), "keepaliveTimeSeconds must be below"),
    ("bgpnodepeerings.yaml", "keepalive ok", obj("BGPNodePeering", {"holdTimeSeconds": 9, "keepaliveTimeSeconds": 3}), None),
    ("bgpnodepeerings.yaml", "hold 2", obj("BGPNodePeering", {"holdTimeSeconds": 2}), "must be 0 or at least 3"),
    ("bgpnodepeerings.yaml", "selector In without values", obj("BGPNodePeering", {"nodeSelector": SEL_BAD}), "values must be non-empty"),
    ("bgpnodepeerings.yaml", "reflector selector Exists with values", obj("BGPNodePeering", {"routeReflectors": {"nodeSelector": SEL_BAD2}}), "values must be non-empty"),
    ("bgpnodepeerings.yaml", "secret ref", obj("BGPNodePeering", {"passwordSecretRef": {"name": "s"}}), ".spec.passwordSecretRef.namespace: required"),
    ("bgpnodepeerings.yaml", "bfd", obj("BGPNodePeering", {"bfd": {"multiplier": 1}}), ".spec.bfd.multiplier: must be >= 2"),
    ("bgpnodepeerings.yaml", "unknown field", obj("BGPNodePeering", {"peerASN": 1}), "unknown field"),
    ("bgpnodestates.yaml", "state", obj("BGPNodeState", status={"routerId": "192.0.2.11", "asn": 64512, "establishedPeers": 1, "peers": [{"name": "tor-a", "address": "2001:db8::1", "state": "Established"}]}), None),
    ("bgpnodestates.yaml", "routes", obj("BGPNodeState", status={"routes": {"state": "on", "table": 254, "protocol": 179, "metric": 20, "maxPaths": 8, "selected": 2, "installed": 1, "failed": 1, "notInstalled": [{"prefix": "198.51.100.0/24", "reason": "refused"}], "installedRoutes": [{"prefix": "0.0.0.0/0", "via": "192.0.2.1"}]}, "peers": [{"name": "a", "state": "Established", "prefixesAccepted": 2, "prefixesBest": 1, "prefixesInstalled": 1}]}), None),
    ("bgpnodestates.yaml", "routes state", obj("BGPNodeState", status={"routes": {"state": "maybe"}}), "must be one of"),
    ("bgpnodestates.yaml", "node peering", obj("BGPNodeState", status={"nodePeering": {"name": "rr", "mode": "RouteReflection", "routeReflector": True, "clusterId": "192.0.2.250", "sessions": 4, "establishedSessions": 3}, "peers": [{"name": "node/n2", "node": "n2", "role": "RouteReflectorClient", "state": "Established"}]}), None),
    ("bgpnodestates.yaml", "node peering counts", obj("BGPNodeState", status={"nodePeering": {"name": "rr", "mode": "FullMesh", "sessions": 1, "establishedSessions": 2}}), "cannot exceed sessions"),
    ("bgpnodestates.yaml", "node peering cluster id", obj("BGPNodeState", status={"nodePeering": {"name": "rr", "mode": "RouteReflection", "clusterId": "x"}}), "IPv4 dotted quad"),
    ("bgpnodestates.yaml", "peer role", obj("BGPNodeState", status={"peers": [{"name": "node/n2", "state": "Idle", "role": "Reflector"}]}), "must be one of"),
    ("bgpnodestates.yaml", "router id v6", obj("BGPNodeState", status={"routerId": "2001:db8::1"}), "IPv4 dotted quad"),
    ("bgpnodestates.yaml", "established > peers", obj("BGPNodeState", status={"establishedPeers": 2, "peers": [{"name": "a", "state": "Idle"}]}), "cannot exceed"),
    ("bgpnodestates.yaml", "peer state", obj("BGPNodeState", status={"peers": [{"name": "a", "state": "Up"}]}), "must be one of"),
    ("bgpnodestates.yaml", "peer address", obj("BGPNodeState", status={"peers": [{"name": "a", "state": "Idle", "address": "x"}]}), "must be an IPv4 or IPv6"),
    ("loadbalancerippools.yaml", "cidrs", obj("LoadBalancerIPPool", {"cidrs": ["203.0.113.0/24", "2001:DB8::/64"]}), None),
    ("loadbalancerippools.yaml", "host bits", obj("LoadBalancerIPPool", {"cidrs": ["203.0.113.1/24"]}), "no host bits"),
    ("loadbalancerippools.yaml", "not a cidr", obj("LoadBalancerIPPool", {"cidrs": ["203.0.113.1"]}), "must be a CIDR"),
    ("loadbalancerippools.yaml", "empty", obj("LoadBalancerIPPool", {}), "at least one CIDR or range"),
    ("loadbalancerippools.yaml", "range", obj("LoadBalancerIPPool", {"ranges": [{"start": "203.0.113.10", "end": "203.0.113.20"}]}), None),
    ("loadbalancerippools.yaml", "range families", obj("LoadBalancerIPPool", {"ranges": [{"start": "203.0.113.10", "end": "2001:db8::1"}]}), "one address family"),
    ("loadbalancerippools.yaml", "range address", obj("LoadBalancerIPPool", {"ranges": [{"start": "a", "end": "203.0.113.1"}]}), "must be an IP address"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "obj_", "error"),
    [(n, o, e) for n, _, o, e in ADMISSION],
    ids=[f"{KINDS[n]}: {i}" for n, i, _, _ in ADMISSION],
)
def test_admission(name: str, obj_: dict[str, Any], error: str | None) -> None:
    errors = admit(name, obj_)
    if error is None:
        assert errors == []
    else:
        assert any(error in e for e in errors), errors


def test_every_cel_rule_is_exercised_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rule must reject at least one row of ADMISSION and accept at least one, or the
    table does not prove the rule does anything."""
    outcomes: dict[str, set[bool]] = {rule: set() for _, _, rule in rules()}
    original = evaluate

    def spy(rule: str, value: object) -> bool:
        result = original(rule, value)
        outcomes[rule].add(result)
        return result

    monkeypatch.setattr(crd_schema, "evaluate", spy)
    for name, _, o, _ in ADMISSION:
        admit(name, o)
    missing = {rule: seen for rule, seen in outcomes.items() if seen != {True, False}}
    assert not missing, missing


def test_crd_defaults_match_the_planner_defaults() -> None:
    """A BGPPeer/BGPAdvertisement parses to the same view with or without the CRD's defaults
    applied, so the planner behaves alike whether or not an API server defaulted it."""
    for name, spec in (
        ("bgppeers.yaml", dict(PEER)),
        ("bgpadvertisements.yaml", {"serviceAddresses": ["ClusterIP"]}),
        ("loadbalancerippools.yaml", {"cidrs": ["203.0.113.0/24"]}),
        ("bgpnodepeerings.yaml", {"gracefulRestart": {}, "bfd": {}}),
    ):
        kind = KINDS[name]
        raw = obj(kind, spec)
        schema = root_schema(name)
        defaulted = default(schema, copy.deepcopy(raw))
        assert defaulted != raw, f"{kind}: expected some defaults"
        assert parse_object(defaulted) == parse_object(raw), kind


def test_what_the_crd_rejects_the_parser_rejects_too() -> None:
    """Objects that bypass admission (the dry run's manifests) are still caught."""
    for name, ident, o, error in ADMISSION:
        if error is None or KINDS[name] == "BGPNodeState" or ident in ("nothing", "unknown field"):
            continue  # status-only kind; harmless specs the parser tolerates
        with pytest.raises(InvalidObjectError):
            parse_object(o)
