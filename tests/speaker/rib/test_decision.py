"""Route selection (RFC 4271 §9.1.2), step by step: for each step one case where exactly that
step decides. The loser is made better at every later step, so a wrong order of steps (or a
step that does nothing) picks the other path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speaker.bgp.rib.decision import Candidate, Step, decide
from tests.speaker.rib.paths import path, peer


@dataclass(frozen=True)
class Side:
    """One candidate: its peer, its path, and the next-hop cost the resolver gives."""

    peer: dict[str, Any] = field(default_factory=dict)
    path: dict[str, Any] = field(default_factory=dict)
    cost: int = 0


def build(name: str, side: Side, default_address: str) -> Candidate:
    peer_kw = {"address": default_address, **side.peer}
    address = peer_kw.pop("address")
    info = peer(name, address, **peer_kw)
    received = path(**{"next_hop": f"198.51.100.{1 + ord(name[0]) - ord('a')}", **side.path})
    assert received.next_hop is not None
    return Candidate(info, received, received.next_hop)


def run(a: Side, b: Side, **options: Any) -> tuple[str, Step]:
    ca = build("a", a, "192.0.2.20")
    cb = build("b", b, "192.0.2.10")  # b has the lower address unless a case says otherwise
    costs = {ca.next_hop: a.cost, cb.next_hop: b.cost}
    results = set()
    for order in ([ca, cb], [cb, ca]):
        sel = decide(order, costs.get, **options)
        assert sel is not None
        results.add((sel.best.peer, sel.step))
    [result] = results
    return result


# The loser `b` is better at every step after the deciding one.
IBGP = {"ebgp": False, "asn": 64512}
BETTER_LATER = {"origin": 0, "med": 0}
CASES = [
    pytest.param(
        Side(peer=IBGP, path={"local_pref": 200, "as_path": (65001, 65002, 65003), "origin": 2,
                              "med": 50}, cost=10),
        Side(peer={**IBGP, "router_id": "1.1.1.1"},
             path={"local_pref": 100, "as_path": (65001,), **BETTER_LATER}),
        Step.LocalPref, id="local-pref",
    ),
    pytest.param(
        # an AS_SET counts one: 1 + 1 = 2 beats 3
        Side(path={"as_path": (65001,), "as_set": (7, 8, 9), "origin": 2, "med": 50}, cost=10),
        Side(peer={"router_id": "1.1.1.1"}, path={"as_path": (65001, 65002, 65003),
                                                  **BETTER_LATER}),
        Step.AsPathLength, id="as-path-length-as-set-counts-one",
    ),
    pytest.param(
        Side(path={"origin": 0, "med": 50}, cost=10),
        Side(peer={"router_id": "1.1.1.1"}, path={"origin": 1, "med": 0}),
        Step.Origin, id="origin-igp-over-egp",
    ),
    pytest.param(
        Side(path={"origin": 1}, cost=10),
        Side(peer={"router_id": "1.1.1.1"}, path={"origin": 2}),
        Step.Origin, id="origin-egp-over-incomplete",
    ),
    pytest.param(
        Side(path={"med": 10}, cost=10),
        Side(peer={"router_id": "1.1.1.1"}, path={"med": 20}),
        Step.Med, id="med-same-neighbour-as",
    ),
    pytest.param(
        Side(path={}, cost=10),  # no MED = 0
        Side(peer={"router_id": "1.1.1.1"}, path={"med": 1}),
        Step.Med, id="missing-med-is-zero",
    ),
    pytest.param(
        # different neighbour ASes: MED is not compared, and b is better at every later step
        Side(path={"med": 100}, cost=10),
        Side(peer={**IBGP, "router_id": "1.1.1.1"},
             path={"local_pref": 100, "as_path": (65002,), "med": 0}),
        Step.EbgpOverIbgp, id="ebgp-over-ibgp",
    ),
    pytest.param(
        Side(cost=1),
        Side(peer={"router_id": "1.1.1.1"}, cost=5),
        Step.NextHopCost, id="next-hop-cost",
    ),
    pytest.param(
        Side(peer={"router_id": "1.1.1.1"}),
        Side(peer={"router_id": "2.2.2.2"}),
        Step.RouterId, id="router-id",
    ),
    pytest.param(
        # ORIGINATOR_ID stands in for the router id (RFC 4456 §9)
        Side(peer={**IBGP, "router_id": "9.9.9.9"},
             path={"local_pref": 100, "originator": "1.1.1.1"}),
        Side(peer={**IBGP, "router_id": "2.2.2.2"}, path={"local_pref": 100}),
        Step.RouterId, id="originator-id-as-router-id",
    ),
    pytest.param(
        Side(peer={**IBGP, "router_id": "9.9.9.9"},
             path={"local_pref": 100, "originator": "1.1.1.1", "clusters": ("10.0.0.1",)}),
        Side(peer={**IBGP, "router_id": "8.8.8.8"},
             path={"local_pref": 100, "originator": "1.1.1.1",
                   "clusters": ("10.0.0.2", "10.0.0.3")}),
        Step.ClusterListLength, id="cluster-list-length",
    ),
    pytest.param(
        Side(peer={"router_id": "1.1.1.1", "address": "192.0.2.5"}),
        Side(peer={"router_id": "1.1.1.1", "address": "192.0.2.6"}),
        Step.PeerAddress, id="peer-address",
    ),
    pytest.param(
        Side(peer={"router_id": "1.1.1.1", "address": "192.0.2.5"}),
        Side(peer={"router_id": "1.1.1.1", "address": "2001:db8::1"}),
        Step.PeerAddress, id="peer-address-ipv4-before-ipv6",
    ),
    pytest.param(
        Side(peer={"router_id": "1.1.1.1", "address": "192.0.2.5"}),
        Side(peer={"router_id": "1.1.1.1", "address": "192.0.2.5"}),
        Step.PeerName, id="peer-name-last",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("a", "b", "step"), CASES)
def test_each_step_decides(a: Side, b: Side, step: Step) -> None:
    assert run(a, b) == ("a", step)


def test_med_from_different_neighbour_ases_is_not_compared() -> None:
    a = Side(path={"as_path": (65001,), "med": 10})
    b = Side(peer={"router_id": "1.1.1.1"}, path={"as_path": (65002,), "med": 20})
    assert run(a, b) == ("b", Step.RouterId)
    assert run(a, b, always_compare_med=True) == ("a", Step.Med)


def test_med_is_per_neighbour_as_group_among_three() -> None:
    """RFC 4271 §9.1.2.2 c: each route is compared only with routes from its own neighbour AS.
    Pairwise comparison is not transitive here (the classic MED cycle); elimination is."""
    ca = build("a", Side(peer={"router_id": "3.3.3.3"}, path={"as_path": (65001,), "med": 5}),
               "192.0.2.1")  # fmt: skip
    cb = build("b", Side(peer={"router_id": "1.1.1.1"}, path={"as_path": (65001,), "med": 9}),
               "192.0.2.2")  # fmt: skip
    cc = build("c", Side(peer={"router_id": "2.2.2.2"}, path={"as_path": (65002,), "med": 1}),
               "192.0.2.3")  # fmt: skip
    cost = {c.next_hop: 0 for c in (ca, cb, cc)}.get
    results = {
        decide(order, cost).best.peer  # type: ignore[union-attr]
        for order in ([ca, cb, cc], [cb, cc, ca], [cc, ca, cb], [cb, ca, cc])
    }
    # b loses to a on MED (same AS); then c (2.2.2.2) beats a (3.3.3.3) on router id
    assert results == {"c"}


def test_unresolvable_next_hop_is_not_eligible() -> None:
    ca = build("a", Side(path={"local_pref": 500}, peer=IBGP), "192.0.2.1")
    cb = build("b", Side(), "192.0.2.2")
    only_b: dict[bytes, int | None] = {cb.next_hop: 0}
    sel = decide([ca, cb], only_b.get)  # a's next hop does not resolve
    assert sel is not None and sel.best is cb and sel.step is Step.OnlyPath
    nothing: dict[bytes, int | None] = {}
    assert decide([ca, cb], nothing.get) is None
    assert decide([], nothing.get) is None


def _three_equal(**kw: Any) -> list[Candidate]:
    return [
        build("a", Side(peer={"router_id": "3.3.3.3", "asn": 65001},
                        path={"as_path": (65001,), "med": 30}), "192.0.2.1"),
        build("b", Side(peer={"router_id": "1.1.1.1", "asn": 65002},
                        path={"as_path": (65002,), "med": 10}), "192.0.2.2"),
        build("c", Side(peer={"router_id": "2.2.2.2", "asn": 65003},
                        path={"as_path": (65003,), "med": 20}), "192.0.2.3"),
    ]  # fmt: skip


def test_multipath_equal_through_next_hop_cost_across_neighbour_ases() -> None:
    cands = _three_equal()
    cost = {c.next_hop: 0 for c in cands}.get
    sel = decide(cands, cost, max_paths=8)
    assert sel is not None
    assert [c.peer for c in sel.paths] == ["b", "c", "a"]  # best first, then router id order
    assert sel.best.peer == "b" and sel.step is Step.RouterId
    assert sel.next_hops == tuple(c.next_hop for c in sel.paths)
    two = decide(cands, cost, max_paths=2)
    assert two is not None and [c.peer for c in two.paths] == ["b", "c"]
    one = decide(cands, cost, max_paths=1)
    assert one is not None and [c.peer for c in one.paths] == ["b"]


def test_multipath_excludes_paths_that_lose_before_the_tie_breaks() -> None:
    cands = _three_equal()
    cost = {cands[0].next_hop: 0, cands[1].next_hop: 7, cands[2].next_hop: 0}.get
    sel = decide(cands, cost, max_paths=8)
    assert sel is not None and [c.peer for c in sel.paths] == ["c", "a"]
    # always-compare-MED: lowest MED wins outright, nothing equal is left
    sel = decide(cands, {c.next_hop: 0 for c in cands}.get, max_paths=8, always_compare_med=True)
    assert sel is not None and [c.peer for c in sel.paths] == ["b"] and sel.step is Step.Med


def test_multipath_never_mixes_ebgp_and_ibgp() -> None:
    ca = build("a", Side(), "192.0.2.1")
    cb = build("b", Side(peer={**IBGP, "router_id": "1.1.1.1"}, path={"local_pref": 100}),
               "192.0.2.2")  # fmt: skip
    sel = decide([ca, cb], {ca.next_hop: 0, cb.next_hop: 0}.get, max_paths=8)
    assert sel is not None and [c.peer for c in sel.paths] == ["a"]


def test_multipath_one_entry_per_next_hop() -> None:
    ca = build("a", Side(peer={"router_id": "2.2.2.2"}, path={"next_hop": "198.51.100.9"}),
               "192.0.2.1")  # fmt: skip
    cb = build("b", Side(peer={"router_id": "1.1.1.1"}, path={"next_hop": "198.51.100.9"}),
               "192.0.2.2")  # fmt: skip
    sel = decide([ca, cb], {ca.next_hop: 0}.get, max_paths=8)
    assert sel is not None and [c.peer for c in sel.paths] == ["b"]


_side = st.builds(
    Side,
    peer=st.fixed_dictionaries(
        {
            "router_id": st.sampled_from(["1.1.1.1", "2.2.2.2", "3.3.3.3"]),
            "ebgp": st.booleans(),
            "address": st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1"]),
        }
    ),
    path=st.fixed_dictionaries(
        {
            "local_pref": st.sampled_from([None, 100, 200]),
            "as_path": st.sampled_from([(65001,), (65002,), (65001, 65003)]),
            "origin": st.integers(0, 2),
            "med": st.sampled_from([None, 0, 5, 10]),
            "next_hop": st.sampled_from(["198.51.100.1", "198.51.100.2", "198.51.100.3"]),
            "originator": st.sampled_from([None, "1.1.1.1", "4.4.4.4"]),
        }
    ),
    cost=st.integers(0, 2),
)


@given(
    sides=st.lists(_side, min_size=1, max_size=6),
    max_paths=st.integers(1, 4),
    always=st.booleans(),
    data=st.data(),
)
def test_order_never_changes_the_result(
    sides: list[Side], max_paths: int, always: bool, data: st.DataObject
) -> None:
    cands = [build(chr(ord("a") + i), s, "192.0.2.1") for i, s in enumerate(sides)]
    costs: dict[bytes, int | None] = {}
    for c, s in zip(cands, sides, strict=True):
        costs.setdefault(c.next_hop, s.cost)
    first = decide(cands, costs.get, max_paths=max_paths, always_compare_med=always)
    shuffled = data.draw(st.permutations(cands))
    again = decide(shuffled, costs.get, max_paths=max_paths, always_compare_med=always)
    assert (first is None) == (again is None)
    if first is not None and again is not None:
        assert first.best is again.best
        assert first.paths == again.paths
        assert first.step == again.step
        assert first.paths[0] is first.best
        assert len(first.paths) <= max_paths
        assert len({c.next_hop for c in first.paths}) == len(first.paths)
