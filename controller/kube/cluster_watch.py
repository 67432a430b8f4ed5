"""The cluster controller's Kubernetes side: kopf's indexes and event handlers feed a
`controller.cluster.runtime.ClusterController`, `KubeClusterWrites` carries out its writes, and
`run_cluster` holds the Lease around kopf.

kopf guarantees that no handler runs before every index is fully listed, so a (re)started
controller knows every address Services hold before it hands one out.

Writes (`KubeClusterWrites`, the runtime's `ClusterWrites`):
- Service `status.loadBalancer.ingress` by merge patch carrying the resourceVersion the
  decision was made on (409 = a newer event is on its way; the decision is made again then).
- LoadBalancerIPPool and BGPPeer status.
- core/v1 Events on Services and pools (cluster-scoped objects' go to `event_namespace`).

One `ClusterController` serves one leadership term: kopf starts when this replica is elected
and stops when the Lease is lost or the process stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import kopf
import kubernetes

from controller.cluster.probes import HEARTBEAT_INTERVAL, ClusterHealth
from controller.cluster.runtime import ClusterController, Indexes
from controller.cluster.writes import Event, StatusKind
from controller.controller_metrics import ClusterMetrics
from controller.domain.ipam import IPAddress, LBService, parse_lb_service
from controller.domain.objects import GROUP
from controller.domain.peer_status import (
    NodeLabels,
    NodeSessions,
    parse_node_labels,
    parse_node_state,
)
from controller.kube.client import log_in_with
from controller.kube.leader import LeaseConfig, LeaseElector

logger = logging.getLogger(__name__)

VERSION: Final = "v1alpha1"
COMPONENT: Final = "kubgp-cluster-controller"
MERGE_PATCH: Final = "application/merge-patch+json"
# Core resources by group and version too: a bare "services" is ambiguous next to Knative.
SERVICES: Final = ("", "v1", "services")
NODES: Final = ("", "v1", "nodes")
PLURALS: Final[Mapping[StatusKind, str]] = {
    "LoadBalancerIPPool": "loadbalancerippools",
    "BGPPeer": "bgppeers",
}

Key = tuple[str, str]


# --- writes -------------------------------------------------------------------------------


class KubeClusterWrites:
    """controller.cluster.writes.ClusterWrites through the `kubernetes` client, each call in a
    worker thread. Built once per process, before the election: the first CoreV1Api imports
    ~1 s of generated code, which inside a leadership term would run on the loop that renews
    the Lease."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, identity: str, event_namespace: str
    ) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.identity = identity
        self.event_namespace = event_namespace

    async def write_service_addresses(
        self, service: LBService, addresses: Sequence[str]
    ) -> LBService | None:
        body = {
            "metadata": {"resourceVersion": service.resource_version},
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in addresses] or None}},
        }
        namespace, name = service.key
        try:
            raw = await asyncio.to_thread(
                self.core.patch_namespaced_service_status,
                name,
                namespace,
                body,
                _content_type=MERGE_PATCH,
            )
        except kubernetes.client.ApiException as err:
            if err.status in (404, 409):
                return None
            raise
        return parse_lb_service(self.core.api_client.sanitize_for_serialization(raw))

    async def write_status(
        self, kind: StatusKind, name: str, status: Mapping[str, Any]
    ) -> str | None:
        try:
            updated = await asyncio.to_thread(
                self.custom.patch_cluster_custom_object_status,
                GROUP,
                VERSION,
                PLURALS[kind],
                name,
                {"status": dict(status)},
            )
        except kubernetes.client.ApiException as err:
            if err.status in (404, 409):
                return None
            raise
        meta = updated.get("metadata") if isinstance(updated, dict) else None
        return str(meta.get("resourceVersion") if isinstance(meta, dict) else None)

    async def post_event(self, event: Event) -> None:
        involved = event.involved
        namespace = involved.namespace or self.event_namespace
        stamp = datetime.now(UTC)
        client = kubernetes.client
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{involved.name}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=involved.api_version,
                kind=involved.kind,
                name=involved.name,
                namespace=involved.namespace,
                uid=involved.uid or None,
            ),
            type=event.type,
            reason=event.reason,
            message=event.message[:1024],
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=f"{GROUP}/cluster-controller",
            reporting_instance=self.identity,
            first_timestamp=stamp,
            last_timestamp=stamp,
            count=1,
        )
        await asyncio.to_thread(self.core.create_namespaced_event, namespace, body)


# --- kopf: indexes and handlers ---------------------------------------------------------------


def _indexes(kwargs: Mapping[str, Any]) -> Indexes:
    return Indexes(
        services=kwargs["lb_services"],
        by_ip=kwargs["lb_by_ip"],
        by_share=kwargs["lb_by_share"],
        pools=kwargs["lb_pools"],
        peers=kwargs["bgp_peers"],
        nodes=kwargs["bgp_nodes"],
        node_states=kwargs["bgp_node_states"],
    )


def _service_view(body: Mapping[str, Any]) -> LBService | None:
    """Services IPAM cares about: LoadBalancers, and any Service still holding addresses."""
    service = parse_lb_service(body)
    if service.type != "LoadBalancer" and not service.assigned:
        return None
    return service


def build_registry(
    ctl: ClusterController, login: Callable[[], kopf.ConnectionInfo]
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    log_in_with(registry, login)

    @kopf.on.startup(registry=registry)
    async def _startup(**_: Any) -> None:
        ctl.attach()

    @kopf.index(*SERVICES, id="lb_services", registry=registry)
    def lb_services(body: kopf.Body, **_: Any) -> dict[Key, LBService] | None:
        service = _service_view(body)
        return None if service is None else {service.key: service}

    @kopf.index(*SERVICES, id="lb_by_ip", registry=registry)
    def lb_by_ip(body: kopf.Body, **_: Any) -> dict[IPAddress, LBService] | None:
        service = _service_view(body)
        return None if service is None else dict.fromkeys(service.assigned, service)

    @kopf.index(*SERVICES, id="lb_by_share", registry=registry)
    def lb_by_share(body: kopf.Body, **_: Any) -> dict[str, LBService] | None:
        service = _service_view(body)
        if service is None or service.sharing_key is None:
            return None
        return {service.sharing_key: service}

    @kopf.index(GROUP, VERSION, "loadbalancerippools", id="lb_pools", registry=registry)
    def lb_pools(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
        return {name: copy.deepcopy(dict(body))}

    @kopf.index(GROUP, VERSION, "bgppeers", id="bgp_peers", registry=registry)
    def bgp_peers(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
        return {name: copy.deepcopy(dict(body))}

    @kopf.index(*NODES, id="bgp_nodes", registry=registry)
    def bgp_nodes(name: str, body: kopf.Body, **_: Any) -> dict[str, NodeLabels]:
        return {name: parse_node_labels(body)}

    @kopf.index(GROUP, VERSION, "bgpnodestates", id="bgp_node_states", registry=registry)
    def bgp_node_states(name: str, body: kopf.Body, **_: Any) -> dict[str, NodeSessions]:
        return {name: parse_node_state(body)}

    @kopf.on.event(*SERVICES, registry=registry)
    async def service_event(event: kopf.RawEvent, **kwargs: Any) -> None:
        key = (str(kwargs["namespace"]), str(kwargs["name"]))
        deleted = event["type"] == "DELETED"
        uid = str(kwargs.get("uid") or "")
        await ctl.service_event(_indexes(kwargs), key, uid=uid, deleted=deleted)

    @kopf.on.event(GROUP, VERSION, "loadbalancerippools", registry=registry)
    async def pool_event(**kwargs: Any) -> None:
        await ctl.pool_event(_indexes(kwargs))

    @kopf.on.event(*NODES, id="rollup", registry=registry)
    async def node_event(event: kopf.RawEvent, **kwargs: Any) -> None:
        labels = None if event["type"] == "DELETED" else parse_node_labels(kwargs["body"])
        await ctl.node_event(_indexes(kwargs), str(kwargs["name"]), labels)

    async def rollup_event(**kwargs: Any) -> None:
        await ctl.rollup_event(_indexes(kwargs))

    for args in ((GROUP, VERSION, "bgppeers"), (GROUP, VERSION, "bgpnodestates")):
        kopf.on.event(*args, id="rollup", registry=registry)(rollup_event)

    return registry


def kopf_settings(*, server_timeout: int | None = None) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # our Events are ours, not kopf's log lines
    if server_timeout is not None:
        settings.watching.server_timeout = server_timeout
    return settings


# --- running: leader election around kopf ---------------------------------------------------


class KopfThread:
    """kopf.operator in its own thread and event loop: its signal handling and its task
    clean-up stay out of the loop that holds the Lease. A heartbeat task on kopf's loop stamps
    `beat_at` every `beat_interval` (controller.cluster.probes reads it); `on_done` is called
    from the thread when kopf has ended."""

    def __init__(
        self,
        registry: kopf.OperatorRegistry,
        settings: kopf.OperatorSettings,
        *,
        name: str,
        on_done: Callable[[], None],
        beat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.registry, self.settings = registry, settings
        self.stop_flag = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.beat_at: float | None = None
        self.beat_interval = beat_interval
        self.on_done = on_done
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # reported by the caller  # noqa: BLE001
            self.error = err
        finally:
            self.on_done()

    async def _main(self) -> None:
        # Started before kopf: kopf leaves alone the tasks that existed when it started.
        heartbeat = asyncio.create_task(self._beat(), name="heartbeat")
        try:
            await kopf.operator(
                registry=self.registry,
                settings=self.settings,
                standalone=True,
                clusterwide=True,
                stop_flag=self.stop_flag,
                ready_flag=self.ready,
            )
        finally:
            heartbeat.cancel()

    async def _beat(self) -> None:
        while True:
            self.beat_at = time.monotonic()
            await asyncio.sleep(self.beat_interval)

    def start(self) -> None:
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def is_ready(self) -> bool:
        return self.ready.is_set()

    def stop(self, timeout: float) -> bool:
        """Ask kopf to stop and wait up to `timeout` s; False if its thread is still running
        (its loop is stuck)."""
        self.stop_flag.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()


@dataclass(frozen=True, kw_only=True)
class ClusterOptions:
    login: Callable[[], kopf.ConnectionInfo]
    lease: LeaseConfig | None  # None: no election, always active (tests of dual activity)
    metrics: ClusterMetrics | None = None
    health: ClusterHealth | None = None  # told who leads and which kopf runs (the probes)
    event_namespace: str = "default"
    server_timeout: int | None = None
    retry_delay: float = 5.0  # after a failed write
    kopf_stop_timeout: float = 20.0  # then kopf's loop is taken as stuck


async def run_cluster(
    api_client: kubernetes.client.ApiClient, options: ClusterOptions, stop: asyncio.Event
) -> int:
    """Stand by until elected, act while leader, stand by again if the Lease is lost; return
    0 once `stop` is set (the Lease released), 1 if kopf failed or could not be stopped (the
    Lease released too if it was ours, so the standby takes over at once)."""
    elector = None if options.lease is None else LeaseElector(api_client, options.lease)
    identity = COMPONENT if options.lease is None else options.lease.identity
    health = options.health
    if health is not None and elector is not None:
        health.electing(elector)
    writes = await asyncio.to_thread(
        KubeClusterWrites, api_client, identity=identity, event_namespace=options.event_namespace
    )
    loop = asyncio.get_running_loop()
    status = 0
    while not stop.is_set():
        if elector is not None and not await elector.acquire(stop):
            break
        controller = ClusterController(
            writes, leadership=elector, metrics=options.metrics, retry_delay=options.retry_delay
        )
        ended: asyncio.Future[None] = loop.create_future()

        def kopf_ended(ended: asyncio.Future[None] = ended) -> None:
            def settle() -> None:
                if not ended.done():
                    ended.set_result(None)

            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle)

        runner = KopfThread(
            build_registry(controller, options.login),
            kopf_settings(server_timeout=options.server_timeout),
            name=f"kopf-{identity}",
            on_done=kopf_ended,
        )
        if options.metrics is not None:
            options.metrics.set_leader(True)
        holder = asyncio.create_task(
            elector.hold(stop) if elector is not None else stop.wait(), name="lease-holder"
        )
        if elector is not None:
            elector.add_confirmed_listener(controller.leadership_confirmed)
        if health is not None:
            health.acting(runner)
        runner.start()
        # Done when kopf's thread ends on its own (a failure) or the term or process ends.
        waiting: set[asyncio.Future[Any]] = {holder, ended}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        kopf_failed = ended.done() and not holder.done()
        stopped = await asyncio.to_thread(runner.stop, options.kopf_stop_timeout)
        if elector is not None:
            elector.remove_confirmed_listener(controller.leadership_confirmed)
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
        if options.metrics is not None:
            options.metrics.set_leader(False)
        if not stopped:
            logger.error(
                "kopf did not stop within %s s (its event loop is stuck): exiting",
                options.kopf_stop_timeout,
            )
            status = 1
            break
        if health is not None:
            health.standing_by()
        if runner.error is not None or (kopf_failed and not stop.is_set()):
            logger.error("kopf stopped unexpectedly: %r", runner.error)
            status = 1
            break
        if not stop.is_set():
            logger.warning("lost leadership: standing by")
    if elector is not None:
        await elector.release()  # only if this replica holds it
    return status
