"""Graceful restart, helper role (RFC 4724 §4.2): a GoBGP peer that negotiated GR is killed
and comes back (`gobgpd -r`, R bit); kubgp keeps its routes as stale meanwhile, and after the
peer's End-of-RIB removes what the peer did not send again."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from testing.procs import SpeakerProcess
from testing.routers.lab import Lab
from testing.routers.model import PeerSpec
from testing.wait import wait_for
from tests.hardening.test_graceful_restart import _doc

pytestmark = pytest.mark.lab

Factory = Callable[..., SpeakerProcess]


def test_peer_restart_keeps_its_routes_stale_then_refreshes(
    lab: Lab, speaker_factory: Factory
) -> None:
    me = lab.address()
    tor = lab.gobgp(asn=65030)
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=64512, hold_time=9,
                                  graceful_restart=True, restart_time=60)  # fmt: skip
    tor.start()
    for prefix in ("10.90.1.0/24", "10.90.2.0/24", "10.90.3.0/24"):
        tor.originate(prefix)
    sp = speaker_factory()
    sp.start(_doc(me, tor, []))  # GR-capable, announcing nothing: only the helper role
    sp.wait_log("End-of-RIB received")
    sp.wait_log("3 prefixes received")
    tor.kill()
    text = sp.wait_log("keeping 3 routes as stale for up to 60s")
    assert "removed" not in text.split("keeping 3 routes as stale")[1]
    at = len(sp.log())
    tor.withdraw("10.90.2.0/24")  # not running: it will not come back after the restart
    tor.restart_state = True
    tor.start()
    text = sp.wait_log("stale routes not re-sent", after=at)
    # The lab's gobgpd gets its routes from the CLI once it is up, which can be just after its
    # End-of-RIB: then all 3 are removed as not re-sent, and 2 come back right after.
    found = re.search(r"End-of-RIB ipv4-unicast, removed (\d+) stale routes not re-sent", text)
    assert found is not None and found.group(1) in ("1", "3"), text
    wait_for(
        lambda: sp.log()[at:].rstrip().endswith("2 prefixes received"),
        "the log to end with 2 prefixes received",
        interval=0.2,
    )


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_peer_back_without_forwarding_state_flushes_stale_routes_at_once(
    lab: Lab, speaker_factory: Factory, kind: str
) -> None:
    """BIRD and FRR restarted plainly (no `bird -R`, no FRR preserve-fw-state) come back
    without the forwarding-state bit: RFC 4724 §4.2 says remove the stale routes then."""
    me = lab.address()
    tor = lab.bird(asn=65031) if kind == "bird" else lab.frr(asn=65031)
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=64512, hold_time=9,
                                  graceful_restart=True, restart_time=60)  # fmt: skip
    tor.originate("10.91.1.0/24")
    tor.originate("10.91.2.0/24")
    tor.start()
    sp = speaker_factory()
    sp.start(_doc(me, tor, []))  # GR-capable, announcing nothing: only the helper role
    sp.wait_log("2 prefixes received")
    at = len(sp.log())
    tor.kill()
    sp.wait_log("keeping 2 routes as stale for up to 60s", after=at)
    tor.start()
    text = sp.wait_log("stale routes (forwarding state not kept)", after=at)
    assert "removed 2 stale routes (forwarding state not kept)" in text
