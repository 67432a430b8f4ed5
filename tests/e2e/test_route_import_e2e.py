"""Route import from Kubernetes to the kernel: a BGPPeer's `spec.import` in the emulated API
server, the real `kubgp-controller node --fib` and `kubgp-speaker run --socket` (in the node's
network namespace), BIRD as the ToR in the other namespace of a NetnsPair. What the rules
accept is read back from the node's kernel; BGPNodeState and `kubectl kubgp routes` say so;
a changed `spec.import` takes a route out again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testing.kernel_routes import routes
from testing.kube.emulator import KubeAPI
from testing.procs import Procs, SpeakerProcess, free_port
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, PeerSpec
from testing.routers.netns import NetnsPair
from testing.wait import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.netns]

NODE = "n1"
NODE_ASN = 64512
TOR_ASN = 65000
PROTO = 179
SPECIFIC = "198.51.100.0/28"
OTHER = "203.0.113.0/24"  # no rule accepts it
DEFAULT_ONLY: list[dict[str, Any]] = [{"prefix": "0.0.0.0/0", "action": "accept"}]
RULES: list[dict[str, Any]] = [
    *DEFAULT_ONLY,
    {"prefix": "198.51.100.0/24", "le": 32, "action": "accept"},
]


def node(address: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        "spec": {"podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]},
    }


def bgp_peer(tor: str, me: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPPeer",
        "metadata": {"name": "tor-a"},
        "spec": {
            "peerAddress": tor,
            "peerASN": TOR_ASN,
            "sourceAddress": me,
            "holdTimeSeconds": 9,
            "connectRetryTimeSeconds": 1,
            "import": rules,
        },
    }


def ours(pair: NetnsPair) -> dict[str, tuple[str, ...]]:
    return {r.dst: r.gateways for r in routes(pair.a.netns) if r.protocol == PROTO}


def node_state(kube_api: KubeAPI) -> dict[str, Any]:
    obj = kube_api.get("BGPNodeState", NODE)
    return {} if obj is None else dict(obj.get("status") or {})


def test_spec_import_reaches_the_kernel_and_the_status(
    kube_api: KubeAPI, lab: Lab, procs: Callable[[Path], Procs], netns_pair: NetnsPair
) -> None:
    pair = netns_pair
    me, tor_address = pair.a.ipv4, pair.b.ipv4
    p = procs(kube_api.kubeconfig)
    tor = lab.bird(asn=TOR_ASN, name="tor-a", address=tor_address, netns=pair.b.netns)
    tor.peers[NODE] = PeerSpec(name=NODE, address=me, asn=NODE_ASN, passive=True, hold_time=9)
    tor.export_next_hop4 = tor_address
    for prefix in ("0.0.0.0/0", SPECIFIC, OTHER):
        tor.originate(prefix)
    tor.start()

    kube_api.apply(node(me))
    kube_api.apply(bgp_peer(tor_address, me, RULES))
    work = p.workdir / "speaker"
    work.mkdir()
    sock = Path(f"/tmp/kubgp-e2e-ri-{os.getpid()}.sock")
    args = ("--socket", str(sock), "--state-dir", str(work / "state"))
    speaker = SpeakerProcess(work, pair.a.netns, env=p.env, args=args)
    p.made.append(speaker)
    agent = p.agent(NODE, sock, metrics_port=free_port())
    agent.argv.append("--fib")  # the chart's routeImport.enabled
    speaker.start()
    agent.start()

    tor.wait_established(NODE)
    want = {"0.0.0.0/0": (tor_address,), SPECIFIC: (tor_address,)}
    wait_for(lambda: ours(pair), "the accepted routes in the node's kernel", 60,
             done=lambda got: got == want)  # fmt: skip

    def counted() -> dict[str, Any] | None:
        state = node_state(kube_api)
        peers = state.get("peers") or [{}]
        done = (peers[0].get("prefixesInstalled"), (state.get("routes") or {}).get("installed"))
        return state if done == (2, 2) else None

    state = wait_for(counted, "BGPNodeState with the route counts", 60)
    assert state is not None
    [peer] = state["peers"]
    assert peer["state"] == ESTABLISHED
    assert (peer["prefixesReceived"], peer["prefixesAccepted"], peer["prefixesBest"]) == (3, 2, 2)
    table = state["routes"]
    assert (table["state"], table["protocol"], table["selected"], table["failed"]) == (
        "on", PROTO, 2, 0
    )  # fmt: skip
    # a bounded sample: prefixes up to /16 (the default first), so the /28 is not listed
    assert table["installedRoutes"] == [{"prefix": "0.0.0.0/0", "via": tor_address}]

    view = subprocess.run(
        [sys.executable, "-m", "controller.cli.kubectl_kubgp", "routes", NODE],
        capture_output=True, text=True, timeout=60, check=False, env=p.env,
    )  # fmt: skip
    assert view.returncode == 0, view.stderr
    assert "2 selected, 2 installed" in view.stdout, view.stdout
    assert re.search(r"^tor-a\s+Established\s+3\s+2\s+2\s+2\s*$", view.stdout, re.M), view.stdout

    # The BGPPeer's rules change: the /28 leaves the kernel, the session stays up.
    kube_api.apply(bgp_peer(tor_address, me, DEFAULT_ONLY))
    wait_for(lambda: ours(pair), "only the default route left", 60,
             done=lambda got: got == {"0.0.0.0/0": (tor_address,)})  # fmt: skip
    assert tor.session_state(NODE) == ESTABLISHED
    assert peer["since"] == next(iter(node_state(kube_api)["peers"]))["since"]
