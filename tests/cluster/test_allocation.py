"""The cluster controller over HTTP with real kopf: LoadBalancer allocation end to end."""

from __future__ import annotations

from tests.cluster.harness import events, ingress, reasons, running, wait_for
from tests.cluster.manifests import lb_service, pool
from tests.kube.emulator import KubeAPI


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
        status = wait_for(
            lambda: (
                (kube_api.get("LoadBalancerIPPool", "v4") or {}).get("status", {}).get("assigned")
                == 1
                and kube_api.get("LoadBalancerIPPool", "v4")["status"]
            ),  # type: ignore[index]
            "pool status",
        )
        assert (status["total"], status["assigned"], status["available"]) == (4, 1, 3)
        exhausted = next(c for c in status["conditions"] if c["type"] == "Exhausted")
        assert exhausted["status"] == "False"
        wait_for(
            lambda: (
                controller.metrics.value("kubgp_lb_pool_addresses", {"pool": "v4", "state": "used"})
                == 1
            ),
            "the used gauge",
        )
        assert (
            controller.metrics.value("kubgp_lb_pool_addresses", {"pool": "v4", "state": "total"})
            == 4
        )
        assert controller.metrics.value("kubgp_cluster_controller_leader") == 1
    assert ingress(kube_api, "other-class") == ()
    assert ingress(kube_api, "plain") == ()
    assert reasons(kube_api, "other-class") == reasons(kube_api, "plain") == []
    assert controller.metrics.value("kubgp_cluster_controller_leader") == 0
