"""Route reflection at cluster scale: N node speakers, 2 route reflectors, every node's pod CIDR
to every other node; time to converge, and the reflectors' CPU and memory.

The cluster is planned as the node agents would plan it (controller.domain.planner: N Nodes,
one BGPNodePeering with two reflectors), so every speaker runs the state its node would get:
iBGP sessions (the reflectors with everyone, each client with the two reflectors), its pod
CIDR announced, import rules for the other nodes' pod CIDRs. No `fib`: N speakers share one
kernel here, so what counts is each speaker's Loc-RIB (a node "has" a pod CIDR when it is
selected there, next hop resolved); the kernel side is measured in docs/route-import.md.

Where: one network namespace the benchmark creates, the N node addresses (198.51.100.1..N)
on one interface there: local addresses, so traffic between them takes the loopback path, as on
127/8, and the connected route resolves the next hops (loopback addresses are in the `local`
table only, where next-hop resolution does not look). Processes: each reflector alone (its CPU
and RSS are the figures), the clients packed several speakers to a process (`Speaker` objects
side by side in one event loop, as the code allows).

Time: from starting the processes (interpreters included) to the last node having every other
node's pod CIDR; also from the last process being up (its speakers applied) to that. CPU:
user + system of each reflector's whole life; RSS: its peak (VmHWM) and current. Figures and
what they led to: docs/in-cluster-routing.md. `--short`: 20 nodes, for the bench smoke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NS_PREFIX = "kgbench"
SUBNET = "198.51.100"
REFLECTORS = ("n1", "n2")
_TICK = os.sysconf("SC_CLK_TCK")


# --- the cluster, as planned ------------------------------------------------------------------


def pod_cidr(i: int) -> str:
    return f"10.{i // 256}.{i % 256}.0/24"


def planned_states(n: int) -> dict[str, dict[str, Any]]:
    """Every node's desired state (as documents), from Nodes and one BGPNodePeering."""
    from controller.domain.planner import NodePlanner
    from controller.domain.snapshot import Snapshot

    objects: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        name = f"n{i}"
        labels = {"kubgp.io/route-reflector": "true"} if name in REFLECTORS else {}
        objects.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"podCIDRs": [pod_cidr(i)]},
            "status": {"addresses": [{"type": "InternalIP", "address": f"{SUBNET}.{i}"}]},
        })  # fmt: skip
    objects.append({
        "apiVersion": "kubgp.io/v1alpha1", "kind": "BGPNodePeering",
        "metadata": {"name": "cluster"},
        "spec": {"routeReflectors": {"nodeSelector": {"matchLabels": {
            "kubgp.io/route-reflector": "true"}}},
            "connectRetryTimeSeconds": 1},
    })  # fmt: skip
    snapshot = Snapshot.build(objects)
    out = {}
    for i in range(1, n + 1):
        state = NodePlanner(f"n{i}").plan(snapshot).state
        assert state is not None
        out[f"n{i}"] = state.to_dict()
    return out


# --- a worker: several speakers in one process ------------------------------------------------


async def _worker(docs: list[dict[str, Any]], wants: list[list[str]], report: Path) -> None:
    from speaker.api.schema import parse_desired_state
    from speaker.bgp.wire.nlri import prefix_to_str
    from speaker.daemon import Speaker

    began = time.time()
    speakers = []
    for doc in docs:
        speaker = Speaker()
        await speaker.apply(parse_desired_state(doc))
        speakers.append(speaker)
    applied = time.time()

    def has_all(s: Speaker, want: set[str]) -> bool:
        """Every other node's pod CIDR selected in the Loc-RIB (its next hop resolved)."""
        rib = s.routes.rib
        if rib is None or len(rib) < len(want):
            return False
        return {prefix_to_str(p, f[0]) for f in rib.families() for p in rib.table(f)} >= want

    waiting = [(s, set(w)) for s, w in zip(speakers, wants, strict=True)]
    while waiting:
        waiting = [(s, w) for s, w in waiting if not has_all(s, w)]
        await asyncio.sleep(0.02)
    report.write_text(json.dumps({"began": began, "applied": applied, "done": time.time()}))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for speaker in speakers:
        await speaker.close(timeout=1.0)


def worker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--states", type=Path, required=True)
    p.add_argument("--report", type=Path, required=True)
    args = p.parse_args(argv)
    work = json.loads(args.states.read_text())
    asyncio.run(_worker(work["states"], work["wants"], args.report))
    return 0


# --- the run ------------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _rss(pid: int, key: str) -> int:
    match = re.search(rf"{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


def _python_pid(wrapper: subprocess.Popen[bytes]) -> int:
    """`ip netns exec` execs the command, so the process is the interpreter itself."""
    return wrapper.pid


def measure(n: int, client_workers: int) -> dict[str, Any]:
    states = planned_states(n)
    pod_cidrs = {f"n{i}": pod_cidr(i) for i in range(1, n + 1)}
    netns = f"{NS_PREFIX}{os.getpid() % 100000}"
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    with tempfile.TemporaryDirectory(prefix="kubgp-bench-rr-") as tmp_text:
        tmp = Path(tmp_text)
        _ip("netns", "add", netns)
        try:
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "link", "add", "nodes", "type", "veth", "peer", "name", "nodes-peer")
            _ip("-n", netns, "link", "set", "nodes-peer", "up")
            _ip("-n", netns, "link", "set", "nodes", "up")
            for i in range(1, n + 1):
                _ip("-n", netns, "addr", "add", f"{SUBNET}.{i}/24", "dev", "nodes")
            clients = [name for name in states if name not in REFLECTORS]
            groups: list[tuple[str, list[str]]] = [(r, [r]) for r in REFLECTORS]
            per = -(-len(clients) // client_workers)
            for k in range(client_workers):
                part = clients[k * per : (k + 1) * per]
                if part:
                    groups.append((f"clients{k}", part))
            started = time.time()
            for label, names in groups:
                docs = tmp / f"{label}.json"
                docs.write_text(json.dumps({
                    "states": [states[name] for name in names],
                    "wants": [[c for other, c in pod_cidrs.items() if other != name]
                              for name in names],
                }))  # fmt: skip
                report = tmp / f"{label}.report"
                log = (tmp / f"{label}.log").open("wb")
                argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "benchmarks.bench_rr",
                        "--worker", "--states", str(docs), "--report", str(report)]  # fmt: skip
                procs.append((label, subprocess.Popen(argv, stdout=log, stderr=log), report))
            deadline = time.time() + 600
            while not all(r.exists() for _, _, r in procs):
                for label, proc, _ in procs:
                    if proc.poll() is not None:
                        log_text = (tmp / f"{label}.log").read_text()[-3000:]
                        raise RuntimeError(f"worker {label} ended ({proc.returncode}):\n{log_text}")
                if time.time() > deadline:
                    raise RuntimeError("no convergence within 600 s")
                time.sleep(0.05)
            reports = {label: json.loads(r.read_text()) for label, _, r in procs}
            done = max(r["done"] for r in reports.values())
            applied = max(r["applied"] for r in reports.values())
            figures: dict[str, Any] = {
                "nodes": n,
                "processes": len(procs),
                "start_to_all": done - started,
                "started": max(r["began"] for r in reports.values()) - started,
                "applied": applied - started,
                "applied_to_all": done - applied,
            }
            for label, proc, _ in procs:
                if label in REFLECTORS:
                    pid = _python_pid(proc)
                    figures[label] = {
                        "cpu": _cpu_seconds(pid),
                        "peak_rss": _rss(pid, "VmHWM"),
                        "rss": _rss(pid, "VmRSS"),
                    }
            return figures
        finally:
            for _, proc, _ in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for _, proc, _ in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True,
                           timeout=30)  # fmt: skip


def run(short: bool) -> None:
    sizes = [(20, 2)] if short else [(200, 6)]
    for n, workers in sizes:
        f = measure(n, workers)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{f['nodes']} nodes (2 reflectors, {n - 2} clients in {workers} processes), "
              f"load average {load}:")  # fmt: skip
        print(f"  every node has every other node's pod CIDR {f['start_to_all']:.2f} s after "
              f"start: processes up by {f['started']:.2f} s, every state applied by "
              f"{f['applied']:.2f} s, and {f['applied_to_all']:.2f} s more")  # fmt: skip
        for r in REFLECTORS:
            x = f[r]
            mb = 2**20
            print(f"  reflector {r}: CPU {x['cpu']:.2f} s, "
                  f"peak RSS {x['peak_rss'] / mb:.1f} MB, RSS {x['rss'] / mb:.1f} MB")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.exit(worker_main(sys.argv[2:]))
    run(short="--short" in sys.argv)
