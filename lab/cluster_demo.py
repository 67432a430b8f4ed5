"""The lab: a sample cluster announcing itself to a top-of-rack router, on this machine.

    python -m lab [--once] [--timeout SECONDS] [--examples DIR]

It loads deploy/examples/ into the emulated Kubernetes API server (testing/kube, on 127.0.0.1 in
this namespace), builds one network namespace per Node and one for the ToR (a bridge there, a
veth per node, the addresses the manifests give), runs BIRD as the ToR with the BGPPeer's
address and ASN, and per node the real `kubgp-speaker run --socket` inside the node's namespace
and the real `kubgp-controller node` here (the Unix socket crosses namespaces; the API does
not have to). `kubgp-controller cluster` assigns the LoadBalancer addresses.

It prints what the ToR learned (per prefix: next hops, AS path, communities, and the ECMP
route BIRD put in the ToR's kernel table with `merge paths`) and each node's BGPNodeState, then
prints every change until Ctrl-C. `--once` prints once the routes match the cluster and exits
0, or exits 1 saying what is missing after `--timeout`. Everything it made (namespaces,
processes, by PID, and its temp dir) is removed on the way out, whatever the way out was.

The network is built once, from the manifests: a Node or BGPPeer added while it runs gets no
namespace and no BIRD session; everything else (Services, endpoints, advertisements, pools)
can change through the API server and shows at the ToR.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from testing.kube.emulator import KubeAPI
from testing.procs import Proc, SpeakerProcess
from testing.routers.bird import Bird
from testing.routers.model import ESTABLISHED, LabError, PeerSpec, Route
from testing.routers.netns import ip
from testing.wait import WaitTimeout, wait_for

Obj = dict[str, Any]

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"
DEFAULT_ASN = 64512  # the planner's default for a Node without a kubgp.io/asn annotation
POLL = 0.5


class LabSetupError(RuntimeError):
    """The lab cannot be built from these manifests on this machine."""


# -- the sample cluster -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    name: str
    address: str
    asn: int
    pod_cidrs: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TorSpec:
    address: str
    asn: int
    network: ipaddress.IPv4Network


def load_manifests(directory: Path) -> list[Obj]:
    objs: list[Obj] = []
    for path in sorted(directory.glob("*.yaml")):
        objs.extend(o for o in yaml.safe_load_all(path.read_text()) if o)
    if not objs:
        raise LabSetupError(f"no manifests in {directory}")
    return objs


def topology(objs: list[Obj]) -> tuple[TorSpec, list[NodeSpec]]:
    """The ToR from the one BGPPeer, the nodes from the Nodes; all on one IPv4 /24."""
    peers = [o for o in objs if o["kind"] == "BGPPeer"]
    if len(peers) != 1:
        raise LabSetupError(f"the lab runs one ToR: want one BGPPeer, found {len(peers)}")
    spec = peers[0]["spec"]
    network = ipaddress.IPv4Network(f"{spec['peerAddress']}/24", strict=False)
    tor = TorSpec(address=spec["peerAddress"], asn=int(spec["peerASN"]), network=network)
    nodes: list[NodeSpec] = []
    for obj in (o for o in objs if o["kind"] == "Node"):
        name = obj["metadata"]["name"]
        addresses = [
            a["address"]
            for a in obj.get("status", {}).get("addresses", [])
            if a["type"] == "InternalIP" and ":" not in a["address"]
        ]
        if not addresses or ipaddress.IPv4Address(addresses[0]) not in network:
            raise LabSetupError(f"Node {name}: needs an IPv4 InternalIP in {network}")
        asn = (obj["metadata"].get("annotations") or {}).get("kubgp.io/asn", DEFAULT_ASN)
        pod_cidrs = tuple(obj.get("spec", {}).get("podCIDRs", ()))
        nodes.append(NodeSpec(name=name, address=addresses[0], asn=int(asn), pod_cidrs=pod_cidrs))
    if not nodes:
        raise LabSetupError("no Node in the manifests")
    return tor, nodes


# -- the network --------------------------------------------------------------------------


class Fabric:
    """A ToR namespace with a bridge (the rack's L2), a namespace per node on it by a veth.

    Only documentation addresses, and only inside these namespaces. Deleting a namespace
    deletes its veth ends; `delete()` is safe to call twice and after a partial `create()`.
    """

    def __init__(self, tag: str, tor: TorSpec, nodes: list[NodeSpec]) -> None:
        self.tor_ns = f"{tag}-tor"
        self.node_ns = {n.name: f"{tag}-{n.name}" for n in nodes}
        self.tor = tor
        self.nodes = nodes
        self.created: list[str] = []

    def create(self) -> None:
        prefix = self.tor.network.prefixlen
        self._add_ns(self.tor_ns)
        ip("-n", self.tor_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.tor_ns, "addr", "add", f"{self.tor.address}/{prefix}", "dev", "br0")
        ip("-n", self.tor_ns, "link", "set", "br0", "up")
        for i, node in enumerate(self.nodes, 1):
            ns = self.node_ns[node.name]
            self._add_ns(ns)
            port = f"port{i}"
            veth = ["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns]
            ip("-n", self.tor_ns, *veth)
            ip("-n", self.tor_ns, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{node.address}/{prefix}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def _add_ns(self, name: str) -> None:
        ip("netns", "add", name)
        self.created.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def delete(self) -> list[str]:
        errors: list[str] = []
        for name in reversed(self.created):
            try:
                ip("netns", "del", name)
            except LabError as exc:
                errors.append(str(exc))
        self.created.clear()
        return errors


class EcmpBird(Bird):
    """BIRD as the ToR. Besides the lab's config it exports the BGP routes to its namespace's
    kernel table with `merge paths on`: equal routes from several nodes become one ECMP route,
    as a switch's FIB would hold them."""

    def _write_config(self) -> None:
        super()._write_config()
        conf = self.workdir / "bird.conf"
        kernel = (
            "protocol kernel {\n  ipv4 { import none; export where source = RTS_BGP; };\n"
            "  merge paths on;\n}\n"
        )
        conf.write_text(conf.read_text() + kernel)

    def fib(self) -> dict[str, tuple[str, ...]]:
        """The routes BIRD installed in the ToR's kernel: prefix -> next hops."""
        out = self.run_cli(
            ["ip", "-j", "-n", str(self.netns), "-4", "route", "show", "proto", "bird"]
        )
        table: dict[str, tuple[str, ...]] = {}
        for entry in json.loads(out or "[]"):
            dst = entry["dst"] if "/" in entry["dst"] else entry["dst"] + "/32"
            hops = [h.get("gateway") for h in entry.get("nexthops", [])] or [entry.get("gateway")]
            table[dst] = tuple(sorted((h for h in hops if h), key=ipaddress.IPv4Address))
        return table


# -- what the lab shows -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Learned:
    """One prefix at the ToR: the routes its node sessions brought, merged for display."""

    prefix: str
    next_hops: tuple[str, ...]
    as_paths: tuple[tuple[int, ...], ...]
    communities: tuple[str, ...]
    large_communities: tuple[str, ...]


def learned(tor: EcmpBird, nodes: list[NodeSpec]) -> dict[str, Learned]:
    routes: dict[str, list[Route]] = {}
    for node in nodes:
        for route in tor.received_routes(node.name):
            routes.setdefault(route.prefix, []).append(route)
    out: dict[str, Learned] = {}
    for prefix, rs in routes.items():
        out[prefix] = Learned(
            prefix=prefix,
            next_hops=tuple(sorted({r.next_hop or "?" for r in rs})),
            as_paths=tuple(sorted({r.as_path for r in rs})),
            communities=tuple(sorted({c for r in rs for c in r.communities})),
            large_communities=tuple(sorted({c for r in rs for c in r.large_communities})),
        )
    return out


def _net_key(prefix: str) -> tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]:
    net = ipaddress.ip_network(prefix)
    return net.version, net


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


TOR_HEADER = ["PREFIX", "NEXT HOPS", "AS PATH", "COMMUNITIES", "LARGE COMMUNITIES", "TOR FIB"]
NODE_HEADER = ["NODE", "ROUTER ID", "ASN", "GENERATION", "PEER", "STATE", "SINCE", "ADVERTISED"]


@dataclass(frozen=True, slots=True, kw_only=True)
class View:
    """One look at the lab: the ToR's routes and kernel ECMP routes, the BGPNodeStates."""

    tor: TorSpec
    routes: list[list[str]]
    kernel: list[str]
    node_states: list[list[str]]

    def text(self) -> list[str]:
        lines = [f"ToR {self.tor.address} (BIRD, AS {self.tor.asn}) learned:"]
        lines += _table([TOR_HEADER, *self.routes]) if self.routes else ["  (nothing)"]
        lines += self.kernel
        return [
            *lines,
            "",
            "BGPNodeState (from the API server):",
            *_table([NODE_HEADER, *self.node_states]),
        ]

    def records(self) -> list[str]:
        """One line per route, kernel route and node session, unpadded: what changes show."""
        return (
            ["ToR  " + "  ".join(r) for r in self.routes]
            + self.kernel
            + ["BGPNodeState  " + "  ".join(r) for r in self.node_states]
        )


def route_rows(
    nodes: list[NodeSpec], seen: dict[str, Learned], fib: dict[str, tuple[str, ...]]
) -> list[list[str]]:
    who = {n.address: n.name for n in nodes}
    rows: list[list[str]] = []
    for prefix in sorted(seen, key=_net_key):
        got = seen[prefix]
        hops = ", ".join(f"{h} ({who.get(h, '?')})" for h in got.next_hops)
        paths = " | ".join(" ".join(map(str, p)) for p in got.as_paths)
        installed = fib.get(prefix, ())
        kernel = f"ECMP x{len(installed)}" if len(installed) > 1 else f"{len(installed)} path"
        communities = " ".join(got.communities) or "-"
        rows.append(
            [prefix, hops, paths, communities, " ".join(got.large_communities) or "-", kernel]
        )
    return rows


def kernel_lines(fib: dict[str, tuple[str, ...]]) -> list[str]:
    multipath = {p: hops for p, hops in fib.items() if len(hops) > 1}
    return [
        f"ToR kernel (BIRD merge paths): {prefix} "
        + " ".join(f"nexthop via {h}" for h in multipath[prefix])
        for prefix in sorted(multipath, key=_net_key)
    ]


def node_state_rows(kube_api: KubeAPI, nodes: list[NodeSpec]) -> list[list[str]]:
    rows: list[list[str]] = []
    for node in nodes:
        obj = kube_api.get("BGPNodeState", node.name)
        status: Obj = (obj or {}).get("status") or {}
        base = [
            node.name,
            str(status.get("routerId", "-")),
            str(status.get("asn", "-")),
            str(status.get("appliedGeneration", "-")),
        ]
        for peer in status.get("peers") or [{}]:
            rows.append(
                [
                    *base,
                    f"{peer.get('name', '-')} {peer.get('address', '')}".strip(),
                    str(peer.get("state", "-")),
                    str(peer.get("since", "-")),
                    str(peer.get("prefixesAdvertised", "-")),
                ]
            )
    return rows


# -- convergence --------------------------------------------------------------------------


def _ours(service: Obj) -> bool:
    spec = service.get("spec", {})
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (
        None,
        "kubgp.io/bgp",
    )


def expected(kube_api: KubeAPI, nodes: list[NodeSpec]) -> tuple[dict[str, set[str]], list[str]]:
    """What the ToR should have learned (prefix -> next hops) from the cluster as it is now,
    and what is still pending (a Service without an address). Follows the sample's shape:
    pod CIDRs, and LoadBalancer addresses from ready local endpoints under eTP Local."""
    want: dict[str, set[str]] = {}
    pending: list[str] = []
    by_name = {n.name: n for n in nodes}
    for node in nodes:
        for cidr in node.pod_cidrs:
            want.setdefault(str(ipaddress.ip_network(cidr)), set()).add(node.address)
    for svc in kube_api.objects("Service"):
        if not _ours(svc):
            continue
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        if not ingress:
            pending.append(f"Service {namespace}/{name} has no LoadBalancer address yet")
            continue
        if svc["spec"].get("externalTrafficPolicy") == "Local":
            ready = {
                ep.get("nodeName")
                for es in kube_api.objects("EndpointSlice", namespace)
                if es["metadata"].get("labels", {}).get("kubernetes.io/service-name") == name
                for ep in es.get("endpoints", [])
                if ep.get("conditions", {}).get("ready", True)
            }
            hops = {by_name[n].address for n in ready if n in by_name}
        else:
            hops = {n.address for n in nodes}
        for item in ingress:
            if "ip" in item and hops:
                want[str(ipaddress.ip_network(item["ip"]))] = hops
    return want, pending


def missing(
    kube_api: KubeAPI,
    nodes: list[NodeSpec],
    seen: dict[str, Learned],
    fib: dict[str, tuple[str, ...]],
) -> list[str]:
    """Everything that keeps the lab from having converged; empty once it has."""
    want, problems = expected(kube_api, nodes)
    for prefix, hops in sorted(want.items()):
        got = set(seen[prefix].next_hops) if prefix in seen else set()
        if got != hops:
            problems.append(f"{prefix}: ToR has next hops {sorted(got)}, want {sorted(hops)}")
        elif len(hops) > 1 and set(fib.get(prefix, ())) != hops:
            problems.append(f"{prefix}: no ECMP route over {sorted(hops)} in the ToR's kernel")
    for prefix in sorted(set(seen) - set(want)):
        problems.append(f"{prefix}: the ToR has it but the cluster does not announce it")
    for node in nodes:
        status: Obj = (kube_api.get("BGPNodeState", node.name) or {}).get("status") or {}
        peers = status.get("peers") or []
        if not peers or any(p.get("state") != ESTABLISHED for p in peers):
            problems.append(f"BGPNodeState {node.name}: not every peer Established yet")
        else:
            mine = sum(1 for hops in want.values() if node.address in hops)
            if any(p.get("prefixesAdvertised") != mine for p in peers):
                problems.append(f"BGPNodeState {node.name}: not {mine} prefixes advertised yet")
    return problems


# -- running it ---------------------------------------------------------------------------


class Interrupted(Exception):
    """SIGTERM or SIGHUP: leave the way Ctrl-C does, through the teardown."""


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class TheLab:
    """Builds everything in `start()`; `close()` undoes whatever of it exists."""

    def __init__(self, kube_api: KubeAPI, objs: list[Obj], workdir: Path) -> None:
        self.kube_api = kube_api
        self.tor_spec, self.nodes = topology(objs)
        self.objs = objs
        self.workdir = workdir
        self.fabric = Fabric(f"kubgp-lab{os.getpid()}", self.tor_spec, self.nodes)
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kube_api.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "POD_NAME": "kubgp-lab-controller",
        }
        self.tor: EcmpBird | None = None
        self.procs: list[Proc] = []

    def start(self) -> None:
        for obj in self.objs:
            self.kube_api.apply(obj)
        self.fabric.create()
        say(f"lab: namespaces {' '.join(self.fabric.created)}; work dir {self.workdir}")
        self.tor = EcmpBird(
            name="tor",
            workdir=self.workdir / "tor",
            asn=self.tor_spec.asn,
            router_id=self.tor_spec.address,
            address=self.tor_spec.address,
            peers=[
                PeerSpec(
                    name=n.name, address=n.address, asn=n.asn, passive=True, hold_time=9, multihop=1
                )
                for n in self.nodes
            ],
            netns=self.fabric.tor_ns,
        )
        self.tor.start()
        say(f"lab: started bird pid {self.tor.pid} in {self.fabric.tor_ns}")
        # One replica with the default Lease timings; it takes the Lease at once (none exists).
        cluster = ["cluster", "--namespace", "kube-system", "--log-level", "info"]
        self._run(
            "cluster-controller",
            [sys.executable, "-m", "controller.cli.kubgp_controller", *cluster],
        )
        for node in self.nodes:
            d = self.workdir / node.name
            d.mkdir()
            sock = d / "speaker.sock"
            speaker = SpeakerProcess(
                d,
                self.fabric.node_ns[node.name],
                args=("--socket", str(sock), "--state-dir", str(d / "state")),
                env=self.env,
                name=f"{node.name}-speaker",
            )
            self._start(speaker)
            self._run(
                f"{node.name}-agent",
                [
                    sys.executable,
                    "-m",
                    "controller.cli.kubgp_controller",
                    "node",
                    "--node-name",
                    node.name,
                    "--speaker-socket",
                    str(sock),
                    "--status-interval",
                    "0.5",
                    "--status-min-interval",
                    "1",
                    "--log-level",
                    "info",
                ],
            )

    def _run(self, name: str, argv: list[str]) -> None:
        self._start(Proc(name, argv, self.workdir / f"{name}.log", self.env))

    def _start(self, proc: Proc) -> None:
        self.procs.append(proc)  # first: ended at close even if it fails to start
        proc.start()
        say(f"lab: started {proc.name} pid {proc.pid}")

    def dead(self) -> list[str]:
        gone = [f"{p.name} exited:\n{p.log()[-3000:]}" for p in self.procs if not p.running()]
        if self.tor is not None and not self.tor.running:
            gone.append(f"bird exited:\n{self.tor.log_tail()}")
        return gone

    def look(self) -> tuple[View, list[str]]:
        """(what to show, what is still missing)."""
        assert self.tor is not None
        seen = learned(self.tor, self.nodes)
        fib = self.tor.fib()
        view = View(
            tor=self.tor_spec,
            routes=route_rows(self.nodes, seen, fib),
            kernel=kernel_lines(fib),
            node_states=node_state_rows(self.kube_api, self.nodes),
        )
        return view, missing(self.kube_api, self.nodes, seen, fib)

    def close(self) -> list[str]:
        """Agents, then the controller, then speakers (they close their sessions), then BIRD,
        then the namespaces. Every step runs even if one before it failed."""
        errors: list[str] = []
        order = [p for p in self.procs if p.name.endswith("-agent")]
        order += [p for p in self.procs if p not in order and not p.name.endswith("-speaker")]
        order += [p for p in self.procs if p not in order]
        for proc in order:
            try:
                proc.close(grace=5)
            except Exception as exc:  # noqa: BLE001 - keep ending the others
                errors.append(f"{proc.name}: {exc}")
        if self.tor is not None:
            try:
                self.tor.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"bird: {exc}")
        errors += self.fabric.delete()
        return errors


def follow(lab: TheLab, *, once: bool, timeout: float) -> int:
    view: View | None = None
    problems: list[str] = ["nothing looked at yet"]

    def converged() -> bool:
        nonlocal view, problems
        if dead := lab.dead():
            raise ChildProcessError("\n".join(dead))
        try:
            view, problems = lab.look()
        except LabError as exc:  # BIRD's CLI not answering for a moment
            problems = [str(exc)]
        return not problems

    try:
        wait_for(converged, "the lab to converge", timeout, interval=POLL)
    except ChildProcessError as exc:
        say(f"lab: a process of the lab ended:\n{exc}")
        return 1
    except WaitTimeout:
        if view is not None:
            print("\n".join(view.text()))
        say(f"lab: did not converge within {timeout:.0f} s:\n  " + "\n  ".join(problems))
        return 1
    assert view is not None
    print("\n".join(view.text()), flush=True)
    if once:
        return 0
    say(
        "\nlab: converged; following changes until Ctrl-C. Try, in another shell: "
        f"KUBECONFIG={lab.kube_api.kubeconfig} {Path(sys.executable).parent}/kubectl-kubgp "
        "status"
    )
    shown = view.records()
    while True:
        time.sleep(POLL)
        if dead := lab.dead():
            say("lab: a process of the lab ended:\n" + "\n".join(dead))
            return 1
        try:
            now = lab.look()[0].records()
        except LabError as exc:
            say(f"lab: {exc}")
            continue
        if now != shown:
            lines = [f"- {line}" for line in shown if line not in now]
            lines += [f"+ {line}" for line in now if line not in shown]
            print(f"\n--- {time.strftime('%H:%M:%S')}", *lines, sep="\n", flush=True)
            shown = now


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    # Ctrl-C is KeyboardInterrupt even when started with SIGINT ignored (a shell's `cmd &`).
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _shield() -> None:
    """Nothing interrupts the teardown: Ctrl-C, SIGTERM and SIGHUP are ignored from here on."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def run(examples: Path, *, once: bool, timeout: float, keep: bool = False) -> int:
    objs = load_manifests(examples)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="kubgp-cluster-lab-"))
    code = 1
    try:
        with signals_interrupt(), KubeAPI.running(bookmark_interval=0.5) as kube_api:
            say(
                f"lab: emulated Kubernetes API server at {kube_api.url} with {len(objs)} "
                f"objects from {examples}"
            )
            lab = TheLab(kube_api, objs, workdir)
            try:
                lab.start()
                code = follow(lab, once=once, timeout=timeout)
                if code == 0 and once:
                    say(f"lab: converged in {time.monotonic() - started:.1f} s")
            except (KeyboardInterrupt, Interrupted):
                code = 130 if once else 0  # following changes ends with Ctrl-C: not an error
            except LabError as exc:
                say(f"lab: {exc}")
                code = 1
            finally:
                _shield()
                errors = lab.close()
                say("lab: torn down" + ("" if not errors else ": " + "; ".join(errors)))
                if errors:
                    code = 1
    finally:
        _shield()
        if keep:
            say(f"lab: logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabSetupError("the lab creates network namespaces: run it as root")
    for tool in ("ip", "bird", "birdc"):
        if shutil.which(tool) is None:
            raise LabSetupError(f"{tool} not found (make debs installs BIRD 2)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.cluster_demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="print once converged and exit 0; exit 1 if not within --timeout",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for convergence (default 60)",
    )
    parser.add_argument(
        "--examples",
        type=Path,
        default=EXAMPLES,
        metavar="DIR",
        help=f"the cluster's manifests (default {EXAMPLES})",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the work dir (every process's log) after teardown",
    )
    args = parser.parse_args(argv)
    try:
        preflight()
        return run(args.examples, once=args.once, timeout=args.timeout, keep=args.keep_logs)
    except LabSetupError as exc:
        say(f"lab: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
