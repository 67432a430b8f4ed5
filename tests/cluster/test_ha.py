"""Leader election and restarts: addresses survive a restart, two controllers started at once
never double-allocate, a standby takes over, and two *active* controllers (a dual-active
window, forced here by turning election off) still end with every address held once."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from controller.kube.leader import LeaseElector
from testing.kube.emulator import KubeAPI
from testing.wait import wait_for
from tests.cluster.conftest import CONTROLLER_AGENTS
from tests.cluster.harness import (
    Controller,
    ServiceRecorder,
    controller_client,
    ingress,
    lease,
    running,
    status_writes,
)
from tests.cluster.manifests import lb_service, pool
from tests.packaging.rbac import assert_granted, sent_by

LEASE = ("Lease", "kubgp-cluster-controller", "kube-system")


def holder(api: KubeAPI) -> str | None:
    obj = api.get(*LEASE)
    return None if obj is None else obj["spec"].get("holderIdentity")


def no_sharing(_a: tuple[str, str], _b: tuple[str, str]) -> bool:
    return False


def distinct(addresses: dict[str, tuple[str, ...]]) -> bool:
    every = [a for ips in addresses.values() for a in ips]
    return all(len(ips) == 1 for ips in addresses.values()) and len(set(every)) == len(every)


def all_addresses(api: KubeAPI, names: list[str]) -> dict[str, tuple[str, ...]]:
    return {name: ingress(api, name) for name in names}


@pytest.mark.slow  # the real kopf against the emulated API server
def test_restart_keeps_every_address(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/28",)))
    kube_api.apply(pool("v6", cidrs=("2001:db8::/124",)))
    names = ["a", "b", "c", "d", "shared-1", "shared-2", "asked", "dual"]
    with running(kube_api, identity="first"):
        for name in names[:4]:
            kube_api.apply(lb_service(name))
            wait_for(lambda n=name: ingress(kube_api, n), name)  # type: ignore[misc]
        kube_api.apply(lb_service("shared-1", share="k", ports=(80,)))
        kube_api.apply(lb_service("shared-2", share="k", ports=(443,)))
        kube_api.apply(lb_service("asked", request="203.0.113.14"))
        kube_api.apply(lb_service("dual", families=("IPv4", "IPv6"), policy="RequireDualStack"))
        wait_for(lambda: all(all_addresses(kube_api, names).values()), "every address")
    before = all_addresses(kube_api, names)
    assert before["shared-1"] == before["shared-2"]
    assert holder(kube_api) is None  # released on the way out
    # While no controller runs: a's address is freed (so lowest-free would now hand out a's
    # old address first) and a newcomer arrives.
    kube_api.delete("Service", "a", "default")
    kube_api.apply(lb_service("newcomer"))
    names.remove("a")
    writes_before = len(kube_api.writes())
    with running(kube_api, identity="second"):
        wait_for(lambda: ingress(kube_api, "newcomer") == before["a"], "the newcomer")
        wait_for(lambda: holder(kube_api) == "second", "the Lease")
    after = all_addresses(kube_api, names)
    assert {n: after[n] for n in names if n in before} == {
        n: before[n] for n in names if n in before
    }
    rewritten = [
        path
        for method, path, _ in kube_api.writes()[writes_before:]
        if method == "PATCH" and "/services/" in path and not path.endswith("/newcomer/status")
    ]
    assert rewritten == []


@pytest.mark.slow  # the real kopf against the emulated API server
def test_two_controllers_started_at_once_never_double_allocate(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/27",)))
    names = [f"s{i:02}" for i in range(16)]
    with ServiceRecorder(kube_api) as recorder:
        for name in names:
            kube_api.apply(lb_service(name))
        one, two = Controller(kube_api, identity="one"), Controller(kube_api, identity="two")
        starters = [threading.Thread(target=c.start) for c in (one, two)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        try:
            wait_for(lambda: all(all_addresses(kube_api, names).values()), "every address")
            leader = holder(kube_api)
            assert leader in ("one", "two")
            # Exactly one acts: the standby's metric says so.
            active = {
                c.options.lease.identity: c.metrics.value("kubgp_cluster_controller_leader")
                for c in (one, two)
                if c.options.lease
            }
            assert active == {"one": float(leader == "one"), "two": float(leader == "two")}
            before = all_addresses(kube_api, names)
            # The leader goes; the standby takes over and carries on from the same state.
            (gone, standby) = (one, two) if leader == "one" else (two, one)
            gone.stop()
            assert standby.options.lease is not None
            wait_for(lambda: holder(kube_api) == standby.options.lease.identity, "the takeover")  # type: ignore[union-attr]
            kube_api.apply(lb_service("late"))
            wait_for(lambda: ingress(kube_api, "late"), "late's address")
            assert all_addresses(kube_api, names) == before
        finally:
            for c in (one, two):
                if c.thread.is_alive() or c.result is None:
                    c.stop()
        wait_for(
            lambda: any(k == ("default", "late") and ips for _, k, ips in recorder.history),
            "recorded",
        )
    assert distinct(all_addresses(kube_api, [*names, "late"]))
    assert recorder.double_holdings(sharing=no_sharing) == []


@pytest.mark.slow  # the real kopf against the emulated API server
def test_two_active_controllers_converge_to_one_holder_per_address(kube_api: KubeAPI) -> None:
    # No election at all: both act on every event (worse than any real dual-active window).
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/27",)))
    names = [f"s{i:02}" for i in range(16)]
    with (
        ServiceRecorder(kube_api) as recorder,
        running(kube_api, elect=False),
        running(kube_api, elect=False),
    ):
        for name in names:
            kube_api.apply(lb_service(name))
        wait_for(
            lambda: recorder.quiet_for(0.5) and distinct(all_addresses(kube_api, names)),
            "one distinct address each, and quiet",
        )
        settled = all_addresses(kube_api, names)
        # Stable: a later event changes nothing for them.
        kube_api.apply(lb_service("barrier"))
        wait_for(lambda: ingress(kube_api, "barrier"), "the barrier")
        wait_for(lambda: recorder.quiet_for(0.5), "quiet again")
        assert all_addresses(kube_api, names) == settled
        assert distinct(all_addresses(kube_api, [*names, "barrier"]))
    collisions = recorder.double_holdings(sharing=no_sharing)
    print(f"transient double holdings while both were active: {len(collisions)}")


def test_lease_elector_takes_over_only_an_expired_lease(kube_api: KubeAPI) -> None:
    now = [0.0]
    clients = [controller_client(kube_api), controller_client(kube_api)]
    try:
        a = LeaseElector(clients[0], lease("a"), clock=lambda: now[0])
        b = LeaseElector(clients[1], lease("b"), clock=lambda: now[0])
        assert a.try_acquire_or_renew() and a.is_leader()
        assert not b.try_acquire_or_renew()
        now[0] += 1.0
        assert a.try_acquire_or_renew()  # renewing changes the record: b's timer restarts
        assert not b.try_acquire_or_renew()
        now[0] += 1.6  # a is past its renew deadline: it stops acting ...
        assert not a.is_leader()
        assert not b.try_acquire_or_renew()  # ... before b may take over (lease duration 2 s)
        now[0] += 0.5
        assert b.try_acquire_or_renew() and b.is_leader()
        spec = kube_api.get(*LEASE)["spec"]  # type: ignore[index]
        assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
        assert not a.try_acquire_or_renew()
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()  # type: ignore[no-untyped-call]
    assert status_writes(kube_api, "/status") == 0
    # The RBAC check after each test (conftest.py) covers these Lease calls, and bites: the
    # chart's leader-election Role is in the release namespace only, so a Lease elsewhere
    # is not granted.
    theirs = sent_by(kube_api.requests, *CONTROLLER_AGENTS)
    checked = assert_granted(theirs, component="controller", namespace="kube-system")
    assert {c.verb for c in checked} >= {"get", "update"}
    with pytest.raises(AssertionError, match=r"leases\.coordination\.k8s\.io"):
        assert_granted(theirs, component="controller", namespace="kubgp-system")


def test_a_deposed_leader_writes_no_address(kube_api: KubeAPI) -> None:
    # Frozen-process view: a thinks it still leads (its clock has not moved), b took over.
    a_clock, b_clock = [0.0], [0.0]
    clients = [controller_client(kube_api), controller_client(kube_api)]
    try:
        a = LeaseElector(clients[0], lease("a"), clock=lambda: a_clock[0])
        b = LeaseElector(clients[1], lease("b"), clock=lambda: b_clock[0])
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        b_clock[0] += 2.5
        assert b.try_acquire_or_renew()
        assert a.is_leader()  # by its own reckoning ...
        assert not a.confirm()  # ... but the fence before a write asks the API server
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()  # type: ignore[no-untyped-call]


@pytest.mark.slow  # the real kopf against the emulated API server
def test_a_running_leader_stops_allocating_when_its_lease_is_taken(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/30",)))
    kube_api.apply(lb_service("first"))
    with running(kube_api, identity="c1") as controller:
        wait_for(lambda: ingress(kube_api, "first"), "first's address")
        stolen = kube_api.get(*LEASE)
        assert stolen is not None
        # Someone else holds the Lease now (and never renews it).
        stolen["spec"] = {**stolen["spec"], "holderIdentity": "ghost"}
        kube_api.apply(stolen)
        taken_at = time.monotonic()
        kube_api.apply(lb_service("second"))
        wait_for(lambda: ingress(kube_api, "second"), "second's address, after the takeover")
        waited = time.monotonic() - taken_at
        assert holder(kube_api) == "c1"
        # Nothing was written for it until the ghost's Lease had expired (2 s) and c1 took
        # the Lease back: the fence refused the write the stale leader would have made.
        assert waited >= 2.0, waited
        assert controller.metrics.value("kubgp_cluster_controller_leader") == 1
