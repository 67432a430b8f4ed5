"""kubectl-kubgp against the emulated Kubernetes API (real HTTP, the real kubernetes client) with
known objects: status, plan and explain as tables and as JSON/YAML, a forbidden Secret, unknown
names, the console script from PATH with $KUBECONFIG (how kubectl runs a plugin), and every
request it made checked against the chart's viewer ClusterRole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import kubectl_kubgp
from testing.kube.emulator import KubeAPI
from tests.packaging.rbac import assert_granted, calls

BIN = Path(sys.executable).parent
NOW_ISH = "2020-01-01T00:00:00Z"


def _node(name: str, ip: str, cidr: str, rack: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"rack": rack}},
        "spec": {"podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


def _peer(name: str, address: str, rack: str, secret: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "peerAddress": address,
        "peerASN": 65000,
        "nodeSelector": {"matchLabels": {"rack": rack}},
    }
    if secret:
        spec["passwordSecretRef"] = {"namespace": "kube-system", "name": secret, "key": "password"}
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPPeer",
        "metadata": {"name": name, "labels": {"tor": name}},
        "spec": spec,
    }


OBJECTS: list[dict[str, Any]] = [
    _node("n1", "192.0.2.11", "10.244.1.0/24", "a"),
    _node("n2", "192.0.2.12", "10.244.2.0/24", "a"),
    _node("n3", "192.0.2.13", "10.244.3.0/24", "b"),
    _peer("tor-a", "192.0.2.1", "a", secret="tor-a-password"),
    _peer("tor-b", "192.0.2.2", "b"),
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": "kube-system", "name": "tor-a-password"},
        "data": {"password": "czNjcmV0"},  # s3cret
    },
    {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPAdvertisement",
        "metadata": {"name": "default"},
        "spec": {
            "podCIDRs": True,
            "serviceAddresses": ["LoadBalancerIP"],
            "communities": ["64512:100"],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "externalTrafficPolicy": "Local",
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}},
    },
    {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": "default",
            "name": "web-1",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.1.5"], "nodeName": "n1", "conditions": {"ready": True}},
            {"addresses": ["10.244.3.5"], "nodeName": "n3", "conditions": {"ready": True}},
        ],
    },
    {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPNodeState",
        "metadata": {"name": "n1"},
        "status": {
            "routerId": "192.0.2.11",
            "asn": 64512,
            "appliedGeneration": 7,
            "peers": [
                {
                    "name": "tor-a",
                    "address": "192.0.2.1",
                    "state": "Established",
                    "since": NOW_ISH,
                    "prefixesAdvertised": 2,
                    "prefixesReceived": 3,
                    "prefixesAccepted": 2,
                    "prefixesBest": 2,
                    "prefixesInstalled": 1,
                }
            ],
            "routes": {
                "state": "on",
                "table": 254,
                "protocol": 179,
                "metric": 20,
                "maxPaths": 8,
                "selected": 2,
                "installed": 1,
                "failed": 1,
                "notInstalled": [
                    {"prefix": "198.51.100.0/24", "reason": "the kernel refused it: EEXIST"}
                ],
                "installedRoutes": [{"prefix": "0.0.0.0/0", "via": "192.0.2.1"}],
            },
        },
    },
    {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPNodeState",
        "metadata": {"name": "n2"},
        "status": {
            "routerId": "192.0.2.12",
            "asn": 64512,
            "peers": [
                {
                    "name": "tor-a",
                    "address": "192.0.2.1",
                    "state": "Active",
                    "lastError": "connection refused",
                }
            ],
        },
    },
]


@pytest.fixture
def cluster() -> Iterator[KubeAPI]:
    """The emulator with the objects above, seeded without HTTP so that the request log holds
    only the plugin's requests."""
    with KubeAPI.running(bookmark_interval=0.5) as api:
        for obj in OBJECTS:
            api.apply(obj)
        yield api


def run(api: KubeAPI, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = kubectl_kubgp.main([*args, "--kubeconfig", str(api.kubeconfig)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_table_and_json(cluster: KubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(cluster, capsys, "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "NODE", "PEER", "ADDRESS", "STATE", "SINCE", "ADVERTISED", "RECEIVED", "LAST", "ERROR",
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["n1", "tor-a", "192.0.2.1", "Established"]
    assert lines[1].split()[5:7] == ["2", "3"]
    assert lines[2].split()[:4] == ["n2", "tor-a", "192.0.2.1", "Active"]
    assert lines[2].endswith("connection refused")
    assert lines[3].split()[:4] == ["n3", "-", "-", "NoNodeState"]

    code, out, _ = run(cluster, capsys, "status", "-o", "json")
    doc = json.loads(out)
    assert doc["nodesWithoutState"] == ["n3"]
    assert [n["node"] for n in doc["nodes"]] == ["n1", "n2"]
    assert doc["nodes"][0]["peers"][0] == {
        "name": "tor-a",
        "address": "192.0.2.1",
        "state": "Established",
        "since": NOW_ISH,
        "prefixesAdvertised": 2,
        "prefixesReceived": 3,
        "lastError": "",
    }
    assert doc["nodes"][0]["appliedGeneration"] == 7


def test_routes_of_a_node_from_its_node_state(
    cluster: KubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(cluster, capsys, "routes", "n1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "node n1: fib on (table 254, protocol 179, metric 20, maxPaths 8): 2 selected, "
        "1 installed, 1 refused by the kernel"
    )
    peers = lines[lines.index("") + 1 :]
    assert peers[0].split() == ["PEER", "STATE", "RECEIVED", "ACCEPTED", "BEST", "INSTALLED"]
    assert peers[1].split() == ["tor-a", "Established", "3", "2", "2", "1"]
    assert "0.0.0.0/0" in out and "192.0.2.1" in out
    assert any(line.split() == ["198.51.100.0/24", "the", "kernel", "refused", "it:", "EEXIST"]
               for line in lines)  # fmt: skip
    assert "kubgp-speaker routes" in lines[-1] and "spec.nodeName=n1" in lines[-1]

    code, out, _ = run(cluster, capsys, "routes", "n1", "-o", "json")
    doc = json.loads(out)
    assert doc["routes"]["notInstalled"] == [
        {"prefix": "198.51.100.0/24", "reason": "the kernel refused it: EEXIST"}
    ]
    assert doc["peers"][0]["prefixesInstalled"] == 1

    code, out, _ = run(cluster, capsys, "routes", "n2")  # no route import there
    assert code == 0 and "no route import" in out.splitlines()[0]
    code, out, _ = run(cluster, capsys, "routes", "n3")
    assert code == 1 and out.startswith("No BGPNodeState for node n3")


def test_plan_from_the_live_cluster(cluster: KubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(cluster, capsys, "plan", "--node", "n1", "-o", "yaml")
    assert code == 0
    doc = yaml.safe_load(out)
    state = doc["state"]
    assert state["routerId"] == "192.0.2.11" and state["asn"] == 64512
    assert [(p["name"], p["password"]) for p in state["peers"]] == [("tor-a", "<redacted>")]
    prefixes = {a["prefix"]: a for a in state["advertisements"]}
    assert set(prefixes) == {"10.244.1.0/24", "198.51.100.7/32"}
    assert prefixes["198.51.100.7/32"]["communities"] == ["64512:100"]
    assert "s3cret" not in out

    code, out, _ = run(cluster, capsys, "plan", "--node", "n2")
    assert code == 0
    assert "10.244.2.0/24" in out and "198.51.100.7/32" not in out
    assert "NoLocalReadyEndpoint" in out and "Service default/web" in out

    code, out, _ = run(cluster, capsys, "plan", "--node", "nope", "-o", "json")
    assert code == 1
    assert json.loads(out)["reasons"][0]["reason"] == "NodeNotFound"


def test_explain_service(cluster: KubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(cluster, capsys, "explain", "service", "default/web", "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["addresses"] == [
        {"kind": "LoadBalancerIP", "address": "198.51.100.7"},
        {"kind": "ClusterIP", "address": "10.96.0.10"},
    ]
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert nodes["n1"]["announces"] == [
        {"prefix": "198.51.100.7/32", "peers": ["tor-a"], "asPathPrepend": 0}
    ]
    assert nodes["n3"]["announces"] == [
        {"prefix": "198.51.100.7/32", "peers": ["tor-b"], "asPathPrepend": 0}
    ]
    assert nodes["n2"]["announces"] == []
    assert [r["reason"] for r in nodes["n2"]["reasons"]] == ["NoLocalReadyEndpoint"]

    code, out, _ = run(cluster, capsys, "explain", "svc", "web", "-n", "default")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert rows["n1"].split()[1:3] == ["198.51.100.7/32", "tor-a"]
    assert "NoLocalReadyEndpoint" in rows["n2"]

    code, _, err = run(cluster, capsys, "explain", "service", "default/nope")
    assert code == 1 and "not found" in err


def test_explain_says_why_when_the_planner_is_silent(
    cluster: KubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"namespace": "default", "name": "internal"},
            "spec": {"type": "ClusterIP", "clusterIPs": ["10.96.0.20"], "ports": [{"port": 80}]},
        }
    )
    code, out, _ = run(cluster, capsys, "explain", "service", "default/internal", "-o", "json")
    assert code == 0
    # The advertisement announces LoadBalancer IPs only: nothing the planner skipped, and so
    # no planner reason; the plugin says so.
    for node in json.loads(out)["nodes"]:
        assert node["announces"] == []
        assert [r["reason"] for r in node["reasons"]] == ["NotAdvertised"]
    cluster.delete("BGPAdvertisement", "default")
    code, out, _ = run(cluster, capsys, "explain", "service", "default/web", "-o", "json")
    reasons = {n["node"]: n["reasons"][0]["reason"] for n in json.loads(out)["nodes"]}
    assert reasons == {"n1": "NotAdvertised", "n2": "NotAdvertised", "n3": "NotAdvertised"}


def test_a_forbidden_secret_is_assumed_present(
    cluster: KubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.handler["get /api/v1/namespaces/kube-system/secrets/tor-a-password"] << 403
    code, out, err = run(cluster, capsys, "plan", "--node", "n1", "-o", "json")
    assert code == 0
    assert "cannot read Secret kube-system/tor-a-password (forbidden)" in err
    peers = json.loads(out)["state"]["peers"]
    assert [(p["name"], p["password"]) for p in peers] == [("tor-a", "<redacted>")]


def test_a_missing_secret_drops_the_peer(
    cluster: KubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.delete("Secret", "tor-a-password", "kube-system")
    code, out, _ = run(cluster, capsys, "plan", "--node", "n1", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["state"]["peers"] == []
    assert "PeerSecretMissing" in [r["reason"] for r in doc["reasons"]]


def test_api_errors_exit_2(cluster: KubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.handler["get /apis/kubgp.io/v1alpha1/bgpnodestates"] << 500
    code, _, err = run(cluster, capsys, "status")
    assert code == 2 and "500" in err
    bad = kubectl_kubgp.main(["status", "--kubeconfig", "/nonexistent/kubeconfig"])
    assert bad == 2
    assert "cannot load kubeconfig" in capsys.readouterr().err


def test_standalone_console_script_with_kubeconfig_env(cluster: KubeAPI) -> None:
    """What `kubectl kubgp status` does: finds kubectl-kubgp on PATH and runs it with the
    user's environment (KUBECONFIG), passing the remaining arguments."""
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    out = subprocess.run(
        ["kubectl-kubgp", "status", "-o", "json"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["nodesWithoutState"] == ["n3"]


def test_every_request_is_granted_to_the_viewer_role(
    cluster: KubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (
        ["status"],
        ["plan", "--node", "n1"],
        ["explain", "service", "default/web"],
        ["routes", "n1"],
    ):
        assert run(cluster, capsys, *args)[0] == 0
    # The viewer role has no Secrets: the plugin reads each by name (a user may grant exactly
    # those with resourceNames) and plans without it when forbidden (test above).
    secrets = [c for c in calls(cluster.requests) if c.resource == "secrets"]
    assert secrets and {(c.verb, c.namespace, c.name) for c in secrets} == {
        ("get", "kube-system", "tor-a-password")
    }
    others = [r for r in cluster.requests if "/secrets/" not in r.url.path]
    checked = assert_granted(others, component="viewer")
    assert {c.verb for c in checked} == {"get", "list"}
    with pytest.raises(AssertionError, match="get secrets 'tor-a-password'"):
        assert_granted(cluster.requests, component="viewer")
