"""The FIB writer against the real kernel, each test in network namespaces it creates.

Routes are read back with iproute2 (`ip -N -j route`), not with the writer's own parser, and
counted in /proc/net/fib_triestat for the large batch. The namespace `a` has 192.0.2.1/24 and
2001:db8::1/64 on its veth: any address of those networks is a usable gateway.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress

import pytest

from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST, Family
from speaker.bgp.wire.nlri import Prefix, prefix_from_int, prefix_from_str
from speaker.netlink import (
    DEFAULT_PROTOCOL,
    AsyncFibWriter,
    FibChange,
    FibResult,
    FibWriter,
    Op,
)
from testing.kernel_routes import KernelRouteRow, fib_prefixes, routes
from testing.netlink_faults import LosesOneAnswer
from testing.routers.netns import NetnsPair

pytestmark = pytest.mark.netns

V4, V6 = IPV4_UNICAST, IPV6_UNICAST


def gw(*texts: str) -> tuple[bytes, ...]:
    return tuple(ipaddress.ip_address(t).packed for t in texts)


def pfx(text: str) -> Prefix:
    return prefix_from_str(text)[1]


Wish = tuple[Family, Prefix, "tuple[bytes, ...] | None"]


def change(prefix: str, *gateways: str) -> Wish:
    family: Family = V6 if ":" in prefix else V4
    return family, pfx(prefix), gw(*gateways) if gateways else None


def apply(fib: FibWriter, wishes: list[Wish]) -> FibResult:
    """`fib.apply`, each change saying what the kernel has for its prefix now (our route at
    our metric, read back from the kernel), as the route service knows it from the Loc-RIB."""
    ours = {(f, p): r.next_hops for (f, p, m), r in fib.existing().items() if m == fib.metric}
    return fib.apply([(f, p, hops, ours.get((f, p))) for f, p, hops in wishes])


def table_of(
    pair: NetnsPair, *, v6: bool = False, protocol: int | None = DEFAULT_PROTOCOL
) -> dict[str, KernelRouteRow]:
    rows = routes(pair.a.netns, v6=v6)
    return {r.dst: r for r in rows if protocol is None or r.protocol == protocol}


def test_install_replace_remove_single_and_multipath_ipv4(netns_pair: NetnsPair) -> None:
    with FibWriter(netns=netns_pair.a.netns) as fib:
        assert fib.existing() == {}
        result = apply(
            fib,
            [
                change("0.0.0.0/0", "192.0.2.2"),
                change("10.1.0.0/16", "192.0.2.2"),
                change("10.2.0.0/16", "192.0.2.3", "192.0.2.2"),
            ],
        )
        assert (result.installed, result.errors) == (3, [])
        got = table_of(netns_pair)
        assert {d: (r.gateways, r.metric, r.table) for d, r in got.items()} == {
            "0.0.0.0/0": (("192.0.2.2",), 20, 254),
            "10.1.0.0/16": (("192.0.2.2",), 20, 254),
            "10.2.0.0/16": (("192.0.2.2", "192.0.2.3"), 20, 254),
        }
        # single -> multipath, multipath -> single, gateway change: replaced in place
        result = apply(
            fib,
            [
                change("10.1.0.0/16", "192.0.2.2", "192.0.2.4"),
                change("10.2.0.0/16", "192.0.2.3"),
                change("0.0.0.0/0", "192.0.2.5"),
            ],
        )
        assert (result.replaced, result.installed, result.errors) == (3, 0, [])
        got = table_of(netns_pair)
        assert {d: r.gateways for d, r in got.items()} == {
            "0.0.0.0/0": ("192.0.2.5",),
            "10.1.0.0/16": ("192.0.2.2", "192.0.2.4"),
            "10.2.0.0/16": ("192.0.2.3",),
        }
        # the same again (next hops in another order): nothing to do
        result = apply(fib, [change("10.1.0.0/16", "192.0.2.4", "192.0.2.2")])
        assert (result.unchanged, result.replaced) == (1, 0)
        result = apply(fib, [change("10.1.0.0/16"), change("10.99.0.0/16")])
        assert (result.removed, result.unchanged, result.errors) == (1, 1, [])
        assert set(table_of(netns_pair)) == {"0.0.0.0/0", "10.2.0.0/16"}
        assert fib.count() == 2


def test_ipv6_single_multipath_replace_remove(netns_pair: NetnsPair) -> None:
    with FibWriter(netns=netns_pair.a.netns) as fib:
        fib.existing()
        result = apply(
            fib,
            [
                change("::/0", "2001:db8::2"),
                change("2001:db8:10::/48", "2001:db8::2", "2001:db8::3"),
            ],
        )
        assert (result.installed, result.errors) == (2, [])
        got = table_of(netns_pair, v6=True)
        assert {d: (r.gateways, r.metric) for d, r in got.items()} == {
            "::/0": (("2001:db8::2",), 20),
            "2001:db8:10::/48": (("2001:db8::2", "2001:db8::3"), 20),
        }
        result = apply(
            fib,
            [
                change("::/0", "2001:db8::2", "2001:db8::4"),
                change("2001:db8:10::/48", "2001:db8::3"),
            ],
        )
        assert (result.replaced, result.errors) == (2, [])
        got = table_of(netns_pair, v6=True)
        assert {d: r.gateways for d, r in got.items()} == {
            "::/0": ("2001:db8::2", "2001:db8::4"),
            "2001:db8:10::/48": ("2001:db8::3",),
        }
        assert apply(fib, [change("::/0"), change("2001:db8:10::/48")]).removed == 2
        assert table_of(netns_pair, v6=True) == {}


def test_ipv4_route_through_an_ipv6_next_hop(netns_pair: NetnsPair) -> None:
    """RFC 8950: an IPv4 prefix whose next hop is IPv6 becomes RTA_VIA."""
    with FibWriter(netns=netns_pair.a.netns) as fib:
        fib.existing()
        result = apply(fib, [change("10.5.0.0/16", "2001:db8::2")])
        assert (result.installed, result.errors) == (1, [])
        assert table_of(netns_pair)["10.5.0.0/16"].gateways == ("2001:db8::2",)
        assert fib.existing()[(V4, pfx("10.5.0.0/16"), 20)].next_hops == gw("2001:db8::2")


def test_a_static_route_is_never_touched(netns_pair: NetnsPair) -> None:
    ns = netns_pair.a
    # static routes: one at our metric, one at another metric, both IPv4 and IPv6
    for argv in (
        (
            "ip",
            "route",
            "add",
            "10.7.0.0/16",
            "via",
            "192.0.2.9",
            "metric",
            "20",
            "proto",
            "static",
        ),
        (
            "ip",
            "route",
            "add",
            "10.8.0.0/16",
            "via",
            "192.0.2.9",
            "metric",
            "30",
            "proto",
            "static",
        ),
        (
            "ip",
            "-6",
            "route",
            "add",
            "2001:db8:7::/48",
            "via",
            "2001:db8::9",
            "metric",
            "20",
            "proto",
            "static",
        ),
    ):
        assert ns.run(*argv).returncode == 0
    before4 = table_of(netns_pair, protocol=None)
    before6 = table_of(netns_pair, v6=True, protocol=None)
    with FibWriter(netns=ns.netns) as fib:
        assert fib.existing() == {}  # the static routes are not ours
        result = apply(
            fib,
            [
                change("10.7.0.0/16", "192.0.2.2"),
                change("10.8.0.0/16", "192.0.2.2"),
                change("2001:db8:7::/48", "2001:db8::2"),
            ],
        )
        # Same prefix, table and metric: the kernel's identity of a route (not the protocol).
        # A replace would overwrite the static route; the exclusive create refuses instead.
        assert result.installed == 1
        assert sorted((e.op, e.errno, e.prefix) for e in result.errors) == [
            (Op.INSTALL, errno.EEXIST, pfx("10.7.0.0/16")),
            (Op.INSTALL, errno.EEXIST, pfx("2001:db8:7::/48")),
        ]
        assert all("not ours" in str(e) for e in result.errors)
        rows4 = routes(ns.netns)
        # a different metric: both routes coexist, ours at 20 wins in the kernel
        assert sorted(
            (r.metric, r.protocol, r.gateways) for r in rows4 if r.dst == "10.8.0.0/16"
        ) == [
            (20, DEFAULT_PROTOCOL, ("192.0.2.2",)),
            (30, 4, ("192.0.2.9",)),
        ]
        assert [r for r in rows4 if r.dst == "10.7.0.0/16"] == [before4["10.7.0.0/16"]]
        # a later change for the refused prefix is again refused, never a replace of theirs
        assert [e.errno for e in apply(fib, [change("10.7.0.0/16", "192.0.2.3")]).errors] == [
            errno.EEXIST
        ]
        # removing ours, then everything of ours, leaves theirs
        assert apply(fib, [change("10.8.0.0/16")]).removed == 1
        # an operator takes one of our routes over (`ip route replace` at our metric): our
        # delete names our protocol, so the kernel finds nothing of ours and theirs stays
        assert apply(fib, [change("10.9.0.0/16", "192.0.2.2")]).installed == 1
        assert ns.run("ip", "route", "replace", "10.9.0.0/16", "via", "192.0.2.9", "metric",
                      "20", "proto", "static").returncode == 0  # fmt: skip
        taken = table_of(netns_pair, protocol=None)["10.9.0.0/16"]
        assert (taken.protocol, taken.gateways) == (4, ("192.0.2.9",))
        result = fib.apply([(V4, pfx("10.9.0.0/16"), None, gw("192.0.2.2"))])  # ours, we think
        assert result.errors == [] and result.removed == 1  # ESRCH: nothing of ours was there
        assert table_of(netns_pair, protocol=None)["10.9.0.0/16"] == taken
        assert ns.run("ip", "route", "del", "10.9.0.0/16").returncode == 0
        fib.remove_all()
    assert table_of(netns_pair, protocol=None) == before4
    assert table_of(netns_pair, v6=True, protocol=None) == before6


def test_refused_routes_are_values_and_the_rest_of_the_batch_goes_in(
    netns_pair: NetnsPair,
) -> None:
    with FibWriter(netns=netns_pair.a.netns, batch_bytes=4096) as fib:  # several batches
        fib.existing()
        good = [change(f"10.20.{i}.0/24", "192.0.2.2") for i in range(200)]
        bad = [change("10.30.0.0/16", "203.0.113.1"), change("2001:db8:30::/48", "2001:db9::1")]
        work = good[:77] + bad[:1] + good[77:150] + bad[1:] + good[150:]
        result = apply(fib, work)
        assert result.installed == 200
        assert [(e.prefix, e.op) for e in result.errors] == [
            (pfx("10.30.0.0/16"), Op.INSTALL),
            (pfx("2001:db8:30::/48"), Op.INSTALL),
        ]
        # IPv4 says ENETUNREACH, IPv6 EHOSTUNREACH
        assert {e.errno for e in result.errors} <= {errno.ENETUNREACH, errno.EHOSTUNREACH}
        assert "gateway" in result.errors[0].message  # the kernel's extended ACK text
        assert len(table_of(netns_pair)) == 200 and table_of(netns_pair, v6=True) == {}
        assert fib.count() == 200
        # a refused create leaves nothing of ours: `kept` says so, and so the next try for the
        # prefix is again a create, which goes in once it is possible
        assert [e.kept for e in result.errors] == [None, None]
        assert apply(fib, [change("10.30.0.0/16", "192.0.2.2")]).installed == 1
        # a refused replace leaves our route as it was, and says which next hops it kept
        result = fib.apply([(V4, pfx("10.20.5.0/24"), gw("203.0.113.1"), gw("192.0.2.2"))])
        assert [(e.op, e.kept) for e in result.errors] == [(Op.REPLACE, gw("192.0.2.2"))]
        assert table_of(netns_pair)["10.20.5.0/24"].gateways == ("192.0.2.2",)
        assert fib.count() == 201


def test_lost_answers_are_reported_and_a_reconcile_repairs(netns_pair: NetnsPair) -> None:
    with FibWriter(netns=netns_pair.a.netns, batch_bytes=2048) as fib:
        fib.existing()
        proxy = LosesOneAnswer(fib._sock, nth=2)
        fib._sock = proxy  # type: ignore[assignment]
        work = [(f, p, hops, None) for f, p, hops in (change(f"10.50.{i}.0/24", "192.0.2.2")
                                                        for i in range(100))]  # fmt: skip
        result = fib.apply(work)
        lost = {e.prefix for e in result.errors}
        assert 0 < len(lost) < 100 and result.installed == 100 - len(lost)
        assert {e.errno for e in result.errors} == {errno.EIO} and result.lost
        # the lost batch did reach the kernel: the writer counted again, and a reconcile (what
        # the route service does on `lost`) reads the kernel, so those routes are replaces of
        # ours, not exclusive creates that would find them (EEXIST)
        assert len(table_of(netns_pair)) == 100 and fib.count() == 100
        desired = {V4: {pfx(f"10.50.{i}.0/24"): gw("192.0.2.3") for i in range(100)}}
        result = fib.reconcile(desired)
        assert (result.replaced, result.errors, result.lost) == (100, [], False)


def test_own_table_protocol_and_metric(netns_pair: NetnsPair) -> None:
    with FibWriter(netns=netns_pair.a.netns, table=1000, protocol=77, metric=5) as fib:
        fib.existing()
        assert apply(fib, [change("10.1.0.0/16", "192.0.2.2")]).installed == 1
        rows = routes(netns_pair.a.netns, table=1000)
        assert [(r.dst, r.protocol, r.table, r.metric) for r in rows] == [
            ("10.1.0.0/16", 77, 1000, 5)
        ]
        assert table_of(netns_pair) == {}  # nothing in main
        # another writer with the default protocol on table 1000 sees none of it
        with FibWriter(netns=netns_pair.a.netns, table=1000) as other:
            assert other.existing() == {}
            assert other.remove_all().removed == 0
        assert len(routes(netns_pair.a.netns, table=1000)) == 1


def test_reconcile_after_a_restart(netns_pair: NetnsPair) -> None:
    ns = netns_pair.a.netns
    # the previous run: some routes at metric 20, one at metric 30 (an older configuration)
    with FibWriter(netns=ns) as before:
        before.existing()
        apply(
            before,
            [
                change("10.1.0.0/16", "192.0.2.2"),
                change("10.2.0.0/16", "192.0.2.2"),
                change("10.3.0.0/16", "192.0.2.2", "192.0.2.3"),
                change("2001:db8:1::/48", "2001:db8::2"),
            ],
        )
    with FibWriter(netns=ns, metric=30) as older:
        older.existing()
        apply(older, [change("10.4.0.0/16", "192.0.2.2")])
    # kill -9 and restart: a new writer finds our routes, and finding them changes nothing
    with FibWriter(netns=ns) as after:
        found = after.existing()
        assert {(f, p, m): r.next_hops for (f, p, m), r in found.items()} == {
            (V4, pfx("10.1.0.0/16"), 20): gw("192.0.2.2"),
            (V4, pfx("10.2.0.0/16"), 20): gw("192.0.2.2"),
            (V4, pfx("10.3.0.0/16"), 20): gw("192.0.2.2", "192.0.2.3"),
            (V4, pfx("10.4.0.0/16"), 30): gw("192.0.2.2"),
            (V6, pfx("2001:db8:1::/48"), 20): gw("2001:db8::2"),
        }
        assert len(table_of(netns_pair)) == 4  # kept while graceful restart says so
        # routes re-learned before End-of-RIB are replaces of our own, not conflicts
        result = apply(after, [change("10.1.0.0/16", "192.0.2.3")])
        assert (result.replaced, result.errors) == (1, [])
        # End-of-RIB: the Loc-RIB has 10.1 (changed), 10.3 (same), 10.4 (now at our metric)
        # and 10.5 (new); 10.2 and the IPv6 route were withdrawn meanwhile
        desired = {
            V4: {
                pfx("10.1.0.0/16"): gw("192.0.2.3"),
                pfx("10.3.0.0/16"): gw("192.0.2.3", "192.0.2.2"),
                pfx("10.4.0.0/16"): gw("192.0.2.2"),
                pfx("10.5.0.0/16"): gw("192.0.2.2"),
            },
            V6: {},
        }
        result = after.reconcile(desired)
        assert result.errors == []
        assert (result.installed, result.replaced, result.removed) == (2, 0, 3)
        got = [r for r in routes(ns) if r.protocol == DEFAULT_PROTOCOL]
        assert sorted((r.dst, r.metric, r.gateways) for r in got) == [
            ("10.1.0.0/16", 20, ("192.0.2.3",)),
            ("10.3.0.0/16", 20, ("192.0.2.2", "192.0.2.3")),
            ("10.4.0.0/16", 20, ("192.0.2.2",)),
            ("10.5.0.0/16", 20, ("192.0.2.2",)),
        ]
        assert table_of(netns_pair, v6=True) == {}
        assert after.reconcile(desired).errors == []  # idempotent
        # --shutdown=withdraw
        assert after.remove_all().removed == 4
    assert table_of(netns_pair) == {}


def test_async_writer_runs_in_one_worker_thread(netns_pair: NetnsPair) -> None:
    async def main() -> list[int]:
        fib = AsyncFibWriter(FibWriter(netns=netns_pair.a.netns))
        await fib.existing()
        # two calls at once: serialised in call order in the worker, the loop stays free
        was = gw("192.0.2.2")
        first = fib.apply([(V4, pfx(f"10.40.{i}.0/24"), was, None) for i in range(100)])
        second = fib.apply([(V4, pfx(f"10.40.{i}.0/24"), gw("192.0.2.3"), was) for i in range(50)])
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        one, two = await asyncio.gather(first, second)
        task.cancel()
        three = await fib.reconcile({V4: {pfx("10.40.0.0/24"): gw("192.0.2.4")}})
        await fib.close()
        assert ticks > 0
        return [one.installed, two.replaced, three.replaced, three.removed]

    assert asyncio.run(main()) == [100, 50, 1, 99]
    assert {d: r.gateways for d, r in table_of(netns_pair).items()} == {
        "10.40.0.0/24": ("192.0.2.4",)
    }


def test_a_batch_of_100k_routes(netns_pair: NetnsPair) -> None:
    ns = netns_pair.a.netns
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    hop = gw("192.0.2.2")
    work: list[FibChange] = [
        (V4, prefix_from_int(base + i, 32, 32), hop, None) for i in range(100_000)
    ]
    connected = fib_prefixes(ns)
    with FibWriter(netns=ns) as fib:
        fib.existing()
        result = fib.apply(work)  # fib.apply: here the caller knows nothing is there
        assert (result.installed, result.errors) == (100_000, [])
        assert fib_prefixes(ns) == connected + 100_000
        assert len(fib.existing()) == 100_000
        assert fib.count() == 100_000
        result = fib.apply([(f, p, None, hops) for f, p, hops, _ in work])
        assert (result.removed, result.errors) == (100_000, [])
        assert fib_prefixes(ns) == connected


def test_writer_refuses_bad_settings_and_missing_namespaces() -> None:
    with pytest.raises(ValueError, match="protocol"):
        FibWriter(protocol=2)
    with pytest.raises(ValueError, match="table"):
        FibWriter(table=255)
    with pytest.raises(ValueError, match="metric"):
        FibWriter(metric=0)
    with pytest.raises(OSError):
        FibWriter(netns="kubgp-no-such-namespace")
    assert not NetnsPair.exists("kubgp-no-such-namespace")
