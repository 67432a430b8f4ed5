"""Self-tests of the lab: real daemons peer with each other, before our speaker exists.

They prove what later interop tests rely on: sessions come up, an originated route arrives with
the attributes it was given, withdrawals, IPv6, passwords, passive peers, graceful restart,
kill -9 / freeze / resume, network namespaces, and that nothing is left behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from testing.routers.daemon import RouterDaemon
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, IPV4_UNICAST, IPV6_UNICAST, Route
from testing.routers.netns import NetnsPair

pytestmark = pytest.mark.lab

Maker = Callable[..., RouterDaemon]


def _maker(lab: Lab, kind: str) -> Maker:
    return {"bird": lab.bird, "gobgp": lab.gobgp, "frr": lab.frr}[kind]


PAIRS = [("bird", "gobgp"), ("gobgp", "frr"), ("frr", "bird")]


def _pair(lab: Lab, kinds: tuple[str, str], **options: object) -> tuple[RouterDaemon, RouterDaemon]:
    a = _maker(lab, kinds[0])(asn=65001)
    b = _maker(lab, kinds[1])(asn=65002)
    lab.connect(a, b, **options)  # type: ignore[arg-type]
    a.start()
    b.start()
    a.wait_established(b.name)
    b.wait_established(a.name)
    return a, b


def _has(prefix: str) -> Callable[[list[Route]], bool]:
    return lambda routes: any(r.prefix == prefix for r in routes)


def _lacks(prefix: str) -> Callable[[list[Route]], bool]:
    return lambda routes: all(r.prefix != prefix for r in routes)


@pytest.mark.parametrize("kinds", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_session_and_route_attributes(lab: Lab, kinds: tuple[str, str]) -> None:
    a, b = _pair(lab, kinds)
    a.originate(
        "10.10.1.0/24",
        communities=["65001:100", "65001:7"],
        large_communities=["65001:1:2"],
        med=42,
    )
    b.originate("10.20.2.0/24", communities=["65002:200"])

    routes = b.wait_routes(a.name, _has("10.10.1.0/24"))
    assert routes == [
        Route(
            prefix="10.10.1.0/24",
            next_hop=a.export_next_hop4,
            as_path=(65001,),
            med=42,
            communities=("65001:100", "65001:7"),
            large_communities=("65001:1:2",),
            origin=routes[0].origin,
        )
    ]
    back = a.wait_routes(b.name, _has("10.20.2.0/24"))
    assert [(r.prefix, r.as_path, r.communities, r.next_hop) for r in back] == [
        ("10.20.2.0/24", (65002,), ("65002:200",), b.export_next_hop4)
    ]

    a.withdraw("10.10.1.0/24")
    assert b.wait_routes(a.name, _lacks("10.10.1.0/24")) == []


@pytest.mark.parametrize("kind", ["bird", "gobgp", "frr"])
def test_ipv6_unicast_over_an_ipv4_session(lab: Lab, kind: str) -> None:
    other = "gobgp" if kind != "gobgp" else "bird"
    a, b = _pair(lab, (kind, other), families=(IPV4_UNICAST, IPV6_UNICAST))
    a.originate("2001:db8:100::/48", communities=["65001:6"])
    routes = b.wait_routes(a.name, _has("2001:db8:100::/48"), family=IPV6_UNICAST)
    assert [(r.prefix, r.next_hop, r.as_path, r.communities) for r in routes] == [
        ("2001:db8:100::/48", a.export_next_hop6, (65001,), ("65001:6",))
    ]
    assert b.received_routes(a.name, IPV4_UNICAST) == []


@pytest.mark.parametrize("kind", ["bird", "gobgp", "frr"])
def test_an_origination_sets_as_path_and_origin_and_a_learned_route_is_not_passed_on(
    lab: Lab, kind: str
) -> None:
    """What the route import tests build their decision cases on: an origination may start with
    an AS path and set ORIGIN; and a lab router sends its own routes only, never one it learned
    (FRR marks its originations with a tag: a prepended path is not empty either)."""
    other = "gobgp" if kind != "gobgp" else "bird"
    a = _maker(lab, other)(asn=65001)
    b = _maker(lab, kind)(asn=65002)
    c = _maker(lab, other)(asn=65003)
    lab.connect(a, b)
    lab.connect(b, c)
    for router in (a, b, c):
        router.start()
    b.wait_established(a.name)
    b.wait_established(c.name)
    a.originate("10.40.1.0/24")
    b.originate("10.40.2.0/24", as_path=(65009, 65010), origin="incomplete")
    got = a.wait_routes(b.name, _has("10.40.2.0/24"))
    assert [(r.as_path, (r.origin or "").lower()) for r in got] == [
        ((65002, 65009, 65010), "incomplete")
    ]
    b.wait_routes(a.name, _has("10.40.1.0/24"))  # b has learned a's route; then a marker
    b.originate("10.40.3.0/24")
    seen = c.wait_routes(b.name, _has("10.40.3.0/24"))
    assert sorted(r.prefix for r in seen) == ["10.40.2.0/24", "10.40.3.0/24"]


def test_ibgp_carries_local_preference(lab: Lab) -> None:
    a = lab.gobgp(asn=65010)
    b = lab.bird(asn=65010)
    lab.connect(a, b)
    a.start()
    b.start()
    b.wait_established(a.name)
    a.originate("10.30.0.0/24", local_pref=250)
    routes = b.wait_routes(a.name, _has("10.30.0.0/24"))
    assert (routes[0].local_pref, routes[0].as_path) == (250, ())


@pytest.mark.parametrize("kinds", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_tcp_md5_password(lab: Lab, kinds: tuple[str, str]) -> None:
    a, b = _pair(lab, kinds, password="s3cret-lab")
    assert a.session_state(b.name) == ESTABLISHED


def test_wrong_password_never_establishes(lab: Lab) -> None:
    a = lab.gobgp(asn=65001)
    b = lab.bird(asn=65002)
    lab.connect(a, b, password="right")
    b.peers[a.name] = b.peers[a.name].__class__(
        name=a.name, address=a.address, asn=a.asn, port=a.port, password="wrong"
    )
    a.start()
    b.start()
    with pytest.raises(Exception, match="timed out"):
        a.wait_established(b.name, timeout=8)
    assert b.session_state(a.name) != ESTABLISHED


@pytest.mark.parametrize("passive_kind", ["bird", "gobgp", "frr"])
def test_passive_side_only_accepts(lab: Lab, passive_kind: str) -> None:
    active_kind = "gobgp" if passive_kind != "gobgp" else "frr"
    passive = _maker(lab, passive_kind)(asn=65001)
    active = _maker(lab, active_kind)(asn=65002)
    lab.connect(passive, active)
    passive.peers[active.name] = passive.peers[active.name].__class__(
        name=active.name, address=active.address, asn=active.asn, passive=True
    )
    passive.start()
    active.start()
    passive.wait_established(active.name)
    # With both sides passive, nobody connects.
    active.stop()
    active.peers[passive.name] = active.peers[passive.name].__class__(
        name=passive.name, address=passive.address, asn=passive.asn, passive=True
    )
    active.start()
    with pytest.raises(Exception, match="timed out"):
        passive.wait_established(active.name, timeout=6)


@pytest.mark.parametrize("helper_kind", ["bird", "gobgp", "frr"])
def test_graceful_restart_keeps_routes_through_kill_9(lab: Lab, helper_kind: str) -> None:
    """With GR negotiated, the helper keeps a killed peer's routes as stale; without, it drops
    them. This proves the lab's GR switch reaches the daemons."""
    speaker_kind = "gobgp" if helper_kind != "gobgp" else "bird"
    for graceful in (True, False):
        helper = _maker(lab, helper_kind)(asn=65001)
        speaker = _maker(lab, speaker_kind)(asn=65002)
        lab.connect(helper, speaker, graceful_restart=graceful, restart_time=60)
        helper.start()
        speaker.start()
        helper.wait_established(speaker.name)
        speaker.originate("10.40.0.0/24")
        helper.wait_routes(speaker.name, _has("10.40.0.0/24"))
        speaker.kill()
        if graceful:
            # Still there well after the TCP connection is gone.
            helper.wait_routes(speaker.name, _has("10.40.0.0/24"), timeout=3)
            assert helper.session_state(speaker.name) != ESTABLISHED
        else:
            helper.wait_routes(speaker.name, _lacks("10.40.0.0/24"), timeout=15)
        helper.close()


@pytest.mark.parametrize("kind", ["bird", "gobgp", "frr"])
def test_freeze_expires_hold_timer_and_resume_recovers(lab: Lab, kind: str) -> None:
    watcher_kind = "gobgp" if kind != "gobgp" else "bird"
    frozen = _maker(lab, kind)(asn=65001)
    watcher = _maker(lab, watcher_kind)(asn=65002)
    lab.connect(frozen, watcher, hold_time=3)
    frozen.start()
    watcher.start()
    watcher.wait_established(frozen.name)
    frozen.originate("10.50.0.0/24")
    watcher.wait_routes(frozen.name, _has("10.50.0.0/24"))

    frozen.freeze()
    assert frozen.running
    # No keepalives: the watcher's 3 s hold timer expires and it drops the routes.
    watcher.wait_routes(frozen.name, _lacks("10.50.0.0/24"), timeout=15)
    assert watcher.session_state(frozen.name) != ESTABLISHED

    frozen.resume()
    watcher.wait_established(frozen.name, timeout=40)
    watcher.wait_routes(frozen.name, _has("10.50.0.0/24"))


@pytest.mark.parametrize("kind", ["bird", "gobgp", "frr"])
def test_restart_reestablishes_with_the_same_routes(lab: Lab, kind: str) -> None:
    other_kind = "gobgp" if kind != "gobgp" else "frr"
    a = _maker(lab, kind)(asn=65001)
    b = _maker(lab, other_kind)(asn=65002)
    lab.connect(a, b)
    a.start()
    b.start()
    a.originate("10.60.0.0/24", communities=["65001:60"])
    b.wait_routes(a.name, _has("10.60.0.0/24"))
    old_pid = a.pid
    a.restart(hard=True)
    assert a.pid != old_pid
    b.wait_established(a.name, timeout=40)
    routes = b.wait_routes(a.name, _has("10.60.0.0/24"))
    assert routes[0].communities == ("65001:60",)


def test_teardown_ends_every_daemon_and_removes_files() -> None:
    lab = Lab()
    daemons = [lab.bird(asn=65001), lab.gobgp(asn=65002), lab.frr(asn=65003)]
    lab.connect(daemons[0], daemons[1])
    for d in daemons:
        d.start()
    daemons[1].freeze()  # even a stopped process must be ended
    pids = [d.pid for d in daemons]
    assert all(p is not None for p in pids)
    lab.close()
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not lab.root.exists()


@pytest.mark.netns
def test_netns_pair_hosts_a_session_over_ipv4_and_ipv6(lab: Lab, netns_pair: NetnsPair) -> None:
    a_host, b_host = netns_pair.a, netns_pair.b
    # Each side sees only its own namespace's addresses.
    assert b_host.ipv4 not in a_host.run("ip", "-4", "addr").stdout
    assert a_host.ipv4 in a_host.run("ip", "-4", "addr").stdout

    a = lab.frr(asn=65001, address=a_host.ipv4, netns=a_host.netns)
    b = lab.gobgp(asn=65002, address=b_host.ipv4, netns=b_host.netns)
    lab.connect(a, b, multihop=1)
    a.start()
    b.start()
    b.wait_established(a.name)
    a.originate("10.70.0.0/24", next_hop=a_host.ipv4, communities=["65001:70"])
    routes = b.wait_routes(a.name, _has("10.70.0.0/24"))
    assert (routes[0].next_hop, routes[0].communities) == (a_host.ipv4, ("65001:70",))

    v6a = lab.bird(asn=65003, address=a_host.ipv6, router_id="198.51.100.3", netns=a_host.netns)
    v6b = lab.gobgp(asn=65004, address=b_host.ipv6, router_id="198.51.100.4", netns=b_host.netns)
    lab.connect(v6a, v6b, families=(IPV6_UNICAST,), multihop=1)
    v6a.start()
    v6b.start()
    v6b.wait_established(v6a.name)
    v6a.originate("2001:db8:70::/48", next_hop=a_host.ipv6)
    routes6 = v6b.wait_routes(v6a.name, _has("2001:db8:70::/48"), family=IPV6_UNICAST)
    assert routes6[0].next_hop == a_host.ipv6


@pytest.mark.netns
def test_netns_pair_is_deleted() -> None:
    pair = NetnsPair().create()
    names = [pair.a.netns, pair.b.netns]
    assert all(NetnsPair.exists(n) for n in names)
    pair.delete()
    assert not any(NetnsPair.exists(n) for n in names)
