"""RFC 8203/9003 shutdown communication received from BIRD is logged and in lastError; a
`passive: true` peer only accepts: with a passive BIRD on the other side nobody connects."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from testing.procs import SpeakerProcess
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, PeerSpec

pytestmark = pytest.mark.lab

Factory = Callable[..., SpeakerProcess]


def test_received_shutdown_message_is_logged_and_passive_peers_only_accept(
    lab: Lab, speaker_factory: Factory
) -> None:
    me, other = lab.address(), lab.address()
    tor = lab.bird(asn=65060)
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=64512, hold_time=9)
    tor.peers["quiet"] = PeerSpec(name="quiet", address=other, asn=64512, passive=True)
    tor.start()

    def peer(name: str, src: str, **kw: object) -> dict[str, object]:
        return {"name": name, "address": tor.address, "asn": tor.asn, "sourceAddress": src,
                "holdTime": 9, "connectRetryTime": 1, "ebgpMultihop": 255, **kw}  # fmt: skip

    sp = speaker_factory()
    sp.start({"routerId": me, "asn": 64512, "listen": {"address": me, "port": 179},
              "peers": [peer("tor", me, passive=True)], "advertisements": []})  # fmt: skip
    quiet = speaker_factory()
    quiet.start({"routerId": other, "asn": 64512, "listen": {"address": other, "port": 179},
                 "peers": [peer("tor", other, passive=True)], "advertisements": []})  # fmt: skip
    tor.wait_established("kubgp")  # BIRD connected to our passive peer
    tor.birdc("disable", tor.protocol("kubgp"), '"maintenance window 42"')
    sp.wait_log("'maintenance window 42'")
    line = next(ln for ln in sp.log().splitlines() if "maintenance window 42" in ln)
    assert "received NOTIFICATION Cease/AdministrativeShutdown" in line
    time.sleep(2)
    assert tor.session_state("quiet") != ESTABLISHED
    log = quiet.log()
    assert "-> Connect" not in log and "-> OpenSent" not in log
