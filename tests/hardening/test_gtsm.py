"""GTSM (RFC 5082, `ttlSecurity`) and the eBGP TTL against real FRR and GoBGP on loopback
(where nothing decrements the TTL, so what a side sends is what the other side checks).

- both sides GTSM: Established;
- the peer wants GTSM (accepts only TTL 255) and connects to us, we answer with TTL 1
  (`ebgpMultihop: 1`): never;
- we want GTSM (IP_MINTTL 255) and connect, the peer answers with TTL 2 (`ebgp-multihop 2`):
  never — our kernel drops its SYN-ACK.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from testing.procs import SpeakerProcess
from testing.routers.daemon import RouterDaemon
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, PeerSpec

pytestmark = pytest.mark.lab

Factory = Callable[..., SpeakerProcess]
LOCAL_ASN = 64512


@pytest.mark.parametrize("kind", ["frr", "gobgp"])
def test_gtsm_both_sides_establish_ttl_mismatch_never(
    lab: Lab, speaker_factory: Factory, kind: str
) -> None:
    maker: Callable[..., RouterDaemon] = {"gobgp": lab.gobgp, "frr": lab.frr}[kind]
    tor = maker(asn=65040)
    cases: dict[str, tuple[dict[str, object], dict[str, object]]] = {
        # name: (the lab peer's options, our peer's options)
        "both": ({"ttl_security": True}, {"ttlSecurity": True}),
        # One direction each: the side that checks connects, so its minimum is set before
        # its SYN. (An accepting side sets it on the accepted socket, after the handshake: a
        # first segment may slip in before. FRR showed that race once, and so can we.)
        "ttl1": ({"ttl_security": True}, {"ebgpMultihop": 1, "passive": True}),
        "ours": ({"multihop": 2, "passive": True}, {"ttlSecurity": True}),
    }
    addresses = {name: lab.address() for name in cases}
    for name, (theirs, _) in cases.items():
        tor.peers[name] = PeerSpec(name=name, address=addresses[name], asn=LOCAL_ASN,
                                   hold_time=9, **theirs)  # type: ignore[arg-type]  # fmt: skip
    tor.start()
    sps: dict[str, SpeakerProcess] = {}
    for name, (_, ours) in cases.items():
        me = addresses[name]
        sps[name] = sp = speaker_factory()
        peer: dict[str, object] = {"name": name, "address": tor.address, "asn": tor.asn,
                                   "sourceAddress": me, "holdTime": 9, "connectRetryTime": 1,
                                   **ours}  # fmt: skip
        sp.start({"routerId": me, "asn": LOCAL_ASN, "listen": {"address": me, "port": 179},
                  "peers": [peer], "advertisements": []})  # fmt: skip
    tor.wait_established("both")
    sps["both"].wait_log("-> Established")
    time.sleep(4)  # several connect attempts each way (retry 1 s)
    for name in ("ttl1", "ours"):
        assert tor.session_state(name) != ESTABLISHED, name
        log = sps[name].log()
        # The TCP handshake may complete (a listener checks no TTL; the minimum is set on the
        # accepted socket), but no segment after it passes, so no session ever does.
        assert "-> Established" not in log, name
