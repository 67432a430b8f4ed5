"""TCP MD5 signatures (RFC 2385) between our speaker and real BIRD, GoBGP and FRR.

One daemon, four sessions from four of our loopback addresses: the daemon connects to our
listener with the right key (the listener's per-peer key), we connect with the right key, we
connect with a wrong key, we connect with none. The last two must never be Established on
either side, and our log must say why as far as the kernel lets us know (nothing but silence:
a SYN without a valid signature is dropped). IPv6 (::1) checks the listener's IPv6 key.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from testing.procs import SpeakerProcess
from testing.routers.daemon import RouterDaemon
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, IPV6_UNICAST, PeerSpec

pytestmark = pytest.mark.lab

Factory = Callable[..., SpeakerProcess]
LOCAL_ASN = 64512
PEER_ASN = 65010
KEY = "kubgp-Md5-s3cret"
NH = "192.0.2.10"


def _daemon(lab: Lab, kind: str, **kw: object) -> RouterDaemon:
    maker: Callable[..., RouterDaemon] = {"bird": lab.bird, "gobgp": lab.gobgp, "frr": lab.frr}[
        kind
    ]
    return maker(asn=PEER_ASN, **kw)


def _peer(name: str, tor: RouterDaemon, me: str, **kw: object) -> dict[str, object]:
    doc: dict[str, object] = {"name": name, "address": tor.address, "asn": tor.asn,
                              "sourceAddress": me, "holdTime": 9, "connectRetryTime": 1,
                              "ebgpMultihop": 255}  # fmt: skip
    doc.update(kw)
    return doc


@pytest.mark.parametrize("kind", ["bird", "gobgp", "frr"])
def test_md5_right_key_establishes_wrong_or_missing_key_never(
    lab: Lab, speaker_factory: Factory, kind: str
) -> None:
    incoming, outgoing, wrong, missing = (lab.address() for _ in range(4))
    tor = _daemon(lab, kind)
    spec = {"asn": LOCAL_ASN, "password": KEY, "hold_time": 9}
    tor.peers["incoming"] = PeerSpec(name="incoming", address=incoming, **spec)  # type: ignore[arg-type]
    for name, address in (("outgoing", outgoing), ("wrong", wrong), ("missing", missing)):
        tor.peers[name] = PeerSpec(name=name, address=address, passive=True, **spec)  # type: ignore[arg-type]
    tor.start()
    # One speaker per case: our speaker tells peers apart by their address, all are `tor` here.
    cases: dict[str, tuple[str, dict[str, object]]] = {
        "incoming": (incoming, {"passive": True, "password": KEY}),
        "outgoing": (outgoing, {"password": KEY}),
        "wrong": (wrong, {"password": "not-the-key"}),
        "missing": (missing, {}),
    }
    sps: dict[str, SpeakerProcess] = {}
    for name, (me, kw) in cases.items():
        sps[name] = sp = speaker_factory()
        sp.start(
            {
                "routerId": me,
                "asn": LOCAL_ASN,
                "listen": {"address": me, "port": 179},
                "peers": [_peer(name, tor, me, **kw)],
                "advertisements": [{"prefix": "10.77.0.0/24", "nextHop": NH}],
            }
        )
    tor.wait_established("incoming")
    tor.wait_established("outgoing")
    for name in ("incoming", "outgoing"):
        assert [r.prefix for r in tor.wait_routes(name, lambda rs: len(rs) == 1)] == [
            "10.77.0.0/24"
        ]
        sps[name].wait_log("-> Established")
    # Several connect attempts (retry 1 s) later, the bad ones have never got anywhere.
    sps["wrong"].wait_log("connect: no answer", timeout=10)
    time.sleep(3)
    for name in ("wrong", "missing"):
        assert tor.session_state(name) != ESTABLISHED
        log = sps[name].log()
        assert "-> OpenSent" not in log and "-> Established" not in log, name
    log = sps["wrong"].log()
    assert "peer wrong (" in log and "TCP MD5 password mismatch likely" in log
    # Without a password of our own there is no mismatch to suspect, only silence.
    log = sps["missing"].log()
    assert "connect: no answer within" in log and "mismatch" not in log


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_md5_over_ipv6_listener_and_connect(lab: Lab, speaker_factory: Factory, kind: str) -> None:
    """On ::1 the daemon (port 179) connects to our listener (port 1179) with the key."""
    tor = _daemon(lab, kind, address="::1")
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address="::1", port=1179, asn=LOCAL_ASN,
                                  password=KEY, hold_time=9, families=(IPV6_UNICAST,))  # fmt: skip
    tor.start()
    sp = speaker_factory()
    sp.start(
        {
            "routerId": "192.0.2.11",
            "asn": LOCAL_ASN,
            "listen": {"address": "::1", "port": 1179},
            "peers": [
                _peer("tor", tor, "::1", passive=True, password=KEY, families=["ipv6-unicast"])
            ],
            "advertisements": [],
        }
    )
    tor.wait_established("kubgp")
    sp.wait_log("-> Established")
