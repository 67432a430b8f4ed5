"""The node agent's memory for a large cluster (issue 18): the real `kubgp-controller node`
process (real kopf, the real `kubernetes` client) against the emulated API server seeded with
5,000 Nodes, 10,000 Services (half eTP Local) and their EndpointSlices (5 endpoints each),
20 BGPPeers and 10 BGPAdvertisements; no speaker (the agent plans and keeps retrying the
socket). Printed, never asserted:

- the agent's RSS (/proc/PID/status VmRSS) and peak (VmHWM) once it has planned and its
  memory stopped growing, for that cluster and for an empty one (the interpreter and the
  libraries); their difference is what the cluster costs the agent;
- how long the initial listing took until the first plan (at full size this is mostly the
  emulator: it renders every object of a kind for each page of a paged LIST, so paging through
  10,000 objects costs it quadratic time; a real API server serves a page at the cost of a
  page);
- in this process, with tracemalloc: what the watched objects take as the API serves them
  (decoded JSON, as kopf hands them to handlers and indexes) and as the planner's snapshot.

The objects are shaped as a real cluster serves them, not minimal: Services created by
`kubectl apply` (the last-applied-configuration annotation, managedFields for kubectl and the
status writer), EndpointSlices as the endpointslice controller writes them (ownerReferences,
targetRefs, zones, ports, managedFields); uid, resourceVersion and creationTimestamp come from
the emulator. The agent only ever sees its own Node (field selector).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.domain.snapshot import Snapshot
from testing.kube.emulator import KubeAPI
from testing.procs import Proc, free_port, probe

Raw = dict[str, Any]
RACKS = 10
NAMESPACES = 50
STAMP = "2026-01-01T00:00:00Z"


def node(i: int) -> Raw:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": f"node-{i}",
            "labels": {
                "rack": f"r{i % RACKS}",
                "kubernetes.io/hostname": f"node-{i}",
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": f"zone-{i % 3}",
            },
        },
        "spec": {"podCIDRs": [f"10.{64 + i // 256}.{i % 256}.0/24"]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": f"127.1.{i // 256}.{i % 256}"},
                {"type": "Hostname", "address": f"node-{i}"},
            ]
        },
    }


def _managed(manager: str, fields: Raw, subresource: str | None = None) -> Raw:
    entry: Raw = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "v1",
        "time": STAMP,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def service(i: int) -> Raw:
    name, namespace = f"svc-{i}", f"ns-{i % NAMESPACES}"
    app = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": f"release-{i % 97}"}
    labels = {**app, "app.kubernetes.io/part-of": "shop", "tier": ("web", "api", "db")[i % 3]}
    local = i % 2 == 0
    spec: Raw = {
        "type": "LoadBalancer",
        "selector": app,
        "ports": [
            {
                "name": "http",
                "port": 80,
                "protocol": "TCP",
                "targetPort": 8080,
                "nodePort": 30000 + i % 2000,
            },
            {
                "name": "metrics",
                "port": 9090,
                "protocol": "TCP",
                "targetPort": 9090,
                "nodePort": 32000 + i % 700,
            },
        ],
        "externalTrafficPolicy": "Local" if local else "Cluster",
    }
    applied = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied) + "\n"
            },
            "managedFields": [
                _managed(
                    "kubectl-client-side-apply",
                    {
                        "f:metadata": {
                            "f:annotations": {
                                ".": {},
                                "f:kubectl.kubernetes.io/last-applied-configuration": {},
                            },
                            "f:labels": {".": {}, **{f"f:{k}": {} for k in labels}},
                        },
                        "f:spec": {
                            "f:externalTrafficPolicy": {},
                            "f:ports": {
                                ".": {},
                                'k:{"port":80,"protocol":"TCP"}': {
                                    ".": {},
                                    "f:name": {},
                                    "f:port": {},
                                    "f:protocol": {},
                                    "f:targetPort": {},
                                },
                                'k:{"port":9090,"protocol":"TCP"}': {
                                    ".": {},
                                    "f:name": {},
                                    "f:port": {},
                                    "f:protocol": {},
                                    "f:targetPort": {},
                                },
                            },
                            "f:selector": {},
                            "f:type": {},
                        },
                    },
                ),
                _managed(
                    "kubgp-controller",
                    {"f:status": {"f:loadBalancer": {"f:ingress": {}}}},
                    subresource="status",
                ),
            ],
        },
        "spec": {
            **spec,
            "clusterIP": f"10.96.{i // 256}.{i % 256}",
            "clusterIPs": [f"10.96.{i // 256}.{i % 256}"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "allocateLoadBalancerNodePorts": True,
            **({"healthCheckNodePort": 31000 + i % 1000} if local else {}),
        },
        "status": {
            "loadBalancer": {"ingress": [{"ip": f"198.18.{i // 256}.{i % 256}", "ipMode": "VIP"}]}
        },
    }


def endpoint_slice(i: int, nodes: int, per_service: int) -> Raw:
    name, namespace = f"svc-{i}", f"ns-{i % NAMESPACES}"
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-{i % 99991:05x}",
            "generateName": f"{name}-",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/instance": f"release-{i % 97}",
            },
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": STAMP},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": name,
                    "uid": f"00000000-0000-4000-8000-{i:012d}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                },
            ],
            "managedFields": [
                _managed(
                    "kube-controller-manager",
                    {
                        "f:addressType": {},
                        "f:endpoints": {},
                        "f:metadata": {
                            "f:annotations": {
                                ".": {},
                                "f:endpoints.kubernetes.io/last-change-trigger-time": {},
                            },
                            "f:generateName": {},
                            "f:labels": {
                                ".": {},
                                "f:endpointslice.kubernetes.io/managed-by": {},
                                "f:kubernetes.io/service-name": {},
                            },
                            "f:ownerReferences": {".": {}, f'k:{{"uid":"{i}"}}': {}},
                        },
                        "f:ports": {},
                    },
                )
            ],
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [f"10.{64 + j}.{i // 256}.{i % 256}"],
                "conditions": {"ready": j != 0, "serving": True, "terminating": j == 0},
                "nodeName": f"node-{(i * 7 + j * 131) % nodes}",
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": f"{name}-7d9f8b6c5d-{j:05d}",
                    "uid": f"11111111-0000-4000-8000-{i * 8 + j:012d}",
                },
                "zone": f"zone-{j % 3}",
            }
            for j in range(per_service)
        ],
        "ports": [
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "protocol": "TCP"},
        ],
    }


def crds(peers: int) -> list[Raw]:
    out: list[Raw] = [
        {
            "apiVersion": "kubgp.io/v1alpha1",
            "kind": "BGPPeer",
            "metadata": {"name": f"tor-{k}", "labels": {"side": "ab"[k % 2]}},
            "spec": {
                "peerAddress": f"127.0.0.{k + 2}",
                "peerASN": 65000 + k // 2,
                "families": ["ipv4-unicast"],
                "nodeSelector": {"matchLabels": {"rack": f"r{(k // 2) % RACKS}"}},
            },
        }
        for k in range(peers)
    ]
    ads: list[tuple[str, Raw]] = [
        ("pods", {"podCIDRs": True}),
        ("lb", {"serviceAddresses": ["LoadBalancerIP"], "communities": ["64512:100"]}),
        ("web", {"serviceAddresses": ["LoadBalancerIP"],
                 "serviceSelector": {"matchLabels": {"tier": "web"}}, "localPreference": 200}),
        ("api-a", {"serviceAddresses": ["LoadBalancerIP"],
                   "serviceSelector": {"matchLabels": {"tier": "api"}},
                   "peerSelector": {"matchLabels": {"side": "a"}}, "med": 10}),
        ("cluster-ips", {"serviceAddresses": ["ClusterIP"], "namespaces": ["ns-1", "ns-2"]}),
        ("aggregate", {"serviceAddresses": ["LoadBalancerIP"], "aggregationLengthIPv4": 24,
                       "nodeSelector": {"matchLabels": {"rack": "r0"}}}),
        ("db-large", {"serviceAddresses": ["LoadBalancerIP"], "largeCommunities": ["64512:1:1"],
                      "serviceSelector": {"matchLabels": {"tier": "db"}}}),
        ("rack1-only", {"podCIDRs": True, "nodeSelector": {"matchLabels": {"rack": "r1"}}}),
        ("no-export", {"serviceAddresses": ["LoadBalancerIP"], "communities": ["no-export"],
                       "namespaces": [f"ns-{k}" for k in range(10)]}),
        ("external", {"serviceAddresses": ["ExternalIP"]}),
    ]  # fmt: skip
    out += [
        {"apiVersion": "kubgp.io/v1alpha1", "kind": "BGPAdvertisement",
         "metadata": {"name": name}, "spec": spec}
        for name, spec in ads
    ]  # fmt: skip
    return out


def cluster(nodes: int, services: int, per_service: int) -> list[Raw]:
    objects: list[Raw] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{k}"}}
        for k in range(NAMESPACES)
    ]
    objects += [node(i) for i in range(nodes)]
    objects += crds(20)
    for i in range(services):
        objects.append(service(i))
        objects.append(endpoint_slice(i, nodes, per_service))
    return objects


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _wait(probe_fn: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe_fn():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def measure_agent(objects: list[Raw], workdir: Path, timeout: float) -> tuple[float, int, int]:
    """(seconds from start to the first plan, settled RSS kB, peak RSS kB) of a real agent
    for node-0 against an emulator holding `objects`."""
    with KubeAPI.running(bookmark_interval=60) as api:
        for obj in objects:
            api.apply(obj)
        health = free_port()
        argv = [sys.executable, "-m", "controller.cli.kubgp_controller", "node",
                "--node-name", "node-0", "--speaker-socket", str(workdir / "none.sock"),
                "--health-address", f"127.0.0.1:{health}", "--log-level", "warning"]  # fmt: skip
        env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "PYTHONUNBUFFERED": "1"}
        agent = Proc("agent", argv, workdir / "agent.log", env).start()
        try:
            started = time.monotonic()
            _wait(
                lambda: (probe(health, "/readyz") or (0, ""))[1].startswith("NotAcked"),
                "the agent's first plan",
                timeout,
            )
            planned = time.monotonic() - started
            # kopf still runs the handlers of the initial listing after the first plan (they
            # change nothing): wait until the agent's memory stops growing.
            last, stable_since = _status(agent.pid)["VmRSS"], time.monotonic()
            while time.monotonic() - stable_since < 5 and time.monotonic() - started < timeout:
                time.sleep(0.5)
                rss = _status(agent.pid)["VmRSS"]
                if rss > last * 1.01:
                    last, stable_since = rss, time.monotonic()
            status = _status(agent.pid)
            if not agent.running():
                raise RuntimeError(f"the agent died:\n{agent.log()[-3000:]}")
            return planned, status["VmRSS"], status["VmHWM"]
        finally:
            agent.stop()


def _traced(fn: Callable[[], object]) -> tuple[object, float]:
    """fn's result and the MB it holds on to (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return result, (after - before) / 1e6


def _sizes(watched: list[Raw]) -> None:
    text = json.dumps(watched)
    print(f"  as JSON from the API: {len(text) / 1e6:.1f} MB")
    decoded, decoded_mb = _traced(lambda: json.loads(text))
    _, snapshot_mb = _traced(lambda: Snapshot.build(decoded))  # type: ignore[arg-type]
    print(f"  decoded (what kopf hands over, per object a dict tree): {decoded_mb:6.1f} MB")
    print(f"  the planner's snapshot of them (views and facts):        {snapshot_mb:6.1f} MB")


def run(short: bool) -> None:
    nodes, services, per_service = (50, 200, 5) if short else (5000, 10000, 5)
    timeout = 120.0 if short else 900.0
    objects = cluster(nodes, services, per_service)
    watched = [o for o in objects if o["kind"] not in ("Namespace", "Node")]
    watched.append(node(0))
    print(
        f"cluster: {nodes} Nodes (the agent sees its own), {services} Services (half eTP "
        f"Local), {services} EndpointSlices ({services * per_service} endpoints), 20 BGPPeers, "
        f"10 BGPAdvertisements: {len(watched)} objects the agent watches"
    )
    _sizes(watched)

    with tempfile.TemporaryDirectory(prefix="kubgp-agent-memory-") as tmp:
        empty_plan, empty_rss, empty_peak = measure_agent([node(0), *crds(20)], Path(tmp), timeout)
        planned, rss, peak = measure_agent(objects, Path(tmp), timeout)
    print(f"agent, empty cluster (its own Node, peers, advertisements): RSS {empty_rss / 1e3:6.1f}"
          f" MB, peak {empty_peak / 1e3:6.1f} MB, first plan after {empty_plan:.1f} s")  # fmt: skip
    print(f"agent, this cluster:                                        RSS {rss / 1e3:6.1f}"
          f" MB, peak {peak / 1e3:6.1f} MB, first plan after {planned:.1f} s")  # fmt: skip
    print(
        f"  what the cluster costs the agent: {(rss - empty_rss) / 1e3:.1f} MB "
        f"(peak {(peak - empty_peak) / 1e3:.1f} MB)"
    )
