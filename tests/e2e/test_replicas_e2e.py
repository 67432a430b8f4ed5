"""Two nodes, two real agents and two real speakers against one emulated API server: each
agent watches only its own Node, plans only its own peers, and writes only its own
BGPNodeState — nothing to the objects it watches. No router needed: the peers' addresses have
nobody listening, so the sessions stay down and no Events are due."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testing.kube.emulator import KubeAPI
from testing.procs import Procs, free_port
from testing.routers.lab import loopback_address
from testing.wait import wait_for
from tests.packaging.rbac import assert_granted, calls, sent_by

pytestmark = pytest.mark.slow  # two speakers and two node agents as processes


def node(name: str, address: str, role: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"role": role}},
        "spec": {"podCIDRs": [f"10.244.{name[-1]}.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]},
    }


SECRET_NAMESPACE = "kubgp-system"  # the chart's release namespace


def peer(
    name: str, selector: dict[str, str] | None = None, password: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"peerAddress": loopback_address(), "peerASN": 65000,
                            "connectRetryTimeSeconds": 30}  # fmt: skip
    if selector is not None:
        spec["nodeSelector"] = {"matchLabels": selector}
    if password is not None:
        spec["passwordSecretRef"] = {"namespace": SECRET_NAMESPACE, "name": password,
                                     "key": "password"}  # fmt: skip
    return {"apiVersion": "kubgp.io/v1alpha1", "kind": "BGPPeer",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def test_each_agent_writes_only_its_own_node_state(
    kube_api: KubeAPI, procs: Callable[[Path], Procs]
) -> None:
    p = procs(kube_api.kubeconfig)
    addresses = {"n1": loopback_address(), "n2": loopback_address()}
    kube_api.apply(node("n1", addresses["n1"], "leaf"))
    kube_api.apply(node("n2", addresses["n2"], "border"))
    kube_api.apply(peer("tor-all"))
    kube_api.apply(peer("tor-border", {"role": "border"}, password="border-password"))
    kube_api.apply({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": SECRET_NAMESPACE}})  # fmt: skip
    kube_api.apply({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "border-password", "namespace": SECRET_NAMESPACE},
                    "data": {"password": "czNjcmV0"}})  # fmt: skip
    for name in ("n1", "n2"):
        speaker, sock = p.speaker(f"speaker-{name}")
        speaker.start()
        p.agent(name, sock, metrics_port=free_port(), name=f"agent-{name}").start()

    def state(name: str) -> dict[str, Any] | None:
        obj = kube_api.get("BGPNodeState", name)
        return None if obj is None else obj.get("status") or None

    n1 = wait_for(lambda: state("n1"), "n1's BGPNodeState")
    n2 = wait_for(lambda: state("n2"), "n2's BGPNodeState")
    assert n1["routerId"] == addresses["n1"] and n2["routerId"] == addresses["n2"]
    assert [x["name"] for x in n1["peers"]] == ["tor-all"]
    assert [x["name"] for x in n2["peers"]] == ["tor-all", "tor-border"]
    assert n1["establishedPeers"] == n2["establishedPeers"] == 0

    writes = kube_api.writes()
    created = sorted(body["metadata"]["name"] for method, _, body in writes if method == "POST")
    assert created == ["n1", "n2"]
    assert {path for _, path, _ in writes} == {
        "/apis/kubgp.io/v1alpha1/bgpnodestates",
        "/apis/kubgp.io/v1alpha1/bgpnodestates/n1/status",
        "/apis/kubgp.io/v1alpha1/bgpnodestates/n2/status",
    }
    node_reads = {
        r.params.get("fieldSelector") for r in kube_api.requests if r.url.path == "/api/v1/nodes"
    }
    assert node_reads == {"metadata.name=n1", "metadata.name=n2"}
    # Secrets are neither watched nor listed: n2's agent GETs the one its peer references.
    secrets = {(c.verb, c.namespace, c.name) for c in calls(kube_api.requests)
               if c.resource == "secrets"}  # fmt: skip
    assert secrets == {("get", SECRET_NAMESPACE, "border-password")}
    # Every request of both agents is granted to the chart's node ServiceAccount once the
    # peer's Secret is listed (rbac.peerSecrets), and not without (the default reads none).
    theirs = sent_by(kube_api.requests, "kubgp-node-agent/", "kopf/")
    assert len(theirs) == len(kube_api.requests)  # the test itself talks to it in-process
    listed = {"namespace": SECRET_NAMESPACE, "name": "border-password"}
    assert_granted(theirs, component="node", values={"rbac": {"peerSecrets": [listed]}})
    for values in ({}, {"rbac": {"peerSecrets": [{**listed, "name": "x"}]}}):
        with pytest.raises(AssertionError, match="get secrets 'border-password'"):
            assert_granted(theirs, component="node", values=values)
