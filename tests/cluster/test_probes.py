"""The cluster controller's /readyz and /livez: the rules (pure, on a fake clock), then real
controllers (real kopf, real HTTP) against the emulator: a leader and a healthy standby are both
ready and say which; a kopf whose event loop is stuck fails /livez while the Lease is still
renewed, and the restart that follows hands the Lease to the standby, which allocates."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import pytest

from controller.cluster import runtime
from controller.cluster.probes import ClusterHealth, LiveReason, ReadyReason
from controller.cluster.runtime import ClusterController
from testing.kube.emulator import KubeAPI
from testing.wait import wait_for
from tests.cluster.harness import Controller, ingress, running
from tests.cluster.manifests import lb_service, pool

POOL = pool("v4", cidrs=("203.0.113.0/30",))


# --- the rules ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeLease:
    attempted_at: float | None = None
    readable: bool = False
    holder: str | None = None


@dataclass
class FakeKopf:
    beat_at: float | None = None
    alive: bool = True
    ready: bool = False

    def is_alive(self) -> bool:
        return self.alive

    def is_ready(self) -> bool:
        return self.ready


def test_standby_is_ready_while_it_reads_the_lease() -> None:
    clock = Clock()
    health = ClusterHealth(stall_after=30, clock=clock)
    lease = FakeLease()
    health.electing(lease)
    assert health.ready().reason == ReadyReason.Starting and not health.ready().ok
    lease.attempted_at, lease.readable, lease.holder = clock.now, True, "c1"
    assert (health.ready().ok, health.ready().reason) == (True, ReadyReason.Standby)
    assert health.ready().text() == "Standby: standing by for c1\n"
    lease.readable = False
    assert (health.ready().ok, health.ready().reason) == (False, ReadyReason.LeaseUnreadable)
    assert health.live().ok  # an unreachable API server is not cured by a restart


def test_leader_is_ready_once_kopf_runs() -> None:
    clock = Clock()
    health = ClusterHealth(stall_after=30, clock=clock)
    health.electing(FakeLease(attempted_at=clock.now, readable=True, holder="c1"))
    kopf = FakeKopf()
    health.acting(kopf)
    assert (health.ready().ok, health.ready().reason) == (False, ReadyReason.Starting)
    kopf.ready = True
    assert (health.ready().ok, health.ready().reason) == (True, ReadyReason.Leader)
    health.standing_by()
    assert health.ready().reason == ReadyReason.Standby


def test_livez_fails_when_kopf_misses_its_heartbeats_or_its_thread_ends() -> None:
    clock = Clock()
    health = ClusterHealth(stall_after=30, clock=clock)
    lease = FakeLease(attempted_at=clock.now, readable=True, holder="c1")
    health.electing(lease)
    kopf = FakeKopf()
    health.acting(kopf)
    clock.now += 29  # no heartbeat yet: counted from when the term started
    assert health.live().ok
    clock.now += 2
    lease.attempted_at = clock.now
    assert health.live().reason == LiveReason.KopfStalled
    kopf.beat_at = clock.now
    assert health.live().ok
    clock.now += 31
    lease.attempted_at = clock.now  # the Lease loop is fine: only kopf is stuck
    assert (health.live().ok, health.live().reason) == (False, LiveReason.KopfStalled)
    kopf.beat_at, kopf.alive = clock.now, False
    assert (health.live().ok, health.live().reason) == (False, LiveReason.KopfStopped)
    health.standing_by()
    assert health.live().ok


def test_livez_fails_when_no_lease_attempt_ends() -> None:
    clock = Clock()
    health = ClusterHealth(stall_after=30, clock=clock)
    lease = FakeLease()
    health.electing(lease)
    clock.now += 31  # the first attempt hangs
    assert health.live().reason == LiveReason.LeaseLoopStalled
    lease.attempted_at = clock.now
    assert health.live().ok
    clock.now += 31
    assert (health.live().ok, health.live().reason) == (False, LiveReason.LeaseLoopStalled)


# --- real controllers against the emulator -----------------------------------------------


def _holder(api: KubeAPI) -> str | None:
    lease = api.get("Lease", "kubgp-cluster-controller", "kube-system")
    return None if lease is None else lease["spec"].get("holderIdentity")


def _ready(controller: Controller, reason: ReadyReason) -> bool:
    status, text = controller.probe("/readyz")
    return status == 200 and text.startswith(f"{reason}:")


@pytest.mark.slow  # the real kopf against the emulated API server
def test_leader_and_standby_are_both_ready_and_a_stopped_standby_releases_nothing(
    kube_api: KubeAPI,
) -> None:
    kube_api.apply(POOL)
    with running(kube_api, identity="c1", health=True) as c1:
        wait_for(lambda: _ready(c1, ReadyReason.Leader), "c1 to lead", timeout=30)
        assert c1.options.health is not None
        kopf = c1.options.health.kopf
        assert kopf is not None
        first = kopf.beat_at
        assert first is not None
        wait_for(lambda: (kopf.beat_at or 0) > first, "kopf's loop to beat again")
        with running(kube_api, identity="c2", health=True) as c2:
            wait_for(lambda: _ready(c2, ReadyReason.Standby), "c2 to stand by", timeout=30)
            assert c2.probe("/readyz") == (200, "Standby: standing by for c1\n")
            assert c1.probe("/livez") == (200, "Running\n")
            assert c2.probe("/livez") == (200, "Running\n")
            assert c1.probe("/healthz")[0] == 404
        assert _holder(kube_api) == "c1"  # the standby's SIGTERM released nothing
        kube_api.apply(lb_service("web"))
        wait_for(lambda: ingress(kube_api, "web") == ("203.0.113.0",), "c1 to allocate")
    assert _holder(kube_api) is None  # the leader's SIGTERM released its Lease


@pytest.mark.slow  # the real kopf against the emulated API server
def test_a_stuck_kopf_fails_livez_and_its_restart_hands_over_to_the_standby(
    kube_api: KubeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    reconcile = ClusterController.reconcile_service

    async def blocking_in_c1(self: ClusterController, key: tuple[str, str]) -> None:
        if threading.current_thread().name == "kopf-c1" and key == ("default", "stuck"):
            gate.wait(120)  # a blocking call on kopf's event loop: the loop stops
        await reconcile(self, key)

    monkeypatch.setattr(runtime.ClusterController, "reconcile_service", blocking_in_c1)
    kube_api.apply(POOL)
    c1 = Controller(kube_api, identity="c1", health=True, stall_after=3, kopf_stop_timeout=0.5)
    c2 = Controller(kube_api, identity="c2", health=True, stall_after=3)
    try:
        c1.start()
        wait_for(lambda: _ready(c1, ReadyReason.Leader), "c1 to lead", timeout=30)
        c2.start()
        wait_for(lambda: _ready(c2, ReadyReason.Standby), "c2 to stand by", timeout=30)
        kube_api.apply(lb_service("stuck"))
        wait_for(
            lambda: c1.probe("/livez")[1].startswith(f"{LiveReason.KopfStalled}:"),
            "c1's /livez to report kopf stalled",
            timeout=30,
        )
        assert c1.probe("/livez")[0] == 503
        # The Lease loop still renews: nothing but the kubelet's restart ends this term.
        assert _holder(kube_api) == "c1"
        assert ingress(kube_api, "stuck") == ()
        c1.stop(expect=1)  # the kubelet's restart: kopf cannot stop, the Lease is released
        # Released, not expired: the standby waits a whole lease (2 s) for an unrenewed one.
        assert _holder(kube_api) != "c1"
        wait_for(lambda: _ready(c2, ReadyReason.Leader), "c2 to take over", timeout=30)
        assert _holder(kube_api) == "c2"
        wait_for(lambda: ingress(kube_api, "stuck") == ("203.0.113.0",), "c2 to allocate")
    finally:
        gate.set()
        if c1.thread.is_alive():  # an assertion above failed before c1's "restart"
            with contextlib.suppress(AssertionError):
                c1.stop(expect=1)
        c2.stop()
