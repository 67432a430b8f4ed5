"""The route service's FIB channel against a model of the kernel, in any interleaving.

The FIB writer keeps no copy of the table: the channel must know what the kernel has from the
Loc-RIB's selection before each change, from the batches it has in flight and from what refused
routes kept. A state machine mixes Loc-RIB changes, batches held in flight while more changes
arrive, refused next hops, lost answers, reconciles and retries, and checks after every step
that what the service believes the kernel has (`kernel_hops`) is what the model kernel has,
that writes never find a route where they thought there was none (an exclusive create that
fails with EEXIST would mean a wrong belief), and that once everything is allowed and written
the kernel is the Loc-RIB's selection.

The model follows the rules the real writer meets in tests/speaker/fib/test_netlink.py: an
exclusive create fails where a route exists, a replace creates where none does, a delete of a
missing route is not an error (ESRCH).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterable, Mapping

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from speaker.api.schema import Fib
from speaker.bgp.rib.loc_rib import PathChange
from speaker.bgp.wire.context import IPV4_UNICAST, Family
from speaker.bgp.wire.nlri import Prefix
from speaker.netlink import FibChange, FibError, FibResult, Op
from speaker.route_service import RouteService, _Fib
from tests.speaker.rib.paths import addr, path, peer, pfx
from tests.speaker.rib.test_loc_rib import ACCEPT_ALL, new_rib

V4 = IPV4_UNICAST
Hops = tuple[bytes, ...]
PEERS = [
    peer("p1", "192.0.2.1", asn=65001, router_id="10.0.0.1"),
    peer("p2", "192.0.2.2", asn=65002, router_id="10.0.0.2"),
]
HOPS = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
PATHS = [path(h, as_path=(65001,)) for h in HOPS] + [path("192.0.2.3", as_path=(65001, 65009))]
PREFIXES = [pfx(p) for p in ("0.0.0.0/0", "198.51.100.0/24", "203.0.113.0/24", "10.1.0.0/16")]


def _canonical(hops: Iterable[bytes] | None) -> Hops | None:
    return tuple(sorted(set(hops))) if hops else None


class ModelKernel:
    """Our routes in one table, as the kernel keeps them, and the writer's rules; its batches
    can be held in flight, refused per next hop, or have their answers lost."""

    def __init__(self) -> None:
        self.routes: dict[tuple[Family, Prefix], Hops] = {}
        self.refused: set[bytes] = set()
        self.hold = False
        self.waiting = False
        self.release = asyncio.Event()
        self.lose_next = False
        self.conflicts: list[FibError] = []  # exclusive creates that found a route
        self.writer = self  # what _Fib.writer is asked (count)

    def count(self) -> int:
        return len(self.routes)

    def _one(self, change: FibChange, result: FibResult) -> None:
        family, prefix, wanted, there = change
        key = (family, prefix)
        want, was = _canonical(wanted), _canonical(there)
        have = self.routes.get(key)
        if want is None:
            if was is None:
                result.unchanged += 1
            else:
                self.routes.pop(key, None)  # ESRCH when gone already: not an error
                result.removed += 1
            return
        if want == was:
            result.unchanged += 1
            return
        op = Op.INSTALL if was is None else Op.REPLACE
        if op is Op.INSTALL and have is not None:
            err = FibError(family, prefix, op, errno.EEXIST, "exists", was)
            self.conflicts.append(err)
            result.errors.append(err)
        elif self.refused & set(want):
            result.errors.append(FibError(family, prefix, op, errno.ENETUNREACH, "no", was))
        else:
            self.routes[key] = want
            if op is Op.INSTALL:
                result.installed += 1
            else:
                result.replaced += 1

    async def apply(self, changes: Iterable[FibChange]) -> FibResult:
        if self.hold:
            self.waiting = True
            await self.release.wait()
            self.waiting = False
            self.release.clear()
        result = FibResult()
        lose, self.lose_next = self.lose_next, False
        done = list(changes)  # read only now, as the real writer's thread does
        for change in done:
            self._one(change, result)
        if lose:  # the kernel did the work; its answers are gone
            result = FibResult(lost=True)
            result.errors = [
                FibError(f, p, Op.REPLACE, errno.EIO, "lost", t) for f, p, _, t in done
            ]
        return result

    async def reconcile(
        self, desired: Mapping[Family, Mapping[Prefix, Iterable[bytes]]]
    ) -> FibResult:
        result = FibResult()
        found = dict(self.routes)
        for family, table in desired.items():
            for prefix, hops in table.items():
                self._one((family, prefix, tuple(hops), found.pop((family, prefix), None)), result)
        for (family, prefix), hops in found.items():
            self._one((family, prefix, None, hops), result)
        return result

    async def close(self) -> None:
        pass


class FibChannel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.kernel = ModelKernel()
        self.kernel.release = asyncio.Event()
        self.service = RouteService(sessions=dict)
        rib = self.service.rib = new_rib(max_paths=2)
        for info in PEERS:
            rib.set_peer(info, ACCEPT_ALL)
        fib = _Fib(Fib(), self.kernel, self.kernel)  # type: ignore[arg-type]
        self.service._fib = fib
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self.service._start()

    def spin(self) -> None:
        """Run the channel until it is idle or its batch is held in the model kernel."""

        async def until_quiet() -> None:
            for _ in range(10_000):
                await asyncio.sleep(0)
                if self.service._idle.is_set() or self.kernel.waiting:
                    return
            raise AssertionError("the FIB channel never settled")

        self.loop.run_until_complete(until_quiet())

    def teardown(self) -> None:
        self.kernel.hold = False
        self.kernel.release.set()
        self.loop.run_until_complete(self.service.close(withdraw=False))
        self.loop.close()

    @rule(
        who=st.integers(0, len(PEERS) - 1),
        events=st.lists(
            st.tuples(
                st.integers(0, len(PREFIXES) - 1),
                st.one_of(st.none(), st.integers(0, len(PATHS) - 1)),
            ),
            min_size=1,
            max_size=5,
        ),
    )
    def loc_rib_changes(self, who: int, events: list[tuple[int, int | None]]) -> None:
        rib = self.service.rib
        assert rib is not None
        changes: list[PathChange] = [
            (V4, PREFIXES[x], None if y is None else PATHS[y]) for x, y in events
        ]
        self.service._emit(rib.update(PEERS[who].name, changes))
        self.spin()

    @rule(hold=st.booleans())
    def hold_batches(self, hold: bool) -> None:
        """Batches wait in the kernel (in flight) while more changes come, or go on."""
        self.kernel.hold = hold
        if not hold and self.kernel.waiting:
            self.kernel.release.set()
        self.spin()

    @rule()
    def let_one_batch_through(self) -> None:
        if self.kernel.waiting:
            self.kernel.release.set()
        self.spin()

    @rule(hop=st.sampled_from(HOPS), refuse=st.booleans())
    def kernel_refuses(self, hop: str, refuse: bool) -> None:
        (self.kernel.refused.add if refuse else self.kernel.refused.discard)(addr(hop))

    @rule()
    def next_answers_lost(self) -> None:
        self.kernel.lose_next = True

    @rule()
    def node_routes_changed(self) -> None:
        """What a node route notification does: refused routes are tried again."""
        self.service._retry_failed()
        self.spin()

    @rule()
    def link_changed(self) -> None:
        """What a link or address change does: a reconcile."""
        fib = self.service._fib
        assert fib is not None
        self.service._queue(self.service._reconcile_op(fib))
        self.spin()

    @rule()
    def everything_allowed_and_written(self) -> None:
        """Refusals lifted, batches let go, a retry: the kernel is the Loc-RIB's selection."""
        self.kernel.refused.clear()
        self.kernel.hold = False
        self.kernel.release.set()
        self.spin()
        self.service._retry_failed()
        self.spin()
        rib = self.service.rib
        assert rib is not None
        want = {(V4, p): _canonical(s.next_hops) for p, s in rib.selected_items(V4)}
        assert self.kernel.routes == want

    @invariant()
    def the_service_knows_what_the_kernel_has(self) -> None:
        svc = self.service
        if svc._ops or svc._reconciling:
            return  # answers were lost: unknown until the reconcile queued for it has run
        for prefix in PREFIXES:
            believed = svc.kernel_hops(V4, prefix)
            assert believed == self.kernel.routes.get((V4, prefix)), prefix

    @invariant()
    def no_create_found_a_route(self) -> None:
        assert self.kernel.conflicts == []


FibChannel.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
TestFibChannel = FibChannel.TestCase


def test_a_refused_write_whose_prefix_changed_meanwhile_starts_from_what_the_kernel_kept() -> None:
    """The batch in flight installs a prefix through a next hop the kernel refuses; meanwhile
    the prefix is withdrawn and announced again through the same next hop. The next batch must
    start from what the kernel kept (nothing), not from what the refused write would have
    made: it installs the route, where a wrong belief would call it unchanged."""
    m = FibChannel()
    try:
        m.kernel_refuses("192.0.2.3", refuse=True)
        m.hold_batches(hold=True)
        m.loc_rib_changes(0, [(1, 2)])  # via 192.0.2.3: held in flight
        assert m.kernel.waiting
        m.loc_rib_changes(0, [(1, None)])
        m.loc_rib_changes(0, [(1, 2)])
        m.let_one_batch_through()  # refused; the second batch is held now
        m.the_service_knows_what_the_kernel_has()
        m.kernel_refuses("192.0.2.3", refuse=False)
        m.let_one_batch_through()
        m.the_service_knows_what_the_kernel_has()
        assert m.kernel.routes == {(V4, PREFIXES[1]): (addr("192.0.2.3"),)}
    finally:
        m.teardown()


def test_lost_answers_bring_a_reconcile_that_clears_their_errors() -> None:
    m = FibChannel()
    try:
        m.next_answers_lost()
        m.loc_rib_changes(0, [(0, 0), (1, 1)])
        m.the_service_knows_what_the_kernel_has()
        assert m.service._errors == {} and len(m.kernel.routes) == 2
    finally:
        m.teardown()


def test_a_refused_route_retried_while_its_retry_is_in_flight_starts_from_that_write() -> None:
    """A refused prefix is retried (its next hop became possible) and its retry is in flight
    when it is retried again and then withdrawn: the removal must start from what the retry
    in flight writes, not from what the refusal kept, or our route would stay in the kernel."""
    m = FibChannel()
    try:
        m.kernel_refuses("192.0.2.2", refuse=True)
        m.loc_rib_changes(0, [(0, 1)])  # via 192.0.2.2: refused
        assert m.service._errors and m.kernel.routes == {}
        m.kernel_refuses("192.0.2.2", refuse=False)
        m.hold_batches(hold=True)
        m.node_routes_changed()  # the retry, held in flight
        assert m.kernel.waiting
        m.node_routes_changed()  # again, while it is in flight
        m.loc_rib_changes(0, [(0, None)])
        m.hold_batches(hold=False)
        m.the_service_knows_what_the_kernel_has()
        assert m.kernel.routes == {} and m.service._errors == {}
    finally:
        m.teardown()
