"""What the cluster controller's runtime asks of the Kubernetes side: its writes and its
leadership, as Protocols (controller.kube.cluster_watch.KubeClusterWrites and
controller.kube.leader.LeaseElector are the real ones)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from controller.domain.ipam import LBService

StatusKind = Literal["LoadBalancerIPPool", "BGPPeer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Involved:
    """The object an Event is about (`namespace` None: cluster-scoped)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    involved: Involved
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


class ClusterWrites(Protocol):
    """Each write returns None when the object is gone or changed since it was read (404, 409:
    its own event brings the decision back) and raises on any other failure (retried later)."""

    async def write_service_addresses(
        self, service: LBService, addresses: Sequence[str]
    ) -> LBService | None:
        """Set `status.loadBalancer.ingress` to `addresses`, conditional on the Service's
        resourceVersion; returns the Service as written."""

    async def write_status(
        self, kind: StatusKind, name: str, status: Mapping[str, Any]
    ) -> str | None:
        """Replace a pool's or BGPPeer's status; returns the new resourceVersion."""

    async def post_event(self, event: Event) -> None:
        """Create a core/v1 Event."""


class Leadership(Protocol):
    def is_leader(self) -> bool:
        """True while the Lease was renewed within the renew deadline (non-blocking)."""

    def confirm(self) -> bool:
        """Renew the Lease now and say whether it is still ours (blocking: call it in a
        thread). A fence before a write that must not come from a deposed leader."""
