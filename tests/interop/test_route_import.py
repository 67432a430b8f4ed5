"""Route import with real routers and the real kernel (issue 15): the speaker
(`kubgp-speaker run`, a process in the node's namespace) learns from BIRD, FRR, GoBGP and two
more BIRDs playing route reflectors, and every check reads the node's routing table back with
`ip -j route` (testing/kernel_routes.py). Topology: tests/interop/route_fabric.py.

One fabric, one speaker for the module (daemons and sessions are the expensive part); the
tests run in file order and each leaves the fabric as it found it, except the last two
(graceful restart of a ToR, then kill -9 and shutdowns of the speaker).

Decision steps: each /28 of 198.51.100.0/24 is a case where exactly one step of RFC 4271
§9.1.2.2 decides, and the losing path is better at the first step after it that tells them
apart, so a selection that skipped the step would pick the other next hop (which the kernel
shows). Steps 1-6 with maxPaths 8 (they leave a single path), steps 7-9 with maxPaths 1
(with more, the tie is a multipath route, which is checked too).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing.kernel_routes import routes
from testing.procs import SpeakerProcess
from testing.routers.bird import Bird
from testing.routers.frr import FRR
from testing.routers.gobgp import GoBGP
from testing.routers.lab import Lab
from testing.routers.model import IPV4_UNICAST, IPV6_UNICAST, PeerSpec
from testing.wait import wait_for
from tests.interop.route_fabric import V4_SOURCES, V6_SOURCES, Fabric

pytestmark = [pytest.mark.lab, pytest.mark.netns]

PROTO = 179
NODE_ASN = 64512
TOR_ASN = 65001
BOTH = (IPV4_UNICAST, IPV6_UNICAST)

# the decision cases
P_LP, P_ASPATH, P_ORIGIN, P_MED = (f"198.51.100.{n}/28" for n in (16, 32, 48, 64))
P_EBGP, P_NHCOST, P_RID, P_CLUSTER = (f"198.51.100.{n}/28" for n in (80, 96, 112, 128))
P_ADDR = "198.51.100.144/28"
P6_ASPATH = "2001:db8:200::/48"
# the rest
P_KILL = "198.51.100.160/28"  # withdrawn while the speaker is dead
P_REJECT = "198.51.100.176/28"  # import policy says no
P_UNREACHABLE = "198.51.100.192/28"  # next hop 203.0.113.250: no connected route
P_STATIC = "198.51.100.208/28"  # the node has a static route of its own there
P_GR1, P_GR2 = "198.51.100.224/28", "198.51.100.240/28"  # from GoBGP, across its restart
FAR_NH = "192.0.2.40"  # tor-b's next hop reached through a device route of metric 50
STATIC_ELSEWHERE = "192.0.2.64/28"  # an operator's route no change of ours may touch

A_RULES: list[dict[str, Any]] = [
    {"prefix": P_LP, "action": "accept", "set": {"localPreference": 200}},
    {"communities": ["65001:666"], "action": "reject"},
    {"prefix": "0.0.0.0/0", "le": 32, "action": "accept"},
    {"prefix": "::/0", "le": 128, "action": "accept"},
]
ALL: list[dict[str, Any]] = A_RULES[2:]


def _peer(name: str, address: str, asn: int, imports: list[dict[str, Any]], *, gr: bool,
          families: tuple[str, ...] = (IPV4_UNICAST,)) -> dict[str, Any]:  # fmt: skip
    return {"name": name, "address": address, "asn": asn, "holdTime": 9,
            "connectRetryTime": 1, "families": list(families),
            "gracefulRestart": {"enabled": gr, "restartTime": 60}, "import": imports}  # fmt: skip


def node_doc(max_paths: int = 8) -> dict[str, Any]:
    return {
        "routerId": "192.0.2.1",
        "asn": NODE_ASN,
        "peers": [
            _peer("tor-a", "192.0.2.2", TOR_ASN, A_RULES, gr=True, families=BOTH),
            _peer("tor-b", "192.0.2.18", TOR_ASN, ALL, gr=True, families=BOTH),
            _peer("ibgp-3", "192.0.2.34", NODE_ASN, ALL, gr=True),  # GoBGP
            _peer("ibgp-1", "192.0.2.35", NODE_ASN, ALL, gr=False),  # BIRD
            _peer("ibgp-2", "192.0.2.36", NODE_ASN, ALL, gr=False),  # BIRD
        ],
        "fib": {"maxPaths": max_paths},
    }


class World:
    def __init__(self, fabric: Fabric, lab: Lab, speaker: SpeakerProcess, sock: Path) -> None:
        self.fabric = fabric
        self.lab = lab
        self.speaker = speaker
        self.sock = sock
        self.tors: dict[str, Any] = {}

    @property
    def node(self) -> str:
        return self.fabric.ns.node

    def kernel(self, *, v6: bool = False) -> dict[str, tuple[str, ...]]:
        """Our routes in the node's namespace: prefix -> gateways."""
        return {r.dst: r.gateways for r in routes(self.node, v6=v6) if r.protocol == PROTO}

    def kernel_has(self, want: dict[str, tuple[str, ...]], *, v6: bool = False,
                   what: str = "", timeout: float = 60.0) -> None:  # fmt: skip
        """Until these prefixes of ours are in the kernel with exactly these gateways (a
        timeout shows the kernel's routes of ours)."""
        wait_for(
            lambda: self.kernel(v6=v6), what or f"our routes {want}", timeout,
            done=lambda got: all(got.get(p) == g for p, g in want.items()),
        )  # fmt: skip

    def kernel_lacks(self, *prefixes: str, v6: bool = False, timeout: float = 60.0) -> None:
        wait_for(lambda: self.kernel(v6=v6), f"no route of ours for {prefixes}", timeout,
                 done=lambda got: not set(prefixes) & set(got))  # fmt: skip

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "speaker.cli.kubgp_speaker", *args, "--socket", str(self.sock)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def report(self, prefix: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.cli("routes", prefix, "-o", "json"))
        (entry,) = [e for e in doc["prefixes"] if e["prefix"] == prefix]
        found: dict[str, Any] = entry
        return found

    def established(self) -> None:
        def all_up() -> bool:
            status = json.loads(self.cli("status", "-o", "json"))
            return all(p["state"] == "Established" for p in status["peers"])

        wait_for(all_up, "every session Established", 90)


def _originate_cases(a: Bird, b: FRR, c: GoBGP, d: Bird, e: Bird) -> None:
    for tor, nh in ((a, "192.0.2.2"), (b, "192.0.2.18")):
        tor.originate("0.0.0.0/0", next_hop=nh)
    a.originate("::/0", next_hop="2001:db8:a::2")
    b.originate("::/0", next_hop="2001:db8:b::2")
    # 1 LOCAL_PREF: tor-a's path is longer and INCOMPLETE, its import rule sets 200
    a.originate(P_LP, as_path=(TOR_ASN, TOR_ASN), origin="incomplete")
    b.originate(P_LP)
    # 2 AS_PATH: tor-b's path is longer but IGP and with the lower MED
    a.originate(P_ASPATH, origin="incomplete", med=50)
    b.originate(P_ASPATH, as_path=(TOR_ASN, TOR_ASN), med=10)
    # 3 ORIGIN: tor-b is IGP, tor-a INCOMPLETE with the lower MED
    a.originate(P_ORIGIN, origin="incomplete", med=10)
    b.originate(P_ORIGIN, med=50)
    # 4 MED (same neighbouring AS): tor-a 10, tor-b 50 with the lower router id
    a.originate(P_MED, med=10)
    b.originate(P_MED, med=50)
    # 5 eBGP over iBGP: GoBGP's iBGP path as long ([65001]) with the lower router id
    a.originate(P_EBGP)
    c.originate(P_EBGP, next_hop="192.0.2.34", as_path=(TOR_ASN,))
    # 6 next-hop cost: tor-b's next hop through a device route of metric 50
    a.originate(P_NHCOST)
    b.originate(P_NHCOST, next_hop=FAR_NH)
    # 7 router id: equal paths, tor-b's id is lower, tor-a's address is lower
    a.originate(P_RID)
    b.originate(P_RID)
    # 8 CLUSTER_LIST: one ORIGINATOR_ID; ibgp-2 (.36) has none, ibgp-1 (.35) one entry
    d.originate(P_CLUSTER, next_hop="192.0.2.35", origin="igp", originator_id="192.0.2.99",
                cluster_list=("192.0.2.98",))  # fmt: skip
    e.originate(P_CLUSTER, next_hop="192.0.2.36", origin="igp", originator_id="192.0.2.99")
    # 9 peer address: ibgp-1's ORIGINATOR_ID is GoBGP's router id; GoBGP's address is lower
    c.originate(P_ADDR, next_hop="192.0.2.34")
    d.originate(P_ADDR, next_hop="192.0.2.35", origin="igp", originator_id="192.0.2.34")
    # IPv6: AS_PATH
    a.originate(P6_ASPATH, next_hop="2001:db8:a::2")
    b.originate(P6_ASPATH, next_hop="2001:db8:b::2", as_path=(TOR_ASN,))
    # the rest
    a.originate(P_KILL)
    a.originate(P_REJECT, communities=("65001:666",))
    a.originate(P_UNREACHABLE, next_hop="203.0.113.250")
    a.originate(P_STATIC)
    c.originate(P_GR1, next_hop="192.0.2.34")
    c.originate(P_GR2, next_hop="192.0.2.34")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fabric = Fabric().create()
    lab = Lab()
    work = tmp_path_factory.mktemp("route-import")
    speaker = SpeakerProcess(work, fabric.ns.node)
    w = World(fabric, lab, speaker, work / "speaker.sock")
    try:
        ns = fabric.ns
        gr = {"graceful_restart": True, "restart_time": 60}
        a = lab.bird(asn=TOR_ASN, name="tor-a", address="192.0.2.2", router_id="192.0.2.250",
                     netns=ns.a)  # fmt: skip
        a.peers["node"] = PeerSpec(name="node", address="192.0.2.1", asn=NODE_ASN, hold_time=9,
                                   families=BOTH, multihop=1, **gr)  # type: ignore[arg-type]  # fmt: skip
        b = lab.frr(asn=TOR_ASN, name="tor-b", address="192.0.2.18", router_id="192.0.2.18",
                    netns=ns.b)  # fmt: skip
        b.peers["node"] = PeerSpec(name="node", address="192.0.2.17", asn=NODE_ASN, hold_time=9,
                                   families=BOTH, multihop=1, **gr)  # type: ignore[arg-type]  # fmt: skip
        c = lab.gobgp(asn=NODE_ASN, name="ibgp-3", address="192.0.2.34", router_id="192.0.2.34",
                      netns=ns.c)  # fmt: skip
        c.peers["node"] = PeerSpec(name="node", address="192.0.2.33", asn=NODE_ASN, hold_time=9,
                                   multihop=1, **gr)  # type: ignore[arg-type]  # fmt: skip
        d = lab.bird(asn=NODE_ASN, name="ibgp-1", address="192.0.2.35", router_id="192.0.2.35",
                     netns=ns.c)  # fmt: skip
        e = lab.bird(asn=NODE_ASN, name="ibgp-2", address="192.0.2.36", router_id="192.0.2.36",
                     netns=ns.c)  # fmt: skip
        for rr in (d, e):
            rr.peers["node"] = PeerSpec(name="node", address="192.0.2.33", asn=NODE_ASN,
                                       hold_time=9, multihop=1)  # fmt: skip
        # next hop self: each originates with its own address on the node's link
        for router, v4, v6 in ((a, "192.0.2.2", "2001:db8:a::2"),
                               (b, "192.0.2.18", "2001:db8:b::2"), (c, "192.0.2.34", ""),
                               (d, "192.0.2.35", ""), (e, "192.0.2.36", "")):  # fmt: skip
            router.export_next_hop4, router.export_next_hop6 = v4, v6 or router.export_next_hop6
        _originate_cases(a, b, c, d, e)
        w.tors = {"a": a, "b": b, "c": c, "d": d, "e": e}
        # the node: tor-b's far next hop, an operator's route where a received one comes, and
        # one elsewhere
        ip_n = ["ip", "-n", ns.node]
        subprocess.run([*ip_n, "route", "add", f"{FAR_NH}/32", "dev", "to-b", "metric", "50"],
                       check=True)  # fmt: skip
        subprocess.run([*ip_n, "route", "add", P_STATIC, "via", "192.0.2.2", "metric", "20",
                        "proto", "static"],
                       check=True)  # fmt: skip
        subprocess.run([*ip_n, "route", "add", STATIC_ELSEWHERE, "via", "192.0.2.18", "proto",
                        "static"], check=True)  # fmt: skip
        for router in (a, b, c, d, e):
            router.start()
        speaker.start(node_doc(), "--socket", str(w.sock))
        w.established()
        yield w
    finally:
        speaker.close()
        try:  # the logs, which pytest shows when a test failed
            print(f"\n=== speaker log\n{speaker.log()[-8000:]}")
            for daemon in lab.daemons:
                print(f"\n=== {daemon!r}\n{daemon.log_tail(30)}")
        finally:
            lab.close()
            fabric.close()


def statics(w: World) -> set[tuple[str, tuple[str, ...], int]]:
    """The operator's routes (`proto static`, 4) in the node's namespace."""
    return {(r.dst, r.gateways, r.metric) for r in routes(w.node) if r.protocol == 4}


STATICS = {(P_STATIC, ("192.0.2.2",), 20), (STATIC_ELSEWHERE, ("192.0.2.18",), 0)}


def test_each_decision_step_decides_in_the_kernel(world: World) -> None:
    w = world
    w.kernel_has({
        P_LP: ("192.0.2.2",),  # LOCAL_PREF 200 by tor-a's import rule
        P_ASPATH: ("192.0.2.2",),
        P_ORIGIN: ("192.0.2.18",),
        P_MED: ("192.0.2.2",),
        P_EBGP: ("192.0.2.2",),
        P_NHCOST: ("192.0.2.2",),
        # with maxPaths 8 the ties are multipath routes
        P_RID: ("192.0.2.18", "192.0.2.2"),
        P_CLUSTER: ("192.0.2.35", "192.0.2.36"),
        P_ADDR: ("192.0.2.34", "192.0.2.35"),
    }, what="steps 1-6 decided, 7-9 multipath")  # fmt: skip
    w.kernel_has({P6_ASPATH: ("2001:db8:a::2",)}, v6=True)
    steps = {p: [x["note"] for x in w.report(p)["paths"] if not x["best"]] for p in
             (P_LP, P_ASPATH, P_ORIGIN, P_MED, P_EBGP, P_NHCOST)}  # fmt: skip
    assert steps == {
        P_LP: ["not best: tor-a wins at LOCAL_PREF"],
        P_ASPATH: ["not best: tor-a wins at AS_PATH length"],
        P_ORIGIN: ["not best: tor-b wins at ORIGIN"],
        P_MED: ["not best: tor-a wins at MED"],
        P_EBGP: ["not best: tor-a wins at eBGP over iBGP"],
        P_NHCOST: ["not best: tor-a wins at next-hop cost"],
    }
    at = len(w.speaker.log())
    w.speaker.reload(node_doc(max_paths=1))
    w.speaker.wait_log("SIGHUP: applied", after=at)
    w.kernel_has({
        P_RID: ("192.0.2.18",),  # router id (tor-a has the lower address)
        P_CLUSTER: ("192.0.2.36",),  # CLUSTER_LIST length (ibgp-1 has the lower address)
        P_ADDR: ("192.0.2.34",),  # peer address
        "0.0.0.0/0": ("192.0.2.18",),  # the ECMP default narrows to the best path
    }, what="steps 7-9 decided with maxPaths 1")  # fmt: skip
    assert json.loads(w.cli("status", "-o", "json"))["peers"][0]["state"] == "Established"
    w.speaker.reload(node_doc())
    w.kernel_has({"0.0.0.0/0": ("192.0.2.18", "192.0.2.2")}, what="back to maxPaths 8")
    assert statics(w) == STATICS


def test_ecmp_carries_traffic_over_both_tors_then_one_withdraws_then_a_session_drops(
    world: World,
) -> None:
    w, f = world, world.fabric
    a, b = w.tors["a"], w.tors["b"]
    w.kernel_has({"0.0.0.0/0": ("192.0.2.18", "192.0.2.2")})
    w.kernel_has({"::/0": ("2001:db8:a::2", "2001:db8:b::2")}, v6=True)
    for v6 in (False, True):
        before = f.echoes(f.ns.ha, v6=v6), f.echoes(f.ns.hb, v6=v6)
        assert f.ping_all(v6=v6) == []
        got = f.echoes(f.ns.ha, v6=v6) - before[0], f.echoes(f.ns.hb, v6=v6) - before[1]
        # every echo answered by one host, and both hosts answered some: both next hops carry
        sent = len(V6_SOURCES if v6 else V4_SOURCES)
        assert sum(got) == sent and got[0] > 0 and got[1] > 0, (v6, got)
    b.withdraw("0.0.0.0/0")
    w.kernel_has({"0.0.0.0/0": ("192.0.2.2",)}, what="single path after tor-b withdrew")
    before = f.echoes(f.ns.ha), f.echoes(f.ns.hb)
    assert f.ping_all() == []
    assert (f.echoes(f.ns.ha) - before[0], f.echoes(f.ns.hb) - before[1]) == (32, 0)
    # tor-a's session ends with a Cease (no graceful restart then): its routes go at once
    a.birdc("disable", a.protocol("node"))
    w.kernel_lacks("0.0.0.0/0", P_KILL)  # tor-a's alone
    # where tor-b has a path too, it is the route now
    w.kernel_has({P_LP: ("192.0.2.18",), P_MED: ("192.0.2.18",), P_ORIGIN: ("192.0.2.18",)})
    w.kernel_has({"::/0": ("2001:db8:b::2",)}, v6=True)
    a.birdc("enable", a.protocol("node"))
    b.originate("0.0.0.0/0", next_hop="192.0.2.18")
    w.kernel_has({"0.0.0.0/0": ("192.0.2.18", "192.0.2.2"), P_KILL: ("192.0.2.2",),
                  P_LP: ("192.0.2.2",), P_MED: ("192.0.2.2",)})  # fmt: skip
    w.kernel_has({"::/0": ("2001:db8:a::2", "2001:db8:b::2")}, v6=True)
    assert statics(w) == STATICS


def test_policy_rejects_unreachable_next_hop_and_a_static_route_stay_out(world: World) -> None:
    w = world
    w.kernel_has({P_KILL: ("192.0.2.2",)})
    kernel = w.kernel()
    assert P_REJECT not in kernel and P_UNREACHABLE not in kernel and P_STATIC not in kernel
    rejected = w.report(P_REJECT)
    assert (rejected["installed"], rejected["paths"][0]["policy"], rejected["paths"][0]["rule"]
            ) == (False, "reject", 1)  # fmt: skip
    assert "no path is accepted by import policy" in rejected["reason"]
    unreachable = w.report(P_UNREACHABLE)
    assert not unreachable["selected"] and not unreachable["paths"][0]["eligible"]
    assert "203.0.113.250 is not reachable" in unreachable["reason"]
    static = w.report(P_STATIC)
    assert static["selected"] and not static["installed"]
    assert "not ours" in static["reason"]
    assert statics(w) == STATICS
    table = w.cli("routes", "198.51.100.176/28")  # the operator's view of one prefix
    assert "reject #1" in table and "-> not installed: no path is accepted" in table


def test_a_restarting_tors_routes_stay_installed_until_its_end_of_rib(world: World) -> None:
    """Graceful restart helper reaching the FIB: GoBGP killed and back with the R and F bits;
    its routes stay in the kernel while it is away; the one it does not send again goes after
    its End-of-RIB."""
    w = world
    c = w.tors["c"]
    w.kernel_has({P_GR1: ("192.0.2.34",), P_GR2: ("192.0.2.34",)})
    at = len(w.speaker.log())
    c.kill()
    w.speaker.wait_log("keeping", after=at)  # "... keeping N routes as stale ..."
    assert w.kernel().get(P_GR1) == w.kernel().get(P_GR2) == ("192.0.2.34",)
    entry = w.report(P_GR2)
    assert entry["installed"] and entry["paths"][0]["stale"]
    c.withdraw(P_GR2)
    c.restart_state = True
    c.start()
    w.speaker.wait_log("stale routes not re-sent", after=at)
    w.kernel_lacks(P_GR2)
    w.kernel_has({P_GR1: ("192.0.2.34",), P_EBGP: ("192.0.2.2",)})


def test_kill_9_keeps_our_routes_and_a_restart_reconciles_them_after_end_of_rib(
    world: World,
) -> None:
    w = world
    a, b = w.tors["a"], w.tors["b"]
    w.kernel_has({P_KILL: ("192.0.2.2",), "0.0.0.0/0": ("192.0.2.18", "192.0.2.2")})
    before = w.kernel()
    w.speaker.kill()
    assert w.kernel() == before  # kill -9: the kernel keeps every route
    a.withdraw(P_KILL)  # while we are away
    b.freeze()  # tor-b comes back later: the restart waits for its End-of-RIB
    at = len(w.speaker.log())
    try:
        w.speaker.start(node_doc(), "--socket", str(w.sock))
        w.speaker.wait_log("kept (forwarding state preserved) until End-of-RIB", after=at)
        w.speaker.wait_log("peer tor-a (192.0.2.2): End-of-RIB received", after=at)
        status = json.loads(w.cli("status", "-o", "json"))
        assert status["fib"]["state"] == "deferred" and "tor-b" in status["fib"]["waitingFor"]
        assert P_KILL in w.kernel()  # kept: no End-of-RIB from tor-b yet
    finally:
        b.resume()
    w.speaker.wait_log("End-of-RIB from every peer with graceful restart", after=at)
    w.kernel_lacks(P_KILL)
    assert {p: g for p, g in w.kernel().items() if p != P_KILL} == {
        p: g for p, g in before.items() if p != P_KILL
    }
    assert statics(w) == STATICS
    # graceful-restart shutdown keeps them, withdraw removes them; the operator's stay
    at = len(w.speaker.log())
    w.speaker.signal(signal.SIGUSR2)
    assert w.speaker.proc is not None and w.speaker.proc.wait(timeout=30) == 0
    # the sessions without graceful restart (ibgp-1, ibgp-2) ended with a Cease: their paths
    # left before we did; the rest stays for the next speaker
    kept = {p: g for p, g in before.items() if p not in (P_KILL, P_CLUSTER)}
    kept[P_ADDR] = ("192.0.2.34",)
    assert w.kernel() == kept
    w.speaker.start(node_doc(), "--socket", str(w.sock))
    w.speaker.wait_log("End-of-RIB from every peer with graceful restart", after=at)
    assert w.speaker.stop(timeout=30) == 0  # SIGTERM, --shutdown=withdraw (the default)
    assert w.kernel() == {} and w.kernel(v6=True) == {}
    assert statics(w) == STATICS
