"""Allocation must not depend on which watch delivers its first events first, nor on whether our
leadership was confirmed at the moment a write was due: a write skipped for want of a renewed
Lease is logged and made once the Lease is renewed."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from controller.cluster import runtime
from controller.kube import cluster_watch
from controller.kube.leader import LeaseElector
from testing.kube.emulator import KubeAPI
from testing.wait import wait_for
from tests.cluster.harness import (
    FAST_LEASE,
    events,
    ingress,
    reasons,
    running,
    status_of,
)
from tests.cluster.manifests import lb_service, pool

pytestmark = pytest.mark.slow  # the real kopf against the emulated API server

POOL = pool("v4", cidrs=("203.0.113.0/30",))


def _allocated(api: KubeAPI) -> None:
    wait_for(lambda: ingress(api, "web") == ("203.0.113.0",), "web's address", timeout=30)
    wait_for(lambda: status_of(api, "LoadBalancerIPPool", "v4").get("assigned") == 1, "pool")
    wait_for(lambda: "IPAllocated" in reasons(api, "web"), "IPAllocated")


def test_pool_seen_before_the_service(kube_api: KubeAPI) -> None:
    kube_api.apply(POOL)
    with running(kube_api):
        wait_for(lambda: status_of(kube_api, "LoadBalancerIPPool", "v4").get("total") == 4, "pool")
        kube_api.apply(lb_service("web"))
        _allocated(kube_api)


def test_service_seen_before_the_pool(kube_api: KubeAPI) -> None:
    kube_api.apply(lb_service("web"))
    with running(kube_api):
        wait_for(lambda: "AllocationFailed" in reasons(kube_api, "web"), "no pool yet", timeout=30)
        assert ingress(kube_api, "web") == ()
        kube_api.apply(POOL)
        _allocated(kube_api)


def test_service_and_pool_in_the_first_batch(kube_api: KubeAPI) -> None:
    kube_api.apply(lb_service("web"))
    kube_api.apply(POOL)
    with running(kube_api):
        _allocated(kube_api)
    assert "AllocationFailed" not in reasons(kube_api, "web")


class _GatedElector(LeaseElector):
    """A LeaseElector whose renewals wait while `gate` is clear: a renewal that comes late, as
    on a loaded machine, without anyone else taking the Lease."""

    gate = threading.Event()
    instances: list[LeaseElector] = []  # noqa: RUF012 (one per test, reset below)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.instances.append(self)

    def try_acquire_or_renew(self) -> bool:
        self.gate.wait()
        return super().try_acquire_or_renew()


def test_writes_skipped_while_the_lease_renewal_is_late_are_made_once_it_is_renewed(
    kube_api: KubeAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _GatedElector.gate.set()
    _GatedElector.instances.clear()
    monkeypatch.setattr(cluster_watch, "LeaseElector", _GatedElector)
    caplog.set_level(logging.INFO, logger=runtime.__name__)
    kube_api.apply(POOL)
    with running(kube_api):
        try:
            wait_for(lambda: status_of(kube_api, "LoadBalancerIPPool", "v4").get("total"), "pool")
            (elector,) = _GatedElector.instances
            _GatedElector.gate.clear()  # renewals hang from here on
            wait_for(lambda: not elector.is_leader(), "the renew deadline to pass")
            kube_api.apply(lb_service("web"))
            wait_for(
                lambda: "Service default/web's addresses deferred" in caplog.text,
                "the skipped write to be logged",
                timeout=30,
            )
            assert ingress(kube_api, "web") == ()
        finally:
            _GatedElector.gate.set()
        _allocated(kube_api)
        assert "leadership confirmed: retrying the deferred writes" in caplog.text
        assert events(kube_api, "web") == [
            ("Normal", "IPAllocated", "assigned 203.0.113.0 (pool v4)")
        ]


def test_a_term_that_starts_slowly_still_allocates(
    kube_api: KubeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building the controller for a new term outlasts the renew deadline (as the first
    CoreV1Api did on a loaded machine): the writes due right after must still happen."""
    build = runtime.ClusterController.__init__

    def slow(self: runtime.ClusterController, *args: Any, **kwargs: Any) -> None:
        time.sleep(FAST_LEASE["lease_duration"] + 0.5)
        build(self, *args, **kwargs)

    monkeypatch.setattr(runtime.ClusterController, "__init__", slow)
    kube_api.apply(POOL)
    kube_api.apply(lb_service("web"))
    with running(kube_api):
        _allocated(kube_api)
