"""Planner on a synthetic cluster (issue 4): 5,000 nodes, 10,000 Services (half eTP Local),
50,000 endpoints, 20 peers, 10 advertisements. Times one node's plan from scratch and after one
Service changes. Aims: < 100 ms from scratch, < 10 ms incremental. Prints, never asserts.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from controller.domain.planner import NodePlanner, plan
from controller.domain.snapshot import Snapshot

Raw = dict[str, Any]
RACKS = 10


def _node(i: int) -> Raw:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"node-{i}", "labels": {"rack": f"r{i % RACKS}"}},
        "spec": {"podCIDRs": [f"10.{64 + i // 256}.{i % 256}.0/24", f"fd00:{i:x}::/64"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": f"172.16.{i // 256}.{i % 256}"}]
        },
    }


def _service(i: int, generation: int = 0) -> Raw:
    local = i % 2 == 0
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"svc-{i}",
            "namespace": f"ns-{i % 50}",
            "labels": {"tier": ("web", "api", "db")[i % 3], "gen": str(generation)},
        },
        "spec": {
            "type": "LoadBalancer",
            "clusterIPs": [f"10.96.{i // 256}.{i % 256}"],
            "externalTrafficPolicy": "Local" if local else "Cluster",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": f"198.18.{i // 256}.{i % 256}"}]}},
    }


def _slice(i: int, nodes: int, per_service: int) -> Raw:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i}-abc",
            "namespace": f"ns-{i % 50}",
            "labels": {"kubernetes.io/service-name": f"svc-{i}"},
        },
        "endpoints": [
            {
                "addresses": [f"10.128.{j}.{i % 256}"],
                "nodeName": f"node-{(i * 7 + j * 131) % nodes}",
                "conditions": {"ready": j != 0, "serving": True, "terminating": j == 0},
            }
            for j in range(per_service)
        ],
    }


def _peers(count: int) -> list[Raw]:
    return [
        {
            "apiVersion": "kubgp.io/v1alpha1",
            "kind": "BGPPeer",
            "metadata": {"name": f"tor-{k}", "labels": {"side": "ab"[k % 2]}},
            "spec": {
                "peerAddress": f"192.0.2.{k + 1}",
                "peerASN": 65000 + k // 2,
                "families": ["ipv4-unicast", "ipv6-unicast"],
                "nodeSelector": {"matchLabels": {"rack": f"r{(k // 2) % RACKS}"}},
            },
        }
        for k in range(count)
    ]


def _advertisements() -> list[Raw]:
    def ad(name: str, **spec: Any) -> Raw:
        return {
            "apiVersion": "kubgp.io/v1alpha1",
            "kind": "BGPAdvertisement",
            "metadata": {"name": name},
            "spec": spec,
        }

    return [
        ad("pods", podCIDRs=True),
        ad("lb", serviceAddresses=["LoadBalancerIP"], communities=["64512:100"]),
        ad(
            "web",
            serviceAddresses=["LoadBalancerIP"],
            serviceSelector={"matchLabels": {"tier": "web"}},
            localPreference=200,
        ),
        ad(
            "api-a",
            serviceAddresses=["LoadBalancerIP"],
            serviceSelector={"matchLabels": {"tier": "api"}},
            peerSelector={"matchLabels": {"side": "a"}},
            med=10,
        ),
        ad("cluster-ips", serviceAddresses=["ClusterIP"], namespaces=["ns-1", "ns-2"]),
        ad(
            "aggregate",
            serviceAddresses=["LoadBalancerIP"],
            aggregationLengthIPv4=24,
            nodeSelector={"matchLabels": {"rack": "r0"}},
        ),
        ad(
            "db-large",
            serviceAddresses=["LoadBalancerIP"],
            largeCommunities=["64512:1:1"],
            serviceSelector={
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]
            },
        ),
        ad("rack1-only", podCIDRs=True, nodeSelector={"matchLabels": {"rack": "r1"}}),
        ad(
            "no-export",
            serviceAddresses=["LoadBalancerIP"],
            communities=["no-export"],
            namespaces=[f"ns-{k}" for k in range(10)],
        ),
        ad("external", serviceAddresses=["ExternalIP"]),
    ]


class _FullCollections:
    """Counts the collector's full (generation 2) passes while it is installed."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.count += 1


def _time_ms(
    fn: Callable[[], object], repeat: int, *, collect_first: bool = False
) -> tuple[float, object, list[float], int]:
    """Median ms, the last result, every run's ms, and how many runs paid for a full
    collection. `collect_first`: gc.collect() before each run (outside the timing), so that no
    run pays for a full collection owed to the garbage of the runs before it."""
    times = []
    result: object = None
    full = _FullCollections()
    gc.callbacks.append(full)
    paid = 0
    try:
        for _ in range(repeat):
            if collect_first:
                gc.collect()
            before = full.count
            start = time.perf_counter()
            result = fn()
            times.append((time.perf_counter() - start) * 1000)
            paid += full.count > before
    finally:
        gc.callbacks.remove(full)
    return statistics.median(times), result, times, paid


def run(short: bool) -> None:
    nodes, services, per_service, peers = (50, 100, 5, 20) if short else (5000, 10000, 5, 20)
    raws: list[Raw] = [_node(i) for i in range(nodes)]
    raws += [_service(i) for i in range(services)]
    raws += [_slice(i, nodes, per_service) for i in range(services)]
    raws += _peers(peers) + _advertisements()
    start = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i
    print(
        f"calibration: 1M-iteration Python loop takes {(time.perf_counter() - start) * 1000:.1f} ms"
    )
    print(
        f"cluster: {nodes} nodes, {services} Services (half eTP Local), "
        f"{services * per_service} endpoints, {peers} peers, 10 advertisements"
    )
    build_ms, snap, _, _ = _time_ms(lambda: Snapshot.build(raws), 1)
    assert isinstance(snap, Snapshot)
    print(f"snapshot build (parse + index all objects): {build_ms:8.1f} ms")

    target = "node-0"  # rack r0: two peers, the aggregating advertisement applies too
    repeat = 3 if short else 7
    plan(snap, target)  # warm the planner's module-level caches (prefix parsing and order)
    scratch_ms, result, _, _ = _time_ms(lambda: plan(snap, target), repeat, collect_first=True)
    state = result.state  # type: ignore[attr-defined]
    print(
        f"plan {target} from scratch:                  {scratch_ms:8.2f} ms "
        f"({len(state.advertisements)} prefixes, {len(state.peers)} peers, "
        f"{len(result.reasons)} reasons)"  # type: ignore[attr-defined]
    )

    # Without a collection before each run, a full collection of the long-lived heap (the
    # snapshot and the raw objects, ~100 ms here) falls on whichever run crosses the
    # collector's threshold: every second or third run. An agent can gc.freeze() after its
    # initial sync so that full collections no longer walk the snapshot.
    _, _, times, paid = _time_ms(lambda: plan(snap, target), repeat)
    print(
        f"plan {target} from scratch, GC as it falls:  "
        f"{' '.join(f'{t:.0f}' for t in times)} ms ({paid} of {repeat} ran a full collection)"
    )
    gc.collect()
    gc.freeze()
    frozen_ms, _, _, _ = _time_ms(lambda: plan(snap, target), repeat)
    print(f"plan {target} from scratch, after gc.freeze(): {frozen_ms:8.2f} ms")
    gc.unfreeze()

    planner = NodePlanner(target)
    planner.plan(snap)
    apply_times, plan_times = [], []
    current = snap
    for gen in range(1, 21):
        changed = _service(2 * gen, generation=gen)  # an eTP Local Service changes
        changed["spec"]["externalTrafficPolicy"] = "Cluster" if gen % 2 else "Local"
        start = time.perf_counter()
        current = current.apply(upserts=[changed])
        mid = time.perf_counter()
        planner.plan(current)
        end = time.perf_counter()
        apply_times.append((mid - start) * 1000)
        plan_times.append((end - mid) * 1000)
    print(
        f"one Service changes: snapshot.apply            {statistics.median(apply_times):8.2f} ms"
    )
    print(
        f"one Service changes: replan {target} (cached)   {statistics.median(plan_times):8.2f} ms"
    )
    print(
        "one Service changes: total                    "
        f"{statistics.median(a + p for a, p in zip(apply_times, plan_times, strict=True)):8.2f} ms"
    )
