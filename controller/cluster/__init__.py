"""The cluster controller's runtime: what to do when the cluster changes, with no Kubernetes
client in sight. `ClusterController` (runtime.py) allocates LoadBalancer addresses through the
pure IPAM (controller.domain.ipam), keeps pool and BGPPeer status, de-duplicates Events, retries
failed writes and defers writes made while leadership is unconfirmed. controller.kube.cluster_watch
feeds it (kopf's indexes and events) and carries out its writes (`ClusterWrites`); an
import-linter contract keeps kopf, kubernetes and controller.kube out of this package."""
