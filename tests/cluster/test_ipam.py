"""controller.domain.ipam: table-driven rules and properties of pure LoadBalancer allocation."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.domain.ipam import (
    Assignment,
    FailureReason,
    LBService,
    MemoryLedger,
    Pool,
    allocate_all,
    assign,
    can_share,
    parse_lb_service,
    pool_usage,
    with_addresses,
)
from controller.domain.objects import parse_load_balancer_ip_pool
from tests.cluster.manifests import Raw, lb_service, pool

V4 = pool("v4", cidrs=("203.0.113.0/30",))  # .0 .. .3
V6 = pool("v6", cidrs=("2001:db8::/126",))


def pools(*raws: Raw) -> list[Pool]:
    return [Pool.from_view(parse_load_balancer_ip_pool(r)) for r in raws]


def svc(*args: object, **kwargs: object) -> LBService:
    return parse_lb_service(lb_service(*args, **kwargs))  # type: ignore[arg-type]


def run(
    service: LBService, raw_pools: Sequence[Raw], others: Sequence[LBService] = ()
) -> Assignment:
    ledger = MemoryLedger({o.key: o for o in others})
    got = assign(service, pools(*raw_pools), ledger)
    assert got is not None
    return got


def ips(*texts: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    return tuple(ipaddress.ip_address(t) for t in texts)


# --- table: (service, pools, other Services) -> addresses, failure -------------------------

CASES: list[
    tuple[str, LBService, list[Raw], list[LBService], tuple[str, ...], FailureReason | None]
] = [
    ("lowest free address", svc(), [V4], [], ("203.0.113.0",), None),
    (
        "skips held addresses",
        svc(),
        [V4],
        [svc("a", assigned=("203.0.113.0",)), svc("b", assigned=("203.0.113.1",))],
        ("203.0.113.2",),
        None,
    ),
    (
        "avoidBuggyIPs skips .0 and .255",
        svc(),
        [pool("p", cidrs=("203.0.113.0/24",), avoid_buggy=True)],
        [],
        ("203.0.113.1",),
        None,
    ),
    (
        "ranges, IPv6 single stack",
        svc(families=("IPv6",)),
        [pool("p", ranges=(("2001:db8::10", "2001:db8::11"),))],
        [],
        ("2001:db8::10",),
        None,
    ),
    (
        "dual stack, one per family in ipFamilies order",
        svc(families=("IPv6", "IPv4"), policy="RequireDualStack"),
        [V4, V6],
        [],
        ("2001:db8::", "203.0.113.0"),
        None,
    ),
    (
        "RequireDualStack without IPv6 gets nothing",
        svc(families=("IPv4", "IPv6"), policy="RequireDualStack"),
        [V4],
        [],
        (),
        FailureReason.NoMatchingPool,
    ),
    (
        "PreferDualStack takes what it can",
        svc(families=("IPv4", "IPv6"), policy="PreferDualStack"),
        [V4],
        [],
        ("203.0.113.0",),
        FailureReason.NoMatchingPool,
    ),
    ("requested free address", svc(request="203.0.113.3"), [V4], [], ("203.0.113.3",), None),
    ("spec.loadBalancerIP", svc(load_balancer_ip="203.0.113.2"), [V4], [], ("203.0.113.2",), None),
    (
        "loadBalancerIP and annotation disagree",
        svc(load_balancer_ip="203.0.113.2", request="203.0.113.3"),
        [V4],
        [],
        (),
        FailureReason.InvalidRequest,
    ),
    (
        "requested address taken",
        svc(request="203.0.113.1"),
        [V4],
        [svc("a", assigned=("203.0.113.1",))],
        (),
        FailureReason.AddressInUse,
    ),
    (
        "requested address outside every pool",
        svc(request="198.51.100.7"),
        [V4],
        [],
        (),
        FailureReason.NotInAnyPool,
    ),
    ("not an address", svc(request="nope"), [V4], [], (), FailureReason.InvalidRequest),
    (
        "two IPv4 requested",
        svc(request="203.0.113.1,203.0.113.2"),
        [V4],
        [],
        (),
        FailureReason.InvalidRequest,
    ),
    (
        "requested family not in ipFamilies",
        svc(request="2001:db8::1", families=("IPv4",)),
        [V4, V6],
        [],
        (),
        FailureReason.InvalidRequest,
    ),
    (
        "dual-stack request",
        svc(
            request="203.0.113.2, 2001:db8::2", families=("IPv4", "IPv6"), policy="RequireDualStack"
        ),
        [V4, V6],
        [],
        ("203.0.113.2", "2001:db8::2"),
        None,
    ),
    (
        "no ipFamilies: families follow the request",
        svc(request="2001:db8::3"),
        [V4, V6],
        [],
        ("2001:db8::3",),
        None,
    ),
    (
        "requested .0 in an avoidBuggyIPs pool is honoured",
        svc(request="203.0.113.0"),
        [pool("p", cidrs=("203.0.113.0/24",), avoid_buggy=True)],
        [],
        ("203.0.113.0",),
        None,
    ),
    (
        "pool selection by label",
        svc(labels={"tier": "edge"}),
        [V4, pool("edge", cidrs=("198.51.100.0/30",), selector={"tier": "edge"})],
        [],
        ("198.51.100.0",),
        None,
    ),
    (
        "pools in name order; a selector that does not match skips the pool",
        svc(labels={"tier": "web"}),
        [pool("a-edge", cidrs=("198.51.100.0/30",), selector={"tier": "edge"}), V4],
        [],
        ("203.0.113.0",),
        None,
    ),
    (
        "pool selection by namespace",
        svc(namespace="prod"),
        [pool("a-dev", cidrs=("198.51.100.0/30",), namespaces=("dev",)), V4],
        [],
        ("203.0.113.0",),
        None,
    ),
    (
        "pool by annotation, even without autoAssign",
        svc(pool="manual"),
        [V4, pool("manual", cidrs=("198.51.100.8/30",), auto_assign=False)],
        [],
        ("198.51.100.8",),
        None,
    ),
    (
        "autoAssign false pools are not used unasked",
        svc(),
        [pool("manual", cidrs=("198.51.100.8/30",), auto_assign=False)],
        [],
        (),
        FailureReason.NoMatchingPool,
    ),
    (
        "annotation names a missing pool",
        svc(pool="nope"),
        [V4],
        [],
        (),
        FailureReason.PoolNotFound,
    ),
    (
        "annotation names a pool that does not select the Service",
        svc(pool="edge"),
        [V4, pool("edge", cidrs=("198.51.100.0/30",), selector={"tier": "edge"})],
        [],
        (),
        FailureReason.PoolNotSelecting,
    ),
    (
        "requested address in a pool that does not select the Service",
        svc(request="198.51.100.1"),
        [V4, pool("edge", cidrs=("198.51.100.0/30",), selector={"tier": "edge"})],
        [],
        (),
        FailureReason.PoolNotSelecting,
    ),
    (
        "exhausted",
        svc(),
        [pool("tiny", ranges=(("203.0.113.9", "203.0.113.9"),))],
        [svc("a", assigned=("203.0.113.9",))],
        (),
        FailureReason.PoolExhausted,
    ),
    (
        "sharing: same key, other ports, joins the holder",
        svc(share="k", ports=(443,)),
        [V4],
        [svc("a", share="k", ports=(80,), assigned=("203.0.113.2",))],
        ("203.0.113.2",),
        None,
    ),
    (
        "sharing refused: ports overlap",
        svc(share="k", ports=(80,), request="203.0.113.2"),
        [V4],
        [svc("a", share="k", ports=(80,), assigned=("203.0.113.2",))],
        (),
        FailureReason.AddressInUse,
    ),
    (
        "sharing refused: keys differ",
        svc(share="k", ports=(443,), request="203.0.113.2"),
        [V4],
        [svc("a", share="other", ports=(80,), assigned=("203.0.113.2",))],
        (),
        FailureReason.AddressInUse,
    ),
    (
        "sharing: UDP and TCP on one port number do not overlap",
        svc(share="dns", ports=(("UDP", 53),), request="203.0.113.2"),
        [V4],
        [svc("a", share="dns", ports=(("TCP", 53),), assigned=("203.0.113.2",))],
        ("203.0.113.2",),
        None,
    ),
    (
        "sharing with overlapping ports takes a free address instead",
        svc(share="k", ports=(80,)),
        [V4],
        [svc("a", share="k", ports=(80,), assigned=("203.0.113.0",))],
        ("203.0.113.1",),
        None,
    ),
    (
        "keeps its address",
        svc(assigned=("203.0.113.3",)),
        [V4],
        [],
        ("203.0.113.3",),
        None,
    ),
    (
        "keeps an address in no pool any more (a shrunk pool), with a warning",
        svc(assigned=("203.0.113.200",)),
        [V4],
        [],
        ("203.0.113.200",),
        None,
    ),
    (
        "moves when its pool no longer selects it",
        svc(assigned=("198.51.100.1",)),
        [V4, pool("edge", cidrs=("198.51.100.0/30",), selector={"tier": "edge"})],
        [],
        ("203.0.113.0",),
        None,
    ),
    (
        "moves to the newly requested address",
        svc(assigned=("203.0.113.0",), request="203.0.113.3"),
        [V4],
        [],
        ("203.0.113.3",),
        None,
    ),
    (
        "dual-active leftovers: the older Service keeps a doubly held address",
        svc("young", assigned=("203.0.113.0",), created="2026-01-02T00:00:00Z"),
        [V4],
        [svc("old", assigned=("203.0.113.0",), created="2026-01-01T00:00:00Z")],
        ("203.0.113.1",),
        None,
    ),
    (
        "dual-active leftovers: the requester beats the older one",
        svc(
            "young",
            assigned=("203.0.113.0",),
            request="203.0.113.0",
            created="2026-01-02T00:00:00Z",
        ),
        [V4],
        [svc("old", assigned=("203.0.113.0",), created="2026-01-01T00:00:00Z")],
        ("203.0.113.0",),
        None,
    ),
    (
        "not a LoadBalancer any more: release",
        svc(type="ClusterIP", assigned=("203.0.113.1",)),
        [V4],
        [],
        (),
        None,
    ),
    ("our class", svc(lb_class="kubgp.io/bgp"), [V4], [], ("203.0.113.0",), None),
]


@pytest.mark.parametrize(
    ("service", "raw_pools", "others", "want", "failure"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_assign(
    service: LBService,
    raw_pools: list[Raw],
    others: list[LBService],
    want: tuple[str, ...],
    failure: FailureReason | None,
) -> None:
    got = run(service, raw_pools, others)
    assert got.texts == want
    assert (got.failure.reason if got.failure else None) == failure
    assert run(service, raw_pools, others) == got  # deterministic


def test_a_service_being_deleted_keeps_its_address_until_gone() -> None:
    raw = lb_service(assigned=("203.0.113.3",), request="203.0.113.1")
    raw["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    got = run(parse_lb_service(raw), [V4])
    assert got.texts == ("203.0.113.3",) and got.failure is None


def test_foreign_class_is_not_ours() -> None:
    assert assign(svc(lb_class="example.com/lb"), pools(V4), MemoryLedger()) is None


def test_failure_messages_say_exactly_why() -> None:
    taken = run(
        svc(request="203.0.113.1", share="k", ports=(80,)),
        [V4],
        [svc("a", share="k", ports=(80, 443), assigned=("203.0.113.1",))],
    )
    assert str(taken.failure) == (
        "AddressInUse: 203.0.113.1 is in use by Service default/a (ports overlap: 80/TCP)"
    )
    outside = run(svc(request="198.51.100.7"), [V4])
    assert str(outside.failure) == "NotInAnyPool: 198.51.100.7 is in no LoadBalancerIPPool"
    full = run(
        svc(),
        [pool("tiny", ranges=(("203.0.113.9", "203.0.113.9"),))],
        [svc("a", assigned=("203.0.113.9",))],
    )
    assert str(full.failure) == "PoolExhausted: no free IPv4 address in LoadBalancerIPPool tiny"
    shrunk = run(svc(assigned=("203.0.113.200",)), [V4])
    assert shrunk.warnings and "203.0.113.200 is in no LoadBalancerIPPool" in shrunk.warnings[0]


def test_lenient_parse_keeps_status_of_a_broken_service() -> None:
    raw = lb_service(assigned=("203.0.113.1", "bogus", "203.0.113.1"), request="x")
    raw["spec"]["ports"] = "not a list"
    got = parse_lb_service(raw)
    assert got.assigned == ips("203.0.113.1")
    assert got.problem == "'x' is not an IP address"
    # Its address stays used: nobody else gets it.
    assert run(svc("b", request="203.0.113.1"), [V4], [got]).failure is not None


def test_pool_counts_and_outside_addresses() -> None:
    raw = pool("p", cidrs=("203.0.113.0/24", "203.0.113.0/25"), avoid_buggy=True)
    (p,) = pools(raw)
    assert p.total() == 254
    (v6,) = pools(pool("v6", cidrs=("2001:db8::/64",)))
    assert v6.total() == 2**64
    held = {
        ipaddress.ip_address("203.0.113.0"): [svc("a", request="203.0.113.0")],  # requested .0
        ipaddress.ip_address("203.0.113.7"): [svc("b")],
        ipaddress.ip_address("198.51.100.1"): [svc("c"), svc("d", type="ClusterIP")],
    }
    usage = pool_usage(p, [p], held)
    assert (usage.total, usage.assigned, usage.available) == (254, 2, 253)
    assert usage.outside == (("default", "c", "198.51.100.1"),)


def test_can_share_needs_a_key() -> None:
    assert not can_share(svc("a", ports=(80,)), svc("b", ports=(443,)))
    assert can_share(svc("a", share="k", ports=(80,)), svc("b", share="k", ports=(443,)))


# --- properties ----------------------------------------------------------------------------

POOLS = [
    pool("a", ranges=(("203.0.113.1", "203.0.113.4"),)),
    pool("b", cidrs=("203.0.113.0/30",), avoid_buggy=True),
    pool("c", cidrs=("2001:db8::/127",), selector={"tier": "edge"}),
    pool("d", ranges=(("198.51.100.5", "198.51.100.6"),), auto_assign=False),
]
ADDRESSES = ["203.0.113.1", "203.0.113.3", "2001:db8::1", "198.51.100.5", "192.0.2.1"]


@st.composite
def services(draw: st.DrawFn) -> list[LBService]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        families = draw(st.sampled_from([None, ("IPv4",), ("IPv6",), ("IPv4", "IPv6")]))
        out.append(
            svc(
                f"s{i}",
                draw(st.sampled_from(["default", "prod"])),
                ports=tuple(draw(st.sets(st.sampled_from([80, 443, 53]), min_size=1))),
                families=families,
                policy=draw(st.sampled_from([None, "PreferDualStack", "RequireDualStack"])),
                request=draw(st.sampled_from([None, *ADDRESSES])),
                pool=draw(st.sampled_from([None, "a", "c", "d"])),
                share=draw(st.sampled_from([None, "k", "j"])),
                labels=draw(st.sampled_from([{}, {"tier": "edge"}])),
                type=draw(st.sampled_from(["LoadBalancer", "LoadBalancer", "ClusterIP"])),
                assigned=tuple(draw(st.lists(st.sampled_from(ADDRESSES), max_size=2))),
                created=f"2026-01-0{draw(st.integers(1, 3))}T00:00:00Z",
            )
        )
    return out


def converge(services: list[LBService], raw_pools: list[Raw], order: Sequence[int]) -> MemoryLedger:
    """Reconcile Services in the given order until nothing changes (what the controller does
    event by event), writing each result to the ledger as a status write would."""
    ledger = MemoryLedger({s.key: s for s in services})
    ps = pools(*raw_pools)
    keys = [services[i].key for i in order]
    for _ in range(len(services) + 2):
        changed = False
        for key in keys:
            current = ledger.services[key]
            got = assign(current, ps, ledger)
            if got is not None and got.addresses != current.assigned:
                ledger.put(with_addresses(current, got.addresses))
                changed = True
        if not changed:
            return ledger
    raise AssertionError("did not converge")


def assert_no_forbidden_sharing(ledger: MemoryLedger) -> None:
    for address in list(ledger.addresses()):
        holders = [h for h in ledger.holders(address) if h.wants_addresses]
        for i, a in enumerate(holders):
            for b in holders[i + 1 :]:
                assert can_share(a, b), f"{address} held by {a.key} and {b.key}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(services(), st.randoms())
def test_never_two_services_on_one_address_unless_sharing_allows(
    raw: list[LBService], rnd: object
) -> None:
    # Start from any status (even doubly-held addresses left by a dual-active window):
    # converging in any order leaves no address held by two Services that may not share.
    order = list(range(len(raw)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    ledger = converge(raw, POOLS, order)
    assert_no_forbidden_sharing(ledger)
    ps = pools(*POOLS)
    for service in ledger.services.values():
        got = assign(service, ps, ledger)
        assert got is None or got.addresses == service.assigned  # a fixpoint: restart-stable
        for address in service.assigned if service.wants_addresses else ():
            assert (
                address in service.requested
                or any(p.contains(address) for p in ps)
                or (address in next(s for s in raw if s.key == service.key).assigned)
            )


@settings(max_examples=100, deadline=None)
@given(services())
def test_cold_start_is_deterministic_and_restart_stable(raw: list[LBService]) -> None:
    fresh = [s for s in raw if not s.assigned]
    first = allocate_all(fresh, pools(*POOLS))
    assert allocate_all(list(reversed(fresh)), pools(*POOLS)) == first
    # A restarted controller sees the statuses it wrote and changes nothing.
    written = [with_addresses(s, first[s.key].addresses) if s.key in first else s for s in fresh]
    again = allocate_all(written, pools(*POOLS))
    assert {k: a.addresses for k, a in again.items()} == {k: a.addresses for k, a in first.items()}
    ledger = MemoryLedger({s.key: s for s in written})
    assert_no_forbidden_sharing(ledger)
