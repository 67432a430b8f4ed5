"""AS loop detection against real peers: our speaker (`kubgp-speaker run`, a real process) keeps
neither the routes nor the count of paths through its own AS (the session's localAsn when set),
logs the first one, counts them in its metrics and stays Established."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from testing.procs import SpeakerProcess
from testing.routers.gobgp import GoBGP
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, PeerSpec
from testing.wait import wait_for
from tests.speaker.control.test_metrics import Samples, _scrape

pytestmark = pytest.mark.lab

LOCAL_ASN = 64512
OVERRIDE_ASN = 64600  # the second session's localAsn
NH = "192.0.2.77"


def _peer(name: str, tor: GoBGP, me: str, **kw: object) -> dict[str, object]:
    return {"name": name, "address": tor.address, "asn": tor.asn, "sourceAddress": me,
            "holdTime": 9, "connectRetryTime": 1, "ebgpMultihop": 255, **kw}  # fmt: skip


def _add(tor: GoBGP, prefix: str, *as_path: int) -> None:
    args = ["global", "rib", "add", "-a", "ipv4", prefix, "origin", "igp", "nexthop", NH]
    if as_path:
        args += ["aspath", ",".join(str(a) for a in as_path)]
    tor.gobgp(*args)


def test_routes_through_our_own_as_are_ignored_logged_once_and_counted(
    lab: Lab, speaker_factory: Callable[..., SpeakerProcess]
) -> None:
    me = lab.address()
    tor = lab.gobgp(asn=65000)
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=LOCAL_ASN, hold_time=9)
    tor2 = lab.gobgp(asn=65001)
    tor2.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=OVERRIDE_ASN, hold_time=9)
    tor.start()
    tor2.start()
    url = f"http://{me}:9473/metrics"
    sp = speaker_factory()
    sp.start(
        {
            "routerId": me,
            "asn": LOCAL_ASN,
            "listen": {"address": me, "port": 179},
            "peers": [_peer("tor", tor, me), _peer("tor2", tor2, me, localAsn=OVERRIDE_ASN)],
            "advertisements": [],
        },
        "--metrics-address",
        f"{me}:9473",
    )
    tor.wait_established("kubgp")
    tor2.wait_established("kubgp")
    _add(tor, "10.9.1.0/24")
    _add(tor, "10.9.2.0/24", 65010, LOCAL_ASN)  # through our AS
    _add(tor, "10.9.3.0/24", LOCAL_ASN)
    _add(tor2, "10.9.4.0/24", 65010, LOCAL_ASN)  # not this session's AS: kept
    _add(tor2, "10.9.5.0/24", OVERRIDE_ASN)  # this session's AS: a loop

    def received(m: Samples, peer: str) -> float:
        return m.get(("kubgp_bgp_prefixes_received", (("family", "ipv4-unicast"),
                                                      ("peer", peer))), -1)  # fmt: skip

    def loops(m: Samples, peer: str) -> float:
        key = ("kubgp_bgp_update_outcome_prefixes_total", (("outcome", "as-loop"), ("peer", peer)))
        return m.get(key, -1)

    scraped: list[Samples] = []

    def counts() -> tuple[float, ...]:
        scraped[:] = [m := _scrape(url)]
        return (loops(m, "tor"), loops(m, "tor2"), received(m, "tor"), received(m, "tor2"))

    wait_for(counts, "as-loop prefixes from tor and tor2, then prefixes received",
             done=lambda got: got == (2.0, 1.0, 1.0, 1.0), interval=0.2)  # fmt: skip
    (m,) = scraped
    lines = [line for line in sp.log().splitlines() if "UPDATE as-loop" in line]
    assert len([line for line in lines if "peer tor (" in line]) == 1
    assert f"holds our own AS {LOCAL_ASN}" in lines[0]
    (line2,) = [line for line in lines if "peer tor2 (" in line]
    assert f"holds our own AS {OVERRIDE_ASN}" in line2 and "10.9.5.0/24" in line2
    assert m[("kubgp_bgp_session_flaps_total", (("peer", "tor"),))] == 0
    assert tor.session_state("kubgp") == tor2.session_state("kubgp") == ESTABLISHED
