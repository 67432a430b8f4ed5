"""Why the planner left something out (or changed it): reasons are values, not log lines.

Like MetalLB's `ShouldAnnounce` returning `"noLocalEndpoints"` instead of false, every object the
planner skips or alters for a node gets a `Reason`: a code, the object it concerns and a detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ReasonCode(StrEnum):
    # The node itself
    NodeNotFound = "NodeNotFound"
    NoRouterId = "NoRouterId"
    NoPodCIDR = "NoPodCIDR"
    # Any object that does not parse (bad spec, bad annotation)
    InvalidObject = "InvalidObject"
    # BGPPeer / BGPAdvertisement whose nodeSelector does not select this node
    NotSelected = "NotSelected"
    # BGPPeer whose password Secret or key is missing: no session, never one without password
    PeerSecretMissing = "PeerSecretMissing"
    # BGPAdvertisement whose peerSelector selects none of this node's peers
    NoPeerSelected = "NoPeerSelected"
    # A prefix whose address family none of the advertisement's peers carries
    NoAddressFamily = "NoAddressFamily"
    # Services
    OptedOut = "OptedOut"
    ServiceNotSelected = "ServiceNotSelected"
    ForeignLoadBalancerClass = "ForeignLoadBalancerClass"
    NoAddressAssigned = "NoAddressAssigned"
    HeadlessService = "HeadlessService"
    NoLocalReadyEndpoint = "NoLocalReadyEndpoint"
    # Node-to-node peering (BGPNodePeering, docs/in-cluster-routing.md)
    # A node that several BGPNodePeerings select: a member of the first by name only
    NodePeeringConflict = "NodePeeringConflict"
    # Another member this node cannot peer with: no InternalIP of a family both have, its
    # address is a BGPPeer's already, or its ASN differs (node peering is iBGP)
    NoNodeSession = "NoNodeSession"
    # Not left out but altered: only terminating-but-serving local endpoints, announced with
    # AS-path prepend so the ToR drains traffic to other nodes first.
    DrainingTerminatingEndpoint = "DrainingTerminatingEndpoint"


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    """A Kubernetes object: kind, namespace ("" when cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else (f"{self.kind} {self.name}")
        )


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    ref: ObjectRef
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        doc = {"reason": self.code.value, "kind": self.ref.kind}
        if self.ref.namespace:
            doc["namespace"] = self.ref.namespace
        doc["name"] = self.ref.name
        if self.detail:
            doc["detail"] = self.detail
        return doc

    def __str__(self) -> str:
        return f"{self.code.value}: {self.ref}" + (f": {self.detail}" if self.detail else "")
