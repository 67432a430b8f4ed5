"""The receiving half at run time (`speaker.route_service`), with real sessions and the real
kernel: in-process `Speaker`s on loopback addresses play the node and its ToRs (no lab
daemons), the node's received routes go into the routing table of network namespace `a` of a
NetnsPair (192.0.2.0/24 and 2001:db8::/64 connected there), and every check reads the kernel
back with iproute2. The real routers are in tests/interop/test_route_import.py.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest

from speaker.api.ipc import PeerStatus
from speaker.api.route_status import RoutesRequest
from speaker.api.schema import DesiredState, parse_desired_state
from speaker.bgp.rib.loc_rib import RouteChange
from speaker.bgp.wire.context import IPV4_UNICAST
from speaker.bgp.wire.nlri import prefix_from_str, prefix_to_str
from speaker.daemon import Speaker
from speaker.route_service import hops_text
from speaker.speaker_metrics import SpeakerMetrics
from testing.kernel_routes import KernelRouteRow, routes
from testing.netlink_faults import LosesOneAnswer
from testing.routers.lab import loopback_address
from testing.routers.netns import NetnsPair
from testing.wait import wait_for_async

pytestmark = pytest.mark.netns

NODE_ASN = 64512
PROTO = 179

Doc = dict[str, Any]


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 120))


def kernel(pair: NetnsPair, *, v6: bool = False, table: int | str = "all") -> dict[str, Any]:
    """Our routes in namespace a: prefix -> (gateways, metric, table)."""
    return {
        r.dst: (r.gateways, r.metric, r.table)
        for r in routes(pair.a.netns, v6=v6, table=table)
        if r.protocol == PROTO
    }


def all_routes(pair: NetnsPair) -> list[KernelRouteRow]:
    return routes(pair.a.netns)


def ip(pair: NetnsPair, *args: str) -> None:
    subprocess.run(["ip", "-n", pair.a.netns, *args], check=True, capture_output=True)


class Tor:
    """An in-process speaker standing for a ToR: its own AS, announcing what the test says."""

    def __init__(self, name: str, asn: int, router_id: str | None = None) -> None:
        self.name = name
        self.asn = asn
        self.address = loopback_address()
        self.router_id = router_id or self.address
        self.speaker = Speaker()
        self.routes: list[Doc] = []
        self.gr = False

    def state(self, node: str) -> DesiredState:
        return parse_desired_state({
            "routerId": self.router_id, "asn": self.asn,
            "listen": {"address": self.address, "port": 179},
            "peers": [{"name": "node", "address": node, "asn": NODE_ASN, "passive": True,
                       "holdTime": 9, "connectRetryTime": 1,
                       "families": ["ipv4-unicast", "ipv6-unicast"],
                       "gracefulRestart": {"enabled": self.gr, "restartTime": 60}}],
            "advertisements": self.routes,
        })  # fmt: skip

    async def announce(self, node: str, *routes: Doc) -> None:
        self.routes = list(routes)
        await self.speaker.apply(self.state(node))


class Rig:
    """The node speaker (its FIB in namespace a) and its ToRs."""

    def __init__(self, pair: NetnsPair, tors: list[Tor], *, restarting: bool = False) -> None:
        self.pair = pair
        self.tors = {t.name: t for t in tors}
        self.address = loopback_address()
        self.node = Speaker(fib_netns=pair.a.netns, restarting=restarting)

    def peer(self, tor: Tor, imports: list[Doc] | None, **extra: Any) -> Doc:
        doc: Doc = {"name": tor.name, "address": tor.address, "asn": tor.asn,
                    "sourceAddress": self.address, "holdTime": 9, "connectRetryTime": 1,
                    "families": ["ipv4-unicast", "ipv6-unicast"], **extra}  # fmt: skip
        if imports is not None:
            doc["import"] = imports
        return doc

    def state(self, imports: list[Doc] | None = None, fib: Doc | None = None, **extra: Any) -> Doc:
        return {"routerId": "192.0.2.100", "asn": NODE_ASN,
                "peers": [self.peer(t, imports, **extra) for t in self.tors.values()],
                **({"fib": fib} if fib is not None else {})}  # fmt: skip

    async def apply(self, doc: Doc) -> None:
        await self.node.apply(parse_desired_state(doc))

    def status(self, name: str) -> PeerStatus:
        return next(s for s in self.node.status() if s.name == name)

    def _up(self, name: str) -> bool:
        return self.status(name).state == "Established"

    async def established(self, *names: str) -> None:
        for name in names or tuple(self.tors):
            await wait_for_async(partial(self._up, name), f"{name} Established")

    async def kernel_is(self, want: dict[str, Any], *, v6: bool = False, what: str = "") -> None:
        await wait_for_async(lambda: kernel(self.pair, v6=v6) == want,
                             what or f"kernel routes {want}", timeout=30)  # fmt: skip
        await self.node.routes.flushed()  # and nothing more on its way (errors recorded)


ACCEPT_ALL = [{"prefix": "0.0.0.0/0", "le": 32, "action": "accept"},
              {"prefix": "::/0", "le": 128, "action": "accept"}]  # fmt: skip


@asynccontextmanager
async def rig(pair: NetnsPair, *tors: Tor, restarting: bool = False) -> AsyncIterator[Rig]:
    r = Rig(pair, list(tors), restarting=restarting)
    try:
        for tor in tors:
            await tor.announce(r.address, *tor.routes)
        yield r
    finally:
        await r.node.close()
        for tor in tors:
            await tor.speaker.close()


def route(prefix: str, next_hop: str, **attrs: Any) -> Doc:
    return {"prefix": prefix, "nextHop": next_hop, **attrs}


def test_ecmp_from_two_tors_then_one_withdraws_then_the_session_goes(
    netns_pair: NetnsPair,
) -> None:
    a, b = Tor("tor-a", 65001), Tor("tor-b", 65002)
    a.routes = [route("0.0.0.0/0", "192.0.2.2"), route("198.51.100.0/24", "192.0.2.2")]
    b.routes = [route("0.0.0.0/0", "192.0.2.3"), route("198.51.100.0/24", "192.0.2.3",
                                                        asPathPrepend=1)]  # fmt: skip

    async def body() -> None:
        async with rig(netns_pair, a, b) as r:
            await r.apply(r.state(ACCEPT_ALL, fib={}))
            await r.established()
            await r.kernel_is({
                "0.0.0.0/0": (("192.0.2.2", "192.0.2.3"), 20, 254),  # different ASes: BIRD's rule
                "198.51.100.0/24": (("192.0.2.2",), 20, 254),  # tor-b's path is longer
            })  # fmt: skip
            st = r.status("tor-a")
            assert (st.prefixes_received, st.prefixes_accepted, st.prefixes_best,
                    st.prefixes_installed) == (2, 2, 2, 2)  # fmt: skip
            st = r.status("tor-b")
            # tor-b is best for nothing (tor-a wins the tie on router id / address) but its
            # path is installed for the default route (multipath)
            assert (st.prefixes_accepted, st.prefixes_installed) == (2, 1)
            metrics = SpeakerMetrics(r.node).registry
            samples = [
                ("kubgp_bgp_prefixes_accepted", {"peer": "tor-b"}, 2.0),
                ("kubgp_bgp_prefixes_best", {"peer": "tor-b"}, 0.0),
                ("kubgp_bgp_prefixes_installed", {"peer": "tor-b"}, 1.0),
                ("kubgp_bgp_prefixes_installed", {"peer": "tor-a"}, 2.0),
                ("kubgp_loc_rib_prefixes", {"family": "ipv4-unicast"}, 2.0),
                ("kubgp_fib_routes", {}, 2.0),
                ("kubgp_fib_routes_failed", {}, 0.0),
                ("kubgp_fib_deferred", {}, 0.0),
                ("kubgp_fib_route_changes_total", {"op": "installed"}, 2.0),
            ]
            got = [(n, lb, metrics.get_sample_value(n, lb)) for n, lb, _ in samples]
            assert got == samples
            await b.announce(r.address, route("198.51.100.0/24", "192.0.2.3"))
            both = ("192.0.2.2", "192.0.2.3")
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254),
                               "198.51.100.0/24": (both, 20, 254)})  # fmt: skip
            await a.speaker.close()  # Cease: no graceful restart, tor-a's routes go at once
            await r.kernel_is({"198.51.100.0/24": (("192.0.2.3",), 20, 254)})

    run(body)


def test_a_second_consumer_gets_every_loc_rib_change_in_order(netns_pair: NetnsPair) -> None:
    """The seam route reflection builds on (`RouteService.add_consumer`): a consumer registered
    beside the FIB gets each Loc-RIB change (family, prefix, Selection or None) in order, so
    replaying them gives what the kernel has."""
    a, b = Tor("tor-a", 65001), Tor("tor-b", 65002)
    a.routes = [route("0.0.0.0/0", "192.0.2.2"), route("198.51.100.0/24", "192.0.2.2")]
    b.routes = [route("0.0.0.0/0", "192.0.2.3")]
    seen: list[tuple[str, tuple[str, ...] | None]] = []
    table: dict[str, tuple[str, ...]] = {}

    def consumer(changes: Sequence[RouteChange]) -> None:
        for family, prefix, selection, _ in changes:
            text = prefix_to_str(prefix, family[0])
            hops = None if selection is None else tuple(sorted(hops_text(selection.next_hops)))
            seen.append((text, hops))
            if hops is None:
                table.pop(text, None)
            else:
                table[text] = hops

    def in_kernel() -> dict[str, tuple[str, ...]]:
        return {p: g for p, (g, _, _) in kernel(netns_pair).items()}

    async def body() -> None:
        async with rig(netns_pair, a, b) as r:
            r.node.routes.add_consumer(consumer)
            await r.apply(r.state(ACCEPT_ALL, fib={}))
            await r.established()
            both = ("192.0.2.2", "192.0.2.3")
            await r.kernel_is({"0.0.0.0/0": (both, 20, 254),
                               "198.51.100.0/24": (("192.0.2.2",), 20, 254)})  # fmt: skip
            assert table == in_kernel()
            await a.announce(r.address, route("0.0.0.0/0", "192.0.2.2"))  # the /24 withdrawn
            await r.kernel_is({"0.0.0.0/0": (both, 20, 254)})
            assert seen.pop() == ("198.51.100.0/24", None)
            assert table == in_kernel()
            await b.speaker.close()  # Cease: the default narrows to tor-a
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254)})
            assert seen.pop() == ("0.0.0.0/0", ("192.0.2.2",))
            assert table == in_kernel()

    run(body)


def test_always_compare_med_switches_the_best_path_without_a_session_reset(
    netns_pair: NetnsPair,
) -> None:
    """`alwaysCompareMed`: MED from different neighbouring ASes decides too. tor-a (lower
    router id) sends MED 50, tor-b MED 10: tor-a is best by router id until MED is compared
    across ASes; the change re-decides in place (no session reset) and the kernel follows."""
    a = Tor("tor-a", 65001, router_id="192.0.2.201")
    b = Tor("tor-b", 65002, router_id="192.0.2.202")
    a.routes = [route("198.51.100.0/24", "192.0.2.2", med=50)]
    b.routes = [route("198.51.100.0/24", "192.0.2.3", med=10)]

    async def body() -> None:
        async with rig(netns_pair, a, b) as r:
            fib = {"maxPaths": 1}
            await r.apply(r.state(ACCEPT_ALL, fib=fib))
            await r.established()
            await r.kernel_is({"198.51.100.0/24": (("192.0.2.2",), 20, 254)})
            flaps = r.node.runners["tor-a"].session.counters.flaps
            await r.apply({**r.state(ACCEPT_ALL, fib=fib), "alwaysCompareMed": True})
            await r.kernel_is({"198.51.100.0/24": (("192.0.2.3",), 20, 254)})
            entry = r.node.route_report(RoutesRequest(prefix="198.51.100.0/24")).prefixes[0]
            assert [p.note for p in entry.paths if not p.best] == ["not best: tor-b wins at MED"]
            await r.apply(r.state(ACCEPT_ALL, fib=fib))
            await r.kernel_is({"198.51.100.0/24": (("192.0.2.2",), 20, 254)})
            assert r.node.runners["tor-a"].session.counters.flaps == flaps
            assert r.status("tor-a").state == "Established"

    run(body)


def test_import_policy_decides_and_a_policy_change_reimports_without_a_session_reset(
    netns_pair: NetnsPair,
) -> None:
    a = Tor("tor-a", 65001)
    a.routes = [route("0.0.0.0/0", "192.0.2.2"), route("198.51.100.0/25", "192.0.2.2",
                communities=["65001:10"]), route("198.51.100.128/25", "192.0.2.2")]  # fmt: skip

    async def body() -> None:
        async with rig(netns_pair, a) as r:
            only_default = [{"prefix": "0.0.0.0/0", "action": "accept"}]
            await r.apply(r.state(only_default, fib={}))
            await r.established()
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254)})
            session = r.node.runners["tor-a"].session
            report = r.node.route_report(RoutesRequest(prefix="198.51.100.0/24"))
            assert [(e.prefix, e.installed) for e in report.prefixes] == [
                ("198.51.100.0/25", False), ("198.51.100.128/25", False)]  # fmt: skip
            path = report.prefixes[0].paths[0]
            assert (path.policy, path.rule) == ("reject", None)
            assert "no import rule matched" in (path.note or "")
            assert "accept nothing" in (report.prefixes[0].reason or "")
            tagged: list[Doc] = [{"communities": ["65001:10"], "action": "accept"},
                      {"prefix": "0.0.0.0/0", "le": 32, "action": "reject"}]  # fmt: skip
            await r.apply(r.state(tagged, fib={}))
            await r.kernel_is({"198.51.100.0/25": (("192.0.2.2",), 20, 254)})
            # the same session, never down: the policy change reset nothing
            assert r.node.runners["tor-a"].session is session
            assert (session.state.name, session.counters.flaps) == ("Established", 0)
            report = r.node.route_report(RoutesRequest(prefix="0.0.0.0/0"))  # all of IPv4
            assert [(e.prefix, e.paths[0].policy, e.paths[0].rule) for e in report.prefixes] == [
                ("0.0.0.0/0", "reject", 1), ("198.51.100.0/25", "accept", 0),
                ("198.51.100.128/25", "reject", 1)]  # fmt: skip
            await r.apply(r.state(None, fib={}))  # no import rules: accept nothing
            await r.kernel_is({})

    run(body)


def test_fib_settings_change_table_protocol_metric_and_width_then_fib_off_removes(
    netns_pair: NetnsPair,
) -> None:
    a, b = Tor("tor-a", 65001), Tor("tor-b", 65002)
    a.routes = [route("0.0.0.0/0", "192.0.2.2")]
    b.routes = [route("0.0.0.0/0", "192.0.2.3")]
    pair = netns_pair

    async def body() -> None:
        async with rig(pair, a, b) as r:
            await r.apply(r.state(ACCEPT_ALL))  # no fib: selected, nothing installed
            await r.established()
            await wait_for_async(lambda: r.status("tor-a").prefixes_best == 1, "selected")
            summary = r.node.fib_summary()
            assert summary is not None and (summary.state, summary.selected) == ("off", 1)
            assert kernel(pair) == {}
            assert r.status("tor-a").prefixes_installed == 0
            await r.apply(r.state(ACCEPT_ALL, fib={}))
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2", "192.0.2.3"), 20, 254)})
            await r.apply(r.state(ACCEPT_ALL, fib={"maxPaths": 1}))
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254)})
            await r.apply(r.state(ACCEPT_ALL, fib={"maxPaths": 1, "metric": 30}))
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 30, 254)})
            await r.apply(r.state(ACCEPT_ALL, fib={"table": 1000}))
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2", "192.0.2.3"), 20, 1000)})
            await r.apply(r.state(ACCEPT_ALL, fib={"table": 1000, "protocol": 200}))
            await wait_for_async(
                lambda: [(x.dst, x.protocol, x.table) for x in all_routes(pair)
                         if x.protocol in (PROTO, 200)] == [("0.0.0.0/0", 200, 1000)],
                "the routes under protocol 200 only",
            )  # fmt: skip
            await r.apply(r.state(ACCEPT_ALL))
            await wait_for_async(
                lambda: [x for x in all_routes(pair) if x.protocol in (PROTO, 200)] == [],
                "fib off: our routes removed",
            )
            assert r.status("tor-a").state == "Established"

    run(body)


def test_unreachable_next_hop_waits_for_a_connected_route_and_goes_with_it(
    netns_pair: NetnsPair,
) -> None:
    a = Tor("tor-a", 65001)
    a.routes = [route("198.51.100.0/24", "203.0.113.9"), route("0.0.0.0/0", "192.0.2.2")]
    pair = netns_pair

    async def body() -> None:
        async with rig(pair, a) as r:
            await r.apply(r.state(ACCEPT_ALL, fib={}))
            await r.established()
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254)})
            entry = r.node.route_report(RoutesRequest(prefix="198.51.100.0/24")).prefixes[0]
            assert not entry.installed and not entry.paths[0].eligible
            assert "203.0.113.9 is not reachable" in (entry.reason or "")
            # a route through a gateway does not make it reachable (the kernel would refuse)
            rereads = r.node.routes.node_rereads
            ip(pair, "route", "add", "203.0.113.0/24", "via", "192.0.2.2")
            await wait_for_async(lambda: r.node.routes.node_rereads > rereads, "a re-read")
            await r.node.routes.flushed()
            assert kernel(pair) == {"0.0.0.0/0": (("192.0.2.2",), 20, 254)}
            ip(pair, "route", "replace", "203.0.113.0/24", "dev", "veth-a")
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254),
                               "198.51.100.0/24": (("203.0.113.9",), 20, 254)})  # fmt: skip
            assert r.node.routes.node_rereads >= 2
            ip(pair, "route", "del", "203.0.113.0/24", "dev", "veth-a")
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254)})

    run(body)


def test_a_static_route_is_never_touched_and_ours_goes_in_once_it_is_gone(
    netns_pair: NetnsPair,
) -> None:
    a = Tor("tor-a", 65001)
    a.routes = [route("198.51.100.0/24", "192.0.2.2"), route("203.0.113.0/24", "192.0.2.2")]
    pair = netns_pair

    async def body() -> None:
        # an operator's route at our metric (it would be replaced by a replace) and one at
        # another metric (both coexist)
        ip(pair, "route", "add", "198.51.100.0/24", "via", "192.0.2.9", "metric", "20")
        ip(pair, "route", "add", "203.0.113.0/24", "via", "192.0.2.9", "metric", "5")
        async with rig(pair, a) as r:
            await r.apply(r.state(ACCEPT_ALL, fib={}))
            await r.established()
            await r.kernel_is({"203.0.113.0/24": (("192.0.2.2",), 20, 254)})
            statics = {(x.dst, x.gateways, x.metric) for x in all_routes(pair) if x.protocol == 3}
            assert statics == {("198.51.100.0/24", ("192.0.2.9",), 20),
                               ("203.0.113.0/24", ("192.0.2.9",), 5)}  # fmt: skip
            entry = r.node.route_report(RoutesRequest(prefix="198.51.100.0/24")).prefixes[0]
            assert entry.selected and not entry.installed
            assert "not ours" in (entry.reason or "")
            summary = r.node.fib_summary()
            assert summary is not None and summary.failed == 1
            ip(pair, "route", "del", "198.51.100.0/24", "via", "192.0.2.9", "metric", "20")
            await r.kernel_is({"198.51.100.0/24": (("192.0.2.2",), 20, 254),
                               "203.0.113.0/24": (("192.0.2.2",), 20, 254)})  # fmt: skip
            # ours going away leaves the operator's other route alone
            await a.announce(r.address)
            await r.kernel_is({})
            assert [(x.dst, x.protocol) for x in all_routes(pair) if x.protocol == 3] == [
                ("203.0.113.0/24", 3)]  # fmt: skip

    run(body)


def _link_local_ready(pair: NetnsPair) -> bool:
    out = subprocess.run(["ip", "-n", pair.a.netns, "-6", "addr", "show", "dev",
                          pair.a.interface, "scope", "link"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return "fe80::" in out and "tentative" not in out


def test_lost_kernel_answers_are_repaired_and_what_the_speaker_believes_is_the_kernel(
    netns_pair: NetnsPair,
) -> None:
    """The writer keeps no copy of the table: the speaker's idea of the kernel is the Loc-RIB's
    selection, but for batches in flight and refused routes. Answers of a batch lost on the
    netlink socket make the state of its routes unknown: a reconcile reads the kernel."""
    a = Tor("tor-a", 65001)
    pair = netns_pair
    hosts = [f"198.51.100.{i}/32" for i in range(1, 201)]

    async def body() -> None:
        async with rig(pair, a) as r:
            await r.apply(r.state(ACCEPT_ALL, fib={}))
            await r.established()
            # the veth's link-local address past DAD, so no link event (which would bring a
            # reconcile of its own) comes while the test watches for the one the loss brings
            await wait_for_async(partial(_link_local_ready, pair), "the link-local address")
            await wait_for_async(lambda: not r.node.routes.rereading, "node routes re-read")
            await r.node.routes.flushed()
            writer = r.node.routes.fib_writer
            assert writer is not None
            proxy = LosesOneAnswer(writer._sock, nth=1)
            writer._sock = proxy  # type: ignore[assignment]
            await a.announce(r.address, *(route(h, "192.0.2.2") for h in hosts))
            want = dict.fromkeys(hosts, (("192.0.2.2",), 20, 254))
            await r.kernel_is(want)

            def summary_is(failed: int, installed: int) -> Callable[[], bool]:
                def check() -> bool:  # the summary may lag by SUMMARY_MAX_AGE
                    summary = r.node.fib_summary()
                    return summary is not None and (summary.failed, summary.installed) == (
                        failed,
                        installed,
                    )

                return check

            await wait_for_async(summary_is(0, 200), "the lost batch's routes known, no error")
            assert proxy.lost == 1
            service = r.node.routes
            for h in hosts:
                family, prefix = IPV4_UNICAST, prefix_from_str(h)[1]
                assert service.reason(family, prefix) is None
                assert hops_text(service.kernel_hops(family, prefix) or ()) == ["192.0.2.2"]
            # known as ours: a change is a replace, never an exclusive create (EEXIST)
            await a.announce(r.address, *(route(h, "192.0.2.3") for h in hosts))
            await r.kernel_is(dict.fromkeys(hosts, (("192.0.2.3",), 20, 254)))
            await wait_for_async(summary_is(0, 200), "200 replaced, no error")
            await a.announce(r.address)
            await r.kernel_is({})
            await wait_for_async(summary_is(0, 0), "all removed, no error")

    run(body)


def test_a_link_that_goes_down_and_up_gets_its_routes_back(netns_pair: NetnsPair) -> None:
    a = Tor("tor-a", 65001)
    a.routes = [route("0.0.0.0/0", "192.0.2.2"), route("::/0", "2001:db8::2")]
    pair = netns_pair

    async def body() -> None:
        async with rig(pair, a) as r:
            await r.apply(r.state(ACCEPT_ALL, fib={}))
            await r.established()
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254)})
            await r.kernel_is({"::/0": (("2001:db8::2",), 20, 254)}, v6=True)
            # down and up at once: the kernel flushes our routes without a word
            subprocess.run(["ip", "-n", pair.a.netns, "-batch", "-"], check=True, text=True,
                           input="link set veth-a down\nlink set veth-a up\n")  # fmt: skip
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254)})
            # IPv6 lost its address with the link (keep_addr_on_down=0): no connected route,
            # the next hop is unreachable, nothing installed; the address back, the route back
            await r.kernel_is({}, v6=True)
            entry = r.node.route_report(RoutesRequest(prefix="::/0")).prefixes[0]
            assert "2001:db8::2 is not reachable" in (entry.reason or "")
            ip(pair, "addr", "add", "2001:db8::1/64", "dev", "veth-a", "nodad")
            await r.kernel_is({"::/0": (("2001:db8::2",), 20, 254)}, v6=True)

    run(body)


def test_close_withdraws_or_keeps_and_a_restart_reconciles_after_end_of_rib(
    netns_pair: NetnsPair,
) -> None:
    a = Tor("tor-a", 65001)
    a.gr = True
    a.routes = [route("0.0.0.0/0", "192.0.2.2"), route("198.51.100.0/24", "192.0.2.2")]
    pair = netns_pair

    async def body() -> None:
        gr = {"gracefulRestart": {"enabled": True, "restartTime": 60}}
        r = Rig(pair, [a], restarting=True)
        try:
            await a.announce(r.address, *a.routes)
            await r.apply(r.state(ACCEPT_ALL, fib={}, **gr))
            # nothing of ours in the kernel at start: forwarding state not preserved (F bit 0)
            assert r.node.routes.forwarding_preserved is False
            await r.established()
            neg = a.speaker.runners["node"].session.negotiated
            assert neg is not None and neg.peer_graceful_restart is not None
            assert not neg.peer_graceful_restart.forwarding_preserved(IPV4_UNICAST)
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254),
                               "198.51.100.0/24": (("192.0.2.2",), 20, 254)})  # fmt: skip
            await r.node.close(graceful_restart=True)  # routes stay in the kernel
            assert len(kernel(pair)) == 2
            await a.announce(r.address, route("0.0.0.0/0", "192.0.2.2"))  # one withdrawn
            # a new speaker process: finds them, keeps them until End-of-RIB, F bit set
            r.node = Speaker(fib_netns=pair.a.netns, restarting=True)
            await r.apply(r.state(ACCEPT_ALL, fib={}, **gr))
            assert r.node.routes.forwarding_preserved is True
            assert r.node.routes.fib_state() == "deferred"
            assert len(kernel(pair)) == 2
            await r.established()
            neg = a.speaker.runners["node"].session.negotiated
            assert neg is not None and neg.peer_graceful_restart is not None
            assert neg.peer_graceful_restart.forwarding_preserved(IPV4_UNICAST)
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254)},
                              what="the withdrawn route gone after End-of-RIB")  # fmt: skip
            assert r.node.routes.fib_state() == "on"
            await r.node.close()  # withdraw: our routes leave with the sessions
            assert kernel(pair) == {}
        finally:
            await r.node.close()
            await a.speaker.close()

    run(body)


def test_helper_keeps_a_restarting_peers_routes_until_its_end_of_rib(
    netns_pair: NetnsPair,
) -> None:
    a = Tor("tor-a", 65001)
    a.gr = True
    a.routes = [route("0.0.0.0/0", "192.0.2.2"), route("198.51.100.0/24", "192.0.2.2")]
    pair = netns_pair

    async def body() -> None:
        gr = {"gracefulRestart": {"enabled": True, "restartTime": 60}}
        async with rig(pair, a) as r:
            await r.apply(r.state(ACCEPT_ALL, fib={}, **gr))
            await r.established()
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254),
                               "198.51.100.0/24": (("192.0.2.2",), 20, 254)})  # fmt: skip
            await a.speaker.close(graceful_restart=True)  # the ToR "restarts"
            await wait_for_async(lambda: r.status("tor-a").state != "Established", "down")
            entry = r.node.route_report(RoutesRequest(prefix="0.0.0.0/0")).prefixes[0]
            assert entry.installed and entry.paths[0].stale
            assert len(kernel(pair)) == 2  # stale, still installed
            a.speaker = Speaker(restarting=True)  # back, without the /24
            await a.announce(r.address, route("0.0.0.0/0", "192.0.2.2"))
            await r.kernel_is({"0.0.0.0/0": (("192.0.2.2",), 20, 254)})

    run(body)


def test_status_and_report_answer_why_a_prefix_is_not_in_the_kernel(
    netns_pair: NetnsPair,
) -> None:
    a, b = Tor("tor-a", 65001), Tor("tor-b", 65002)
    a.routes = [route("198.51.100.0/24", "192.0.2.2", asPathPrepend=2),
                route("203.0.113.0/24", "192.0.2.2")]  # fmt: skip
    b.routes = [route("198.51.100.0/24", "192.0.2.3"), route("203.0.113.0/24", "192.0.2.3")]

    async def body() -> None:
        async with rig(netns_pair, a, b) as r:
            imports: list[Doc] = [{"prefix": "203.0.113.0/24", "action": "accept",
                        "set": {"localPreference": 200}}, *ACCEPT_ALL]  # fmt: skip
            await r.apply({**r.state(ACCEPT_ALL, fib={}),
                           "peers": [r.peer(a, imports), r.peer(b, ACCEPT_ALL)]})  # fmt: skip
            await r.established()
            await r.kernel_is({"198.51.100.0/24": (("192.0.2.3",), 20, 254),
                               "203.0.113.0/24": (("192.0.2.2",), 20, 254)})  # fmt: skip
            report = r.node.route_report(RoutesRequest())
            by = {e.prefix: {p.peer: p for p in e.paths} for e in report.prefixes}
            assert by["198.51.100.0/24"]["tor-a"].note == "not best: tor-b wins at AS_PATH length"
            assert by["198.51.100.0/24"]["tor-a"].as_path == "65001 65001 65001"
            assert by["203.0.113.0/24"]["tor-a"].local_pref == 200
            assert by["203.0.113.0/24"]["tor-b"].note == "not best: tor-a wins at LOCAL_PREF"
            assert (report.total, report.truncated) == (2, False)
            one = r.node.route_report(RoutesRequest(limit=1, peer="tor-b"))
            assert (one.total, one.truncated, len(one.prefixes)) == (2, True, 1)
            assert [p.peer for p in one.prefixes[0].paths] == ["tor-b"]
            summary = r.node.fib_summary()
            assert summary is not None
            assert (summary.state, summary.selected, summary.installed, summary.failed) == (
                "on", 2, 2, 0)  # fmt: skip

    run(body)
