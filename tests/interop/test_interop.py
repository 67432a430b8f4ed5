"""Our speaker (`kubgp-speaker run`, a real process) against real BIRD, GoBGP and FRR.

Lean on purpose: each test reuses one session for several checks. On loopback, GoBGP and FRR
refuse a 127/8 next hop (withdraw / Martian), so advertisements carry an explicit next hop
from 192.0.2.0/24; the IPv6 test runs in a network namespace pair where next-hop self is a
real address.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
from collections.abc import Callable

import pytest

from testing.procs import SpeakerProcess
from testing.routers.bird import Bird
from testing.routers.daemon import RouterDaemon
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, IPV4_UNICAST, IPV6_UNICAST, PeerSpec, Route
from testing.routers.netns import NetnsPair
from testing.wait import wait_for

pytestmark = pytest.mark.lab

KINDS = ["bird", "gobgp", "frr"]
Factory = Callable[..., SpeakerProcess]
LOCAL_ASN = 4200000001  # 4-octet on both sides (RFC 6793)
PEER_ASN = 4200000002
NH = "192.0.2.10"


def _daemon(
    lab: Lab, kind: str, asn: int, *, address: str | None = None, netns: str | None = None
) -> RouterDaemon:
    maker: Callable[..., RouterDaemon] = {"bird": lab.bird, "gobgp": lab.gobgp, "frr": lab.frr}[
        kind
    ]
    return maker(asn=asn, address=address, netns=netns)


def _peer(name: str, daemon: RouterDaemon, me: str, **kw: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "name": name,
        "address": daemon.address,
        "asn": daemon.asn,
        "sourceAddress": me,
        "holdTime": 9,
        "connectRetryTime": 1,
        "ebgpMultihop": 255,
    }
    doc.update(kw)
    return doc


def _hosts(n: int, start: str = "10.100.0.0") -> list[str]:
    base = int(ipaddress.IPv4Address(start))
    return [f"{ipaddress.IPv4Address(base + i)}/32" for i in range(n)]


def _transitions(sp: SpeakerProcess, peer: str, to: str) -> int:
    """How many times the speaker logged `peer` entering state `to`."""
    return sum(
        1 for line in sp.log().splitlines() if f"peer {peer} " in line and f"-> {to}" in line
    )


@pytest.mark.parametrize("kind", KINDS)
def test_ebgp_ipv4_10k_routes_attributes_and_change_without_reset(
    lab: Lab, speaker_factory: Factory, kind: str
) -> None:
    me = lab.address()
    tor = _daemon(lab, kind, PEER_ASN)
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=LOCAL_ASN, hold_time=9)
    tor.start()
    hosts = _hosts(10_000)
    pod = {"prefix": "10.244.1.0/24", "nextHop": NH, "communities": ["64512:100"],
           "largeCommunities": ["64512:1:2"], "med": 10}  # fmt: skip
    svc = {"nextHop": NH, "communities": ["64512:200", "64512:201"], "med": 20}

    def doc(advs: list[dict[str, object]]) -> dict[str, object]:
        return {
            "routerId": me,
            "asn": LOCAL_ASN,
            "listen": {"address": me, "port": 179},
            "peers": [_peer("tor", tor, me)],
            "advertisements": advs,
        }

    sp = speaker_factory()
    sp.start(doc([pod] + [{"prefix": h, **svc} for h in hosts]))
    tor.wait_established("kubgp")
    routes = tor.wait_routes("kubgp", lambda rs: len(rs) == 10_001, timeout=60)
    by_prefix = {r.prefix: r for r in routes}
    assert by_prefix["10.244.1.0/24"] == Route(
        prefix="10.244.1.0/24",
        next_hop=NH,
        as_path=(LOCAL_ASN,),
        med=10,
        communities=("64512:100",),
        large_communities=("64512:1:2",),
        origin="IGP",
    )
    assert {(r.next_hop, r.as_path, r.med, r.communities, r.local_pref, r.origin)
            for p, r in by_prefix.items() if p != "10.244.1.0/24"} == {
        (NH, (LOCAL_ASN,), 20, ("64512:200", "64512:201"), None, "IGP")
    }  # fmt: skip

    # Change: withdraw 100, add 50, re-attribute 10 (prepend + another community), via SIGHUP.
    kept = hosts[100:]
    added = _hosts(50, "10.200.0.0")
    drained = kept[:10]
    advs = [pod] + [{"prefix": h, **svc} for h in kept[10:] + added]
    advs += [{"prefix": h, **svc, "communities": ["64512:999"], "asPathPrepend": 2}
             for h in drained]  # fmt: skip
    at = len(sp.log())
    sp.reload(doc(advs))
    sp.wait_log("SIGHUP: applied", after=at)

    def converged(rs: list[Route]) -> bool:
        got = {r.prefix: r for r in rs}
        return (
            len(got) == 10_001 - 100 + 50
            and all(h in got for h in added)
            and all(got.get(h) is not None and got[h].communities == ("64512:999",)
                    for h in drained)
        )  # fmt: skip

    routes = tor.wait_routes("kubgp", converged, timeout=60)
    got = {r.prefix: r for r in routes}
    assert not set(hosts[:100]) & got.keys()
    assert got[drained[0]].as_path == (LOCAL_ASN,) * 3
    assert got[kept[10]].as_path == (LOCAL_ASN,) and got[added[0]].med == 20
    if isinstance(tor, Bird):
        # BIRD asks for the table again (ROUTE-REFRESH, RFC 2918): we re-send all of it. (GoBGP
        # and FRR keep an Adj-RIB-In in the lab, so their soft reset sends no ROUTE-REFRESH.)
        at = len(sp.log())
        tor.birdc("reload", "in", tor.protocol("kubgp"))
        sp.wait_log(f"ROUTE-REFRESH ipv4-unicast: re-sent {len(got)} prefixes", after=at)
        assert len(tor.wait_routes("kubgp", converged, timeout=60)) == len(got)
    # No session reset: one Established, ever, on both sides of the log.
    log = sp.log()
    assert "-> Idle" not in log and _transitions(sp, "tor", "Established") == 1
    assert tor.session_state("kubgp") == ESTABLISHED
    assert sp.stop() == 0


def _has(prefix: str) -> Callable[[list[Route]], bool]:
    return lambda routes: any(r.prefix == prefix for r in routes)


def _knock(target: str, source: str) -> bytes:
    """Connect from `source` like an unconfigured router would; what did we get before close?"""
    with socket.create_connection((target, 179), source_address=(source, 0), timeout=5) as s:
        try:
            return s.recv(4096)
        except ConnectionResetError:
            return b""


@pytest.mark.parametrize("kind", KINDS)
def test_ibgp_stranger_refused_restart_freeze_and_wrong_asn(
    lab: Lab, speaker_factory: Factory, kind: str
) -> None:
    me = lab.address()
    tor = _daemon(lab, kind, 65010)
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=65010, hold_time=6)
    tor.originate("10.99.0.0/24")  # what it sends us lands in our Adj-RIB-In
    tor.originate("10.99.1.0/24")
    tor.start()

    def doc(asn: int, max_prefixes: int = 0) -> dict[str, object]:
        return {
            "routerId": me,
            "asn": asn,
            "listen": {"address": me, "port": 179},
            "peers": [_peer("tor", tor, me, asn=65010, holdTime=6, maxPrefixes=max_prefixes)],
            "advertisements": [{"prefix": "10.50.0.0/24", "nextHop": NH,
                                "localPreference": 250, "communities": ["65010:1"]}],
        }  # fmt: skip

    sp = speaker_factory()
    sp.start(doc(65010))
    tor.wait_established("kubgp")
    (route,) = tor.wait_routes("kubgp", _has("10.50.0.0/24"))
    assert (route.local_pref, route.as_path, route.next_hop) == (250, (), NH)
    sp.wait_log(f"peer tor ({tor.address}): 2 prefixes received")  # its routes, in our RIB-In

    # A router we do not know connects: closed before any OPEN; the session is untouched.
    stranger = lab.address()
    assert _knock(me, stranger) == b""
    sp.wait_log(f"refused a connection from {stranger}")
    assert tor.session_state("kubgp") == ESTABLISHED and "-> Idle" not in sp.log()

    # The peer restarts: the session comes back and the route is sent again.
    tor.restart(hard=True)
    tor.wait_established("kubgp", timeout=40)
    tor.wait_routes("kubgp", _has("10.50.0.0/24"))

    # The peer freezes: our hold timer (6 s) fires; after SIGCONT the session comes back.
    at = len(sp.log())
    tor.freeze()
    sp.wait_log("Established -> Idle (hold-timer-expired", after=at, timeout=20)
    tor.resume()
    tor.wait_established("kubgp", timeout=60)
    tor.wait_routes("kubgp", _has("10.50.0.0/24"))

    # A receive limit below what the peer sends: Cease/1 (RFC 4486) once it is exceeded.
    at = len(sp.log())
    sp.reload(doc(65010, max_prefixes=1))
    sp.wait_log("sent NOTIFICATION Cease/MaximumNumberOfPrefixesReached", after=at, timeout=30)

    # We come back with the wrong ASN (a session parameter: only this session is reset);
    # the peer refuses us and says why; we log it.
    at = len(sp.log())
    sp.reload(doc(65011))
    sp.wait_log("session parameters changed", after=at)
    sp.wait_log("received NOTIFICATION OPENMessageError/BadPeerAS", after=at, timeout=30)
    assert sp.stop() == 0


@pytest.mark.netns
@pytest.mark.parametrize("kind", KINDS)
def test_ipv6_session_and_ipv6_over_an_ipv4_session(
    lab: Lab, netns_pair: NetnsPair, speaker_factory: Factory, kind: str
) -> None:
    a, b = netns_pair.a, netns_pair.b
    both = (IPV4_UNICAST, IPV6_UNICAST)
    v4 = _daemon(lab, kind, 65002, address=b.ipv4, netns=b.netns)
    v4.peers["kubgp"] = PeerSpec(name="kubgp", address=a.ipv4, asn=65001, families=both)
    v6 = _daemon(lab, kind, 65003, address=b.ipv6, netns=b.netns)
    v6.peers["kubgp"] = PeerSpec(name="kubgp", address=a.ipv6, asn=65001,
                                 families=(IPV6_UNICAST,))  # fmt: skip
    v4.start()
    v6.start()
    sp = speaker_factory(netns=a.netns)
    sp.start({
        "routerId": a.ipv4,
        "asn": 65001,
        "peers": [
            {"name": "v4", "address": b.ipv4, "asn": 65002, "families": list(both),
             "holdTime": 9, "connectRetryTime": 1},
            {"name": "v6", "address": b.ipv6, "asn": 65003, "holdTime": 9,
             "connectRetryTime": 1},
        ],
        "advertisements": [
            {"prefix": "10.60.0.0/24", "communities": ["65001:4"]},
            {"prefix": "2001:db8:60::/48", "peers": ["v6"], "communities": ["65001:6"]},
            {"prefix": "2001:db8:61::/48", "peers": ["v4"], "nextHop": a.ipv6},
        ],
    })  # fmt: skip
    v4.wait_established("kubgp")
    v6.wait_established("kubgp")
    (r4,) = v4.wait_routes("kubgp", _has("10.60.0.0/24"))
    assert (r4.next_hop, r4.as_path, r4.communities) == (a.ipv4, (65001,), ("65001:4",))
    (r46,) = v4.wait_routes("kubgp", _has("2001:db8:61::/48"), family=IPV6_UNICAST)
    assert (r46.next_hop, r46.as_path) == (a.ipv6, (65001,))
    (r6,) = v6.wait_routes("kubgp", _has("2001:db8:60::/48"), family=IPV6_UNICAST)
    assert (r6.next_hop, r6.as_path, r6.communities) == (a.ipv6, (65001,), ("65001:6",))
    assert v6.received_routes("kubgp", IPV4_UNICAST) == []
    assert sp.stop() == 0


def test_sighup_touches_only_what_changed_and_sigterm_ceases(
    lab: Lab, speaker_factory: Factory
) -> None:
    me = lab.address()
    t1, t2 = lab.bird(asn=65021), lab.bird(asn=65022)
    for tor in (t1, t2):
        tor.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=65001, hold_time=9)
        tor.start()

    def doc(peers: list[dict[str, object]]) -> dict[str, object]:
        return {"routerId": me, "asn": 65001, "listen": {"address": me, "port": 179},
                "peers": peers, "advertisements": [{"prefix": "10.70.0.0/24"}]}  # fmt: skip

    p1, p2 = _peer("t1", t1, me), _peer("t2", t2, me)
    sp = speaker_factory()
    sp.start(doc([p1, p2]))
    for tor in (t1, t2):
        tor.wait_established("kubgp")
        tor.wait_routes("kubgp", _has("10.70.0.0/24"))

    at = len(sp.log())
    sp.reload(doc([p1]))  # remove t2
    sp.wait_log("Established -> Idle (peer-deconfigured", after=at)
    assert "Received: Peer de-configured" in t2.log_tail(200)
    sp.reload(doc([p1, p2]))  # add it back
    t2.wait_established("kubgp")
    t2.wait_routes("kubgp", _has("10.70.0.0/24"))

    at = len(sp.log())
    sp.config.write_text("peers: [")  # a broken file: logged, running state kept
    sp.signal(signal.SIGHUP)
    sp.wait_log("keeping the running state", after=at)

    at = len(sp.log())
    sp.reload(doc([p1, {**p2, "holdTime": 12}]))  # a session parameter of t2 only
    sp.wait_log("session parameters changed", after=at)
    wait_for(lambda: _transitions(sp, "t2", "Established") == 3, "t2 re-established")
    t2.wait_established("kubgp")
    t2.wait_routes("kubgp", _has("10.70.0.0/24"))
    assert "Received: Other configuration change" in t2.log_tail(200)
    assert _transitions(sp, "t1", "Established") == 1 and _transitions(sp, "t1", "Idle") == 0
    assert _transitions(sp, "t2", "Established") == 3
    assert t1.session_state("kubgp") == ESTABLISHED

    assert sp.stop() == 0
    log = sp.log()
    assert "Established -> Idle (administrative-shutdown: sent NOTIFICATION" in log
    assert 'Received: Administrative shutdown: "kubgp-speaker shutting down"' in t1.log_tail(200)
