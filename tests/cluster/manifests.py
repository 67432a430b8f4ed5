"""Raw objects for the cluster controller's tests: LoadBalancer Services, pools, peers, nodes
and BGPNodeStates, as the API server gives them."""

from __future__ import annotations

from typing import Any

Raw = dict[str, Any]


def lb_service(
    name: str = "web",
    namespace: str = "default",
    *,
    ports: tuple[int | tuple[str, int], ...] = (80,),
    families: tuple[str, ...] | None = None,
    policy: str | None = None,
    request: str | None = None,
    load_balancer_ip: str | None = None,
    pool: str | None = None,
    share: str | None = None,
    labels: dict[str, str] | None = None,
    lb_class: str | None = None,
    type: str = "LoadBalancer",
    assigned: tuple[str, ...] = (),
    created: str = "2026-01-01T00:00:00Z",
) -> Raw:
    annotations: dict[str, str] = {}
    if request is not None:
        annotations["kubgp.io/load-balancer-ips"] = request
    if pool is not None:
        annotations["kubgp.io/ip-pool"] = pool
    if share is not None:
        annotations["kubgp.io/allow-shared-ip"] = share
    spec: Raw = {
        "type": type,
        "ports": [
            {"port": p, "protocol": "TCP"}
            if isinstance(p, int)
            else {"port": p[1], "protocol": p[0]}
            for p in ports
        ],
    }
    if families is not None:
        spec["ipFamilies"] = list(families)
    if policy is not None:
        spec["ipFamilyPolicy"] = policy
    if load_balancer_ip is not None:
        spec["loadBalancerIP"] = load_balancer_ip
    if lb_class is not None:
        spec["loadBalancerClass"] = lb_class
    obj: Raw = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels or {},
            "annotations": annotations,
            "creationTimestamp": created,
        },
        "spec": spec,
    }
    if assigned:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in assigned]}}
    return obj


def pool(
    name: str = "default",
    *,
    cidrs: tuple[str, ...] = (),
    ranges: tuple[tuple[str, str], ...] = (),
    selector: dict[str, str] | None = None,
    namespaces: tuple[str, ...] = (),
    auto_assign: bool | None = None,
    avoid_buggy: bool | None = None,
) -> Raw:
    spec: Raw = {}
    if cidrs:
        spec["cidrs"] = list(cidrs)
    if ranges:
        spec["ranges"] = [{"start": a, "end": b} for a, b in ranges]
    if selector is not None:
        spec["serviceSelector"] = {"matchLabels": selector}
    if namespaces:
        spec["namespaces"] = list(namespaces)
    if auto_assign is not None:
        spec["autoAssign"] = auto_assign
    if avoid_buggy is not None:
        spec["avoidBuggyIPs"] = avoid_buggy
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "LoadBalancerIPPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def node(name: str, **labels: str) -> Raw:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def bgp_peer(name: str, selector: dict[str, str] | None = None, **spec: Any) -> Raw:
    body: Raw = {"peerAddress": "192.0.2.1", "peerASN": 65000, **spec}
    if selector is not None:
        body["nodeSelector"] = {"matchLabels": selector}
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": body,
    }


def node_state(name: str, **peers: str) -> Raw:
    """A BGPNodeState with one entry per peer name -> FSM state."""
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPNodeState",
        "metadata": {"name": name},
        "status": {
            "routerId": "192.0.2.11",
            "asn": 64512,
            "configuredPeers": len(peers),
            "establishedPeers": sum(s == "Established" for s in peers.values()),
            "peers": [{"name": p, "state": s} for p, s in sorted(peers.items())],
        },
    }
