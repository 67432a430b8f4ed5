"""The cluster controller over HTTP with real kopf: LoadBalancer allocation end to end."""

from __future__ import annotations

import ipaddress

import pytest

from testing.kube.emulator import KubeAPI
from testing.wait import wait_for
from tests.cluster.harness import (
    condition,
    events,
    ingress,
    reasons,
    running,
    status_of,
    status_writes,
)
from tests.cluster.manifests import lb_service, pool

pytestmark = pytest.mark.slow  # the real kopf against the emulated API server


def test_automatic_allocation_events_pool_status_and_metrics(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/30",)))
    kube_api.apply(lb_service("web"))
    kube_api.apply(lb_service("other-class", lb_class="example.com/lb"))
    kube_api.apply(lb_service("plain", type="ClusterIP"))
    with running(kube_api) as controller:
        wait_for(lambda: ingress(kube_api, "web") == ("203.0.113.0",), "web's address")
        wait_for(lambda: "IPAllocated" in reasons(kube_api, "web"), "IPAllocated")
        assert events(kube_api, "web") == [
            ("Normal", "IPAllocated", "assigned 203.0.113.0 (pool v4)")
        ]
        wait_for(
            lambda: status_of(kube_api, "LoadBalancerIPPool", "v4").get("assigned") == 1,
            "pool status",
        )
        status = status_of(kube_api, "LoadBalancerIPPool", "v4")
        assert (status["total"], status["assigned"], status["available"]) == (4, 1, 3)
        assert condition(kube_api, "LoadBalancerIPPool", "v4", "Exhausted")["status"] == "False"
        used = {"pool": "v4", "state": "used"}
        wait_for(
            lambda: controller.metrics.value("kubgp_lb_pool_addresses", used) == 1,
            "gauge",
        )
        total = {"pool": "v4", "state": "total"}
        assert controller.metrics.value("kubgp_lb_pool_addresses", total) == 4
        assert controller.metrics.value("kubgp_cluster_controller_leader") == 1
    assert ingress(kube_api, "other-class") == ()
    assert ingress(kube_api, "plain") == ()
    assert reasons(kube_api, "other-class") == reasons(kube_api, "plain") == []
    assert controller.metrics.value("kubgp_cluster_controller_leader") == 0


def test_requested_addresses_free_taken_and_outside_every_pool(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/29",)))
    kube_api.apply(lb_service("holder", request="203.0.113.5", created="2026-01-01T00:00:00Z"))
    with running(kube_api) as controller:
        wait_for(lambda: ingress(kube_api, "holder") == ("203.0.113.5",), "the requested address")
        kube_api.apply(lb_service("spec-ip", load_balancer_ip="203.0.113.6"))
        kube_api.apply(lb_service("taken", request="203.0.113.5"))
        kube_api.apply(lb_service("outside", request="198.51.100.7"))
        wait_for(lambda: ingress(kube_api, "spec-ip") == ("203.0.113.6",), "spec.loadBalancerIP")
        wait_for(lambda: "AllocationFailed" in reasons(kube_api, "taken"), "taken's Event")
        wait_for(lambda: "AllocationFailed" in reasons(kube_api, "outside"), "outside's Event")
        assert events(kube_api, "taken") == [
            (
                "Warning",
                "AllocationFailed",
                "AddressInUse: 203.0.113.5 is in use by Service default/holder (both need the"
                " same kubgp.io/allow-shared-ip annotation)",
            )
        ]
        assert events(kube_api, "outside") == [
            (
                "Warning",
                "AllocationFailed",
                "NotInAnyPool: 198.51.100.7 is in no LoadBalancerIPPool",
            )
        ]
        assert ingress(kube_api, "taken") == ingress(kube_api, "outside") == ()
        failures = controller.metrics.value(
            "kubgp_lb_allocation_failures_total", {"reason": "AddressInUse"}
        )
        assert failures == 1
        # Asking again for a free address is met; the failure is not repeated on every event.
        kube_api.apply(lb_service("taken", request="203.0.113.7"))
        wait_for(lambda: ingress(kube_api, "taken") == ("203.0.113.7",), "the new request")
        kube_api.apply(lb_service("outside", request="198.51.100.7", labels={"touched": "1"}))
        # A barrier: a later event handled means the relabel was handled before it.
        kube_api.apply(lb_service("barrier"))
        wait_for(lambda: ingress(kube_api, "barrier"), "the barrier's address")
    assert reasons(kube_api, "outside") == ["AllocationFailed"]
    assert reasons(kube_api, "taken") == ["AllocationFailed", "IPAllocated"]


def test_pool_selection_by_selector_namespace_and_annotation(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("a-general", cidrs=("203.0.113.0/30",)))
    kube_api.apply(pool("b-edge", cidrs=("198.51.100.0/30",), selector={"tier": "edge"}))
    kube_api.apply(pool("c-prod", cidrs=("198.51.100.8/30",), namespaces=("prod",)))
    kube_api.apply(pool("d-manual", cidrs=("198.51.100.16/30",), auto_assign=False))
    kube_api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})
    # Pools are tried in name order: a-general selects everything, so the others are asked for.
    kube_api.apply(lb_service("edge", labels={"tier": "edge"}, pool="b-edge"))
    kube_api.apply(lb_service("prod", "prod", pool="c-prod"))
    kube_api.apply(lb_service("manual", pool="d-manual"))
    kube_api.apply(lb_service("plain"))
    kube_api.apply(lb_service("not-edge", pool="b-edge"))
    kube_api.apply(lb_service("not-prod", pool="c-prod"))
    with running(kube_api):
        wait_for(lambda: ingress(kube_api, "edge") == ("198.51.100.0",), "edge")
        wait_for(lambda: ingress(kube_api, "prod", "prod") == ("198.51.100.8",), "prod")
        wait_for(lambda: ingress(kube_api, "manual") == ("198.51.100.16",), "manual")
        wait_for(lambda: ingress(kube_api, "plain") == ("203.0.113.0",), "plain")
        for name in ("not-edge", "not-prod"):
            wait_for(lambda n=name: "AllocationFailed" in reasons(kube_api, n), name)  # type: ignore[misc]
        assert events(kube_api, "not-edge")[0][2] == (
            "PoolNotSelecting: LoadBalancerIPPool b-edge does not select this Service"
            " (its serviceSelector or namespaces)"
        )
        # A label change moves a Service out of a pool that no longer selects it.
        kube_api.apply(
            lb_service("edge", labels={"tier": "web"}, pool="b-edge", assigned=("198.51.100.0",))
        )
        wait_for(lambda: "AllocationFailed" in reasons(kube_api, "edge"), "edge deselected")
        assert ingress(kube_api, "edge") == ()


def test_dual_stack(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/30",)))
    kube_api.apply(pool("v6", ranges=(("2001:db8::10", "2001:db8::1f"),)))
    kube_api.apply(lb_service("dual", families=("IPv6", "IPv4"), policy="RequireDualStack"))
    kube_api.apply(
        lb_service(
            "asked",
            families=("IPv4", "IPv6"),
            policy="RequireDualStack",
            request="203.0.113.3,2001:db8::1f",
        )
    )
    kube_api.apply(lb_service("v6only", families=("IPv6",)))
    with running(kube_api):
        wait_for(lambda: ingress(kube_api, "asked") == ("203.0.113.3", "2001:db8::1f"), "asked")
        dual = wait_for(lambda: ingress(kube_api, "dual"), "dual")
        v6only = wait_for(lambda: ingress(kube_api, "v6only"), "v6only")
    # One address per family, in ipFamilies order; which one depends on who came first.
    assert [ipaddress.ip_address(a).version for a in dual] == [6, 4]
    assert [ipaddress.ip_address(a).version for a in v6only] == [6]
    assert len({*dual, *v6only, "203.0.113.3", "2001:db8::1f"}) == 5


def test_sharing_allowed_and_refused(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/30",)))
    kube_api.apply(lb_service("http", share="front", ports=(80,)))
    with running(kube_api):
        wait_for(lambda: ingress(kube_api, "http") == ("203.0.113.0",), "http")
        kube_api.apply(lb_service("https", share="front", ports=(443,)))
        kube_api.apply(
            lb_service("dns", share="front", ports=(("UDP", 53),), request="203.0.113.0")
        )
        kube_api.apply(lb_service("clash", share="front", ports=(80,), request="203.0.113.0"))
        kube_api.apply(lb_service("stranger", ports=(8080,), request="203.0.113.0"))
        kube_api.apply(lb_service("auto-clash", share="front", ports=(80,)))
        wait_for(lambda: ingress(kube_api, "https") == ("203.0.113.0",), "https shares")
        wait_for(lambda: ingress(kube_api, "dns") == ("203.0.113.0",), "dns shares")
        wait_for(lambda: ingress(kube_api, "auto-clash") == ("203.0.113.1",), "own address")
        wait_for(lambda: "AllocationFailed" in reasons(kube_api, "clash"), "clash refused")
        wait_for(lambda: "AllocationFailed" in reasons(kube_api, "stranger"), "stranger refused")
        assert "ports overlap: 80/TCP" in events(kube_api, "clash")[0][2]
        assert ingress(kube_api, "clash") == ingress(kube_api, "stranger") == ()
        # A shared address counts once in its pool.
        wait_for(
            lambda: (
                (s := status_of(kube_api, "LoadBalancerIPPool", "v4")).get("assigned") == 2 and s
            ),
            "pool counts",
        )


def test_exhaustion_then_release_deletion_and_type_change(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("one", ranges=(("203.0.113.9", "203.0.113.9"),)))
    kube_api.apply(lb_service("first", created="2026-01-01T00:00:00Z"))
    with running(kube_api):
        wait_for(lambda: ingress(kube_api, "first") == ("203.0.113.9",), "first")
        kube_api.apply(lb_service("second"))
        wait_for(lambda: "AllocationFailed" in reasons(kube_api, "second"), "exhausted")
        assert events(kube_api, "second")[0][2] == (
            "PoolExhausted: no free IPv4 address in LoadBalancerIPPool one"
        )
        wait_for(
            lambda: (
                condition(kube_api, "LoadBalancerIPPool", "one", "Exhausted").get("status")
                == "True"
            ),
            "Exhausted",
        )
        wait_for(lambda: "PoolExhausted" in reasons(kube_api, "one"), "the pool's Event")
        # Deleting the holder frees the address for the one waiting.
        kube_api.delete("Service", "first", "default")
        wait_for(lambda: ingress(kube_api, "second") == ("203.0.113.9",), "second gets it")
        # A type change releases the address, and the Event says so.
        stored = kube_api.get("Service", "second", "default")
        assert stored is not None
        kube_api.apply({**stored, "spec": {**stored["spec"], "type": "ClusterIP"}})
        wait_for(lambda: ingress(kube_api, "second") == (), "released")
        wait_for(lambda: "IPReleased" in reasons(kube_api, "second"), "IPReleased")
        wait_for(
            lambda: (
                condition(kube_api, "LoadBalancerIPPool", "one", "Exhausted").get("status")
                == "False"
            ),
            "not exhausted",
        )
        kube_api.apply(lb_service("third"))
        wait_for(lambda: ingress(kube_api, "third") == ("203.0.113.9",), "third")


def test_a_shrunk_pool_is_reported_not_silently_broken(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/30",)))
    with running(kube_api):
        for i, name in enumerate(("a", "b", "c")):
            kube_api.apply(lb_service(name))
            wait_for(lambda n=name, i=i: ingress(kube_api, n) == (f"203.0.113.{i}",), name)  # type: ignore[misc]
        kube_api.apply(pool("v4", cidrs=("203.0.113.0/31",)))
        wait_for(
            lambda: (
                condition(kube_api, "LoadBalancerIPPool", "v4", "AddressesOutsidePool").get(
                    "status"
                )
                == "True"
            ),
            "the pool's condition",
        )
        message = condition(kube_api, "LoadBalancerIPPool", "v4", "AddressesOutsidePool")["message"]
        assert message.endswith("default/c 203.0.113.2")
        wait_for(lambda: "AddressOutsidePool" in reasons(kube_api, "c"), "the Service's Event")
        wait_for(lambda: "AddressesOutsidePool" in reasons(kube_api, "v4"), "the pool's Event")
        # c keeps its address (no traffic cut), and nobody else gets it.
        assert ingress(kube_api, "c") == ("203.0.113.2",)
        kube_api.apply(pool("v4", cidrs=("203.0.113.0/29",)))
        kube_api.apply(lb_service("d"))
        wait_for(lambda: ingress(kube_api, "d") == ("203.0.113.3",), "d skips c's address")
        wait_for(
            lambda: (
                condition(kube_api, "LoadBalancerIPPool", "v4", "AddressesOutsidePool").get(
                    "status"
                )
                == "False"
            ),
            "back inside",
        )
    assert status_writes(kube_api, "/services/c/status") == 1


def test_a_failed_address_write_is_retried_without_a_new_event(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/30",)))
    # Enough failures to outlast the events our own pool status writes cause.
    kube_api.handler["patch /api/v1/namespaces/default/services/web/status"][:4] << 500
    kube_api.apply(lb_service("web"))
    with running(kube_api):
        wait_for(lambda: ingress(kube_api, "web") == ("203.0.113.0",), "web, after four 500s")
    assert status_writes(kube_api, "/services/web/status") == 5


def test_a_failed_pool_status_write_is_retried(kube_api: KubeAPI) -> None:
    kube_api.apply(pool("flaky", cidrs=("198.51.100.0/30",)))
    kube_api.handler["patch /apis/kubgp.io/v1alpha1/loadbalancerippools/flaky/status"][:3] << 500
    with running(kube_api):
        wait_for(
            lambda: status_of(kube_api, "LoadBalancerIPPool", "flaky").get("total") == 4,
            "flaky's status, after three 500s",
        )
    assert status_writes(kube_api, "/loadbalancerippools/flaky/status") == 4
