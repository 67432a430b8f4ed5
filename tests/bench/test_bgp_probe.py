"""The benchmarks' neutral sender (`benchmarks.bgp_probe send`) against the real daemons: the
same UPDATEs must land in every receiver's Adj-RIB-In, or bench_scale's receive column compares
nothing. Its NEXT_HOP was once its own loopback source, which FRR takes for a martian (it reset
the session after the first UPDATE) and GoBGP treated as a withdraw.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from benchmarks.bench_scale import Probe
from benchmarks.bgp_probe import NEXT_HOP
from testing.routers.bird import Bird
from testing.routers.frr import FRR
from testing.routers.gobgp import GoBGP
from testing.routers.lab import Lab
from testing.routers.model import PeerSpec, Route
from testing.wait import wait_for

COUNT = 300  # two UPDATEs of the probe (about 800 /32s fit in one)


def expected() -> set[str]:
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    return {f"{ipaddress.IPv4Address(base + i)}/32" for i in range(COUNT)}


@pytest.mark.lab
@pytest.mark.parametrize("kind", ["bird", "frr", "gobgp"])
def test_every_daemon_takes_the_probes_routes(lab: Lab, kind: str) -> None:
    sender = lab.address()
    daemon: Bird | FRR | GoBGP = getattr(lab, kind)(asn=65000)
    daemon.peers["probe"] = PeerSpec(name="probe", address=sender, asn=65001, passive=True)
    daemon.start()
    probe = Probe("send", "--connect", daemon.address, "--source", sender, "--asn", "65001",
                  "--count", str(COUNT))  # fmt: skip
    try:
        probe.wait("established", 60)
        probe.wait("sent", 60)
        routes: list[Route] = wait_for(
            lambda: daemon.received_routes("probe"),
            f"{COUNT} routes from the probe in {kind}'s table",
            timeout=60,
            done=lambda rs: len(rs) >= COUNT,
        )
        assert {r.prefix for r in routes} == expected()
        assert {(r.next_hop, r.as_path, r.origin) for r in routes} == {(NEXT_HOP, (65001,), "IGP")}
        assert daemon.session_state("probe") == "Established"  # no reset after the UPDATEs
        while not probe.events.empty():
            assert probe.events.get()["event"] not in ("closed", "notification")
    finally:
        probe.close()


def test_a_loopback_next_hop_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bgp_probe", "send", "--connect", "127.0.0.1",
         "--source", "127.0.0.1", "--asn", "65001", "--count", "1", "--next-hop", "127.0.0.9"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--next-hop 127.0.0.9" in done.stderr
