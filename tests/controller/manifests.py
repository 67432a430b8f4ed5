"""Raw Kubernetes objects (as the API or `kubectl get -o yaml` gives them) for planner tests."""

from __future__ import annotations

import base64
from typing import Any

Raw = dict[str, Any]


def node(
    name: str = "n1",
    *,
    ip: str | None = "192.0.2.11",
    ipv6: str | None = None,
    pod_cidrs: tuple[str, ...] = ("10.244.1.0/24",),
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Raw:
    addresses = [{"type": "Hostname", "address": name}]
    if ip:
        addresses.append({"type": "InternalIP", "address": ip})
    if ipv6:
        addresses.append({"type": "InternalIP", "address": ipv6})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, **(labels or {})},
            "annotations": annotations or {},
        },
        "spec": {"podCIDRs": list(pod_cidrs)},
        "status": {"addresses": addresses},
    }


def peer(name: str = "tor-a", **spec: Any) -> Raw:
    labels = spec.pop("labels", {})
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPPeer",
        "metadata": {"name": name, "labels": labels},
        "spec": {"peerAddress": "192.0.2.1", "peerASN": 65000, **spec},
    }


def advertisement(name: str = "all", **spec: Any) -> Raw:
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPAdvertisement",
        "metadata": {"name": name},
        "spec": spec,
    }


def service(
    name: str = "web",
    namespace: str = "default",
    *,
    type: str = "LoadBalancer",
    cluster_ips: tuple[str, ...] = ("10.96.0.10",),
    lb_ips: tuple[str, ...] = ("203.0.113.10",),
    external_ips: tuple[str, ...] = (),
    etp: str = "Cluster",
    itp: str = "Cluster",
    lb_class: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Raw:
    spec: Raw = {
        "type": type,
        "clusterIP": cluster_ips[0] if cluster_ips else None,
        "clusterIPs": list(cluster_ips),
        "externalTrafficPolicy": etp,
        "internalTrafficPolicy": itp,
        "ports": [{"port": 80, "protocol": "TCP"}],
    }
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    if lb_class:
        spec["loadBalancerClass"] = lb_class
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb_ips]}},
    }


def endpoint(
    node_name: str = "n1",
    *,
    ready: bool | None = True,
    serving: bool | None = None,
    terminating: bool | None = None,
    address: str = "10.244.1.5",
) -> Raw:
    conditions = {
        k: v
        for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating))
        if v is not None
    }
    return {"addresses": [address], "nodeName": node_name, "conditions": conditions}


def endpoint_slice(
    service_name: str = "web", namespace: str = "default", *endpoints: Raw, name: str = ""
) -> Raw:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-abcde",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": list(endpoints),
    }


def secret(name: str = "bgp-auth", namespace: str = "kubgp", **data: str) -> Raw:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def node_peering(name: str = "mesh", **spec: Any) -> Raw:
    """A BGPNodePeering: a full mesh of the selected nodes unless `routeReflectors` is given."""
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPNodePeering",
        "metadata": {"name": name},
        "spec": spec,
    }


def cluster_nodes(count: int, *, reflectors: tuple[int, ...] = (), **extra: Any) -> list[Raw]:
    """Nodes n1..nN at 192.0.2.1N with pod CIDR 10.244.N.0/24; the given ones labelled as route
    reflectors (`kubgp.io/route-reflector: "true"`)."""
    return [
        node(
            f"n{i}",
            ip=f"192.0.2.{10 + i}",
            pod_cidrs=(f"10.244.{i}.0/24",),
            labels={"kubgp.io/route-reflector": "true"} if i in reflectors else {},
            **extra,
        )
        for i in range(1, count + 1)
    ]


RR_SELECTOR = {"matchLabels": {"kubgp.io/route-reflector": "true"}}
