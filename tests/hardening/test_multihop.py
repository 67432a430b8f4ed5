"""`ebgpMultihop` across a real router hop: three network namespaces in a chain,
us (192.0.2.1) - router (192.0.2.254 | 198.51.100.254, forwarding) - BIRD (198.51.100.2).

With `ebgpMultihop: 1` our segments leave with TTL 1 and die at the router (the peer's own
SYNs, TTL 255, still reach us, so the TCP handshake is what fails): never Established.
Changed to 2 (a SIGHUP, which resets only that peer): Established, routes arrive.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterator

import pytest

from testing.procs import SpeakerProcess
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, LabError, PeerSpec
from testing.routers.netns import ip

pytestmark = [pytest.mark.lab, pytest.mark.netns]

Factory = Callable[..., SpeakerProcess]
_SERIAL = itertools.count(1)


@pytest.fixture
def chain() -> Iterator[tuple[str, str, str]]:
    tag = f"kubgp{os.getpid() % 100000}h{next(_SERIAL)}"
    a, r, b = f"{tag}a", f"{tag}r", f"{tag}b"
    made: list[str] = []
    try:
        for ns in (a, r, b):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", a, "link", "add", "ha", "type", "veth", "peer", "name", "ra", "netns", r)
        ip("-n", b, "link", "add", "hb", "type", "veth", "peer", "name", "rb", "netns", r)
        links = [(a, "ha", "192.0.2.1/24"), (r, "ra", "192.0.2.254/24"),
                 (r, "rb", "198.51.100.254/24"), (b, "hb", "198.51.100.2/24")]  # fmt: skip
        for ns, dev, addr in links:
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", a, "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
        ip("-n", b, "route", "add", "192.0.2.0/24", "via", "198.51.100.254")
        ip("netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield a, r, b
    finally:
        for ns in reversed(made):
            with contextlib.suppress(LabError):
                ip("netns", "del", ns)


def test_ebgp_multihop_ttl_across_a_router(
    lab: Lab, chain: tuple[str, str, str], speaker_factory: Factory
) -> None:
    a, _, b = chain
    tor = lab.bird(asn=65050, address="198.51.100.2", netns=b)
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address="192.0.2.1", asn=64512, hold_time=9,
                                  multihop=2)  # fmt: skip

    def doc(hops: int) -> dict[str, object]:
        return {
            "routerId": "192.0.2.1",
            "asn": 64512,
            "listen": {"address": "192.0.2.1", "port": 179},
            "peers": [
                {
                    "name": "tor",
                    "address": "198.51.100.2",
                    "asn": 65050,
                    "holdTime": 9,
                    "connectRetryTime": 1,
                    "ebgpMultihop": hops,
                }
            ],
            "advertisements": [{"prefix": "10.66.0.0/24"}],
        }

    tor.start()
    sp = speaker_factory(netns=a)
    sp.start(doc(1))
    sp.wait_log("peer tor (")
    time.sleep(5)  # connect attempts both ways
    assert tor.session_state("kubgp") != ESTABLISHED
    assert "-> Established" not in sp.log()
    sp.reload(doc(2))
    sp.wait_log("-> Established", timeout=20)
    routes = tor.wait_routes("kubgp", lambda rs: len(rs) == 1)
    assert routes[0].prefix == "10.66.0.0/24" and routes[0].next_hop == "192.0.2.1"
