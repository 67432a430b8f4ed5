"""Planner on a synthetic cluster (issues 4 and 18): 5,000 nodes, 10,000 Services (half eTP
Local), 50,000 endpoints, 20 peers, 10 advertisements. Times the snapshot build, one node's
plan from scratch and one Service change (snapshot.apply + the node's incremental replan).
Aims (issue 18): build <= 0.5 s, from scratch <= 50 ms with no GC outliers, a change <= 2 ms.
Prints, never asserts.

Every series prints min / median / max of the wall time over its runs, the median CPU time of
the thread (quote that one when other processes share the cores: the wall time then also
counts the time the thread waited for a core), how many runs ran a full (generation 2)
collection and what those collections cost, and how many runs were outliers (CPU time over
1.5x the series' median CPU time: a collection or a cold cache, not the neighbours). Two heap
policies:

- "agent": what the node agent does (controller.agent.heap): the bulk build and the first
  plan with the collector paused, then one collection and `gc.freeze()`, so later full
  collections walk only what changed since;
- "default": CPython's collector as it is, nothing frozen (what issue 18 measured: a full
  collection of the ~400k-object heap landing on every second or third plan).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.agent.heap import collector_paused, settle
from controller.domain.planner import NodePlanner, plan
from controller.domain.snapshot import Snapshot
from speaker.api.schema import prefix_sort_key

Raw = dict[str, Any]
RACKS = 10
OUTLIER = 1.5  # a run over this many times the series' median

# Measured with this benchmark on 53dff45 (before issue 18's planner work), on this machine,
# alternating with runs of the new code (docs/planner.md): CPU ms, the mean of four runs'
# medians (the calibration loop took 56-87 ms then: the machine was shared).
BEFORE = {
    "first plan in the process (cold caches)": 190.0,
    "snapshot build, default collector": 925.0,
    "snapshot build, agent's policy": 680.0,
    "plan from scratch, agent's policy": 113.0,
    "plan from scratch, default collector": 143.0,
    "one Service change (apply + replan)": 6.9,
}


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


def cluster(nodes: int, services: int, per_service: int, peers: int) -> list[Raw]:
    raws: list[Raw] = [_node(i) for i in range(nodes)]
    raws += [_service(i) for i in range(services)]
    raws += [_slice(i, nodes, per_service) for i in range(services)]
    return raws + _peers(peers) + _advertisements()


class _FullCollections:
    """Counts the collector's full (generation 2) passes and their time while installed."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._start


@dataclass
class Series:
    """One timed operation, run after run: wall and thread CPU ms, full collections."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    full_runs: int = 0  # runs during which a full collection ran
    full_ms: float = 0.0  # what those collections took, in all

    def run(self, fn: Callable[[], object]) -> object:
        full = _FullCollections()
        gc.callbacks.append(full)
        try:
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            result = fn()
            wall1, cpu1 = time.perf_counter(), time.thread_time()
        finally:
            gc.callbacks.remove(full)
        self.wall.append((wall1 - wall0) * 1000)
        self.cpu.append((cpu1 - cpu0) * 1000)
        self.full_runs += full.count > 0
        self.full_ms += full.seconds * 1000
        return result

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def outliers(self) -> int:
        return sum(1 for t in self.cpu if t > OUTLIER * self.cpu_median)

    def print(self) -> None:
        digits = 2 if self.median < 10 else 1
        print(
            f"{self.name:<48} {min(self.wall):8.{digits}f} {self.median:8.{digits}f} "
            f"{max(self.wall):8.{digits}f}  cpu {self.cpu_median:7.{digits}f}"
            f"  | {len(self.wall)} runs, {self.outliers} outliers, "
            f"{self.full_runs} with a full GC ({self.full_ms:.0f} ms)"
        )


def _changes(snap: Snapshot, target: str, count: int) -> tuple[Series, Series]:
    """One Service change after another: snapshot.apply, then the node's incremental plan."""
    change = Series("one Service change: apply + replan, agent's")
    apply = Series("  of which snapshot.apply")
    planner = NodePlanner(target)
    planner.plan(snap)
    current = snap
    for gen in range(1, count + 1):
        changed = _service(2 * gen, generation=gen)  # an eTP Local Service changes
        changed["spec"]["externalTrafficPolicy"] = "Cluster" if gen % 2 else "Local"

        def one_change(changed: Raw = changed) -> None:
            nonlocal current
            current = apply.run(lambda: current.apply(upserts=[changed]))  # type: ignore[assignment]
            planner.plan(current)

        change.run(one_change)
    return change, apply


def run(short: bool) -> None:
    nodes, services, per_service, peers = (50, 100, 5, 20) if short else (5000, 10000, 5, 20)
    repeat = 3 if short else 9
    raws = cluster(nodes, services, per_service, peers)
    start = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i
    print(
        f"calibration: 1M-iteration Python loop takes {(time.perf_counter() - start) * 1000:.1f} ms"
        " (~27-30 ms on a quiet machine)"
    )
    print(
        f"cluster: {nodes} nodes, {services} Services (half eTP Local), "
        f"{services * per_service} endpoints, {peers} peers, 10 advertisements"
    )
    print(f"{'ms (wall: min median max)':<48} {'min':>8} {'median':>8} {'max':>8}")
    target = "node-0"  # rack r0: two peers, the aggregating advertisement applies too

    # The first plan in a process also fills module-level caches (the speaker schema's
    # prefix order): what an agent's first plan pays, once.
    prefix_sort_key.cache_clear()
    with collector_paused():
        snap = Snapshot.build(raws)
        first = Series("first plan in the process (cold caches)")
        result = first.run(lambda: plan(snap, target))
    first.print()
    state = result.state  # type: ignore[attr-defined]
    print(
        f"  {target}: {len(state.advertisements)} prefixes, {len(state.peers)} peers, "
        f"{len(result.reasons)} reasons"  # type: ignore[attr-defined]
    )
    del snap

    builds = {"default": Series("snapshot build, default collector")}
    builds["agent"] = Series("snapshot build, agent's policy (collector paused)")
    for _ in range(max(3, repeat // 2)):
        for policy, series in builds.items():
            gc.collect()
            if policy == "agent":
                with collector_paused():
                    series.run(lambda: Snapshot.build(raws))
            else:
                series.run(lambda: Snapshot.build(raws))
    for series in builds.values():
        series.print()

    # The agent's heap: built with the collector paused, then settled (collected, frozen).
    with collector_paused():
        snap = Snapshot.build(raws)
    settle()
    scratch = Series("plan from scratch, agent's policy")
    for _ in range(repeat):
        scratch.run(lambda: plan(snap, target))
    scratch.print()

    change, apply = _changes(snap, target, 20 if short else 40)
    change.print()
    apply.print()
    gc.unfreeze()
    del snap

    # CPython's collector as it is: nothing frozen, the build's garbage collected first.
    snap = Snapshot.build(raws)
    gc.collect()
    default = Series("plan from scratch, default collector")
    for _ in range(repeat):
        default.run(lambda: plan(snap, target))
    default.print()

    if not short:
        print("before (53dff45, this benchmark; CPU ms, medians) -> now (CPU ms, medians):")
        after = {
            "first plan in the process (cold caches)": first.cpu_median,
            "snapshot build, default collector": builds["default"].cpu_median,
            "snapshot build, agent's policy": builds["agent"].cpu_median,
            "plan from scratch, agent's policy": scratch.cpu_median,
            "plan from scratch, default collector": default.cpu_median,
            "one Service change (apply + replan)": change.cpu_median,
        }
        for name, before in BEFORE.items():
            print(f"  {name:<46} {before:8.1f} -> {after[name]:8.1f}")
