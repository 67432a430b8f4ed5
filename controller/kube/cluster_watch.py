"""The cluster controller's kopf glue: LoadBalancer IPAM, pool status, BGPPeer roll-up, Events.

Thin on purpose: the decisions are `controller.domain.ipam.assign`,
`controller.domain.ipam.pool_status` and `controller.domain.peer_status.peer_status`, all pure.
This module feeds them from kopf indexes and writes their results. kopf guarantees that no
handler runs before every index is fully listed, so a (re)started controller knows every address
Services hold before it hands one out.

Writes:
- Service `status.loadBalancer.ingress` by merge patch carrying the resourceVersion the
  decision was made on (409 = a newer event is on its way; the decision is made again then).
- LoadBalancerIPPool and BGPPeer status, only when it changes.
- core/v1 Events on Services (IPAllocated, IPReleased, AllocationFailed, AddressOutsidePool)
  and pools (PoolExhausted, AddressesOutsidePool), once per distinct outcome.

One `ClusterController` serves one leadership term: every write first asks `may_write()`; a
write skipped because leadership was not confirmed at that moment is logged and redone when the
Lease is next renewed (`leadership_confirmed`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import kopf
import kubernetes

from controller.controller_metrics import ClusterMetrics
from controller.domain.conditions import now_rfc3339
from controller.domain.ipam import (
    Assignment,
    IPAddress,
    LBService,
    Pool,
    assign,
    parse_lb_service,
    pool_status,
)
from controller.domain.objects import GROUP, InvalidObjectError, parse_load_balancer_ip_pool
from controller.domain.peer_status import (
    NodeLabels,
    NodeSessions,
    parse_node_labels,
    parse_node_state,
    peer_status,
)
from controller.kube.leader import LeaseConfig, LeaseElector
from controller.kube.user_agent import CLUSTER_CONTROLLER, user_agent

logger = logging.getLogger(__name__)

VERSION: Final = "v1alpha1"
COMPONENT: Final = "kubgp-cluster-controller"
MERGE_PATCH: Final = "application/merge-patch+json"
# Core resources by group and version too: a bare "services" is ambiguous next to Knative.
SERVICES: Final = ("", "v1", "services")
NODES: Final = ("", "v1", "nodes")

Key = tuple[str, str]


class Coalescer:
    """Run `work` after a kick; kicks that arrive while it runs make it run once more."""

    def __init__(self, work: Callable[[], Awaitable[None]]) -> None:
        self.work = work
        self._running = False
        self._again = False

    async def kick(self) -> None:
        if self._running:
            self._again = True
            return
        self._running = True
        try:
            self._again = True
            while self._again:
                self._again = False
                await self.work()
        finally:
            self._running = False


@dataclass(frozen=True, slots=True)
class Indexes:
    """kopf's live indexes (they change under us as events arrive; read, never keep)."""

    services: kopf.Index[Key, LBService]
    by_ip: kopf.Index[IPAddress, LBService]
    by_share: kopf.Index[str, LBService]
    pools: kopf.Index[str, dict[str, Any]]
    peers: kopf.Index[str, dict[str, Any]]
    nodes: kopf.Index[str, NodeLabels]
    node_states: kopf.Index[str, NodeSessions]

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Indexes:
        return cls(
            services=kwargs["lb_services"],
            by_ip=kwargs["lb_by_ip"],
            by_share=kwargs["lb_by_share"],
            pools=kwargs["lb_pools"],
            peers=kwargs["bgp_peers"],
            nodes=kwargs["bgp_nodes"],
            node_states=kwargs["bgp_node_states"],
        )


def _one(store: Any) -> Any:
    for value in store:
        return value
    return None


class _Ledger:
    """controller.domain.ipam.Ledger over the indexes plus our own writes not yet seen in them."""

    def __init__(self, idx: Indexes, overlay: Mapping[Key, LBService]) -> None:
        self.idx = idx
        self.overlay = overlay

    def holders(self, address: IPAddress) -> Sequence[LBService]:
        out = [s for s in self.idx.by_ip.get(address, ()) if s.key not in self.overlay]
        out.extend(s for s in self.overlay.values() if address in s.assigned)
        return out

    def sharing(self, key: str) -> Sequence[LBService]:
        out = [s for s in self.idx.by_share.get(key, ()) if s.key not in self.overlay]
        out.extend(s for s in self.overlay.values() if s.sharing_key == key)
        return out

    def held(self) -> dict[IPAddress, list[LBService]]:
        out: dict[IPAddress, list[LBService]] = {}
        for address, store in self.idx.by_ip.items():
            holders = [s for s in store if s.key not in self.overlay]
            if holders:
                out[address] = holders
        for service in self.overlay.values():
            for address in service.assigned:
                out.setdefault(address, []).append(service)
        return out


@dataclass(frozen=True, slots=True)
class ClusterAPIs:
    """The API objects the controller writes through. Built once per process, before the
    election: the first CoreV1Api imports ~1 s of generated code, which inside a leadership
    term would run on the loop that renews the Lease."""

    core: kubernetes.client.CoreV1Api
    custom: kubernetes.client.CustomObjectsApi

    @classmethod
    def build(cls, api_client: kubernetes.client.ApiClient) -> ClusterAPIs:
        return cls(
            kubernetes.client.CoreV1Api(api_client),
            kubernetes.client.CustomObjectsApi(api_client),
        )


class ClusterController:
    def __init__(
        self,
        apis: ClusterAPIs,
        *,
        may_write: Callable[[], bool] = lambda: True,
        fence: Callable[[], bool] | None = None,
        metrics: ClusterMetrics | None = None,
        identity: str = COMPONENT,
        event_namespace: str = "default",
        retry_delay: float = 5.0,
    ) -> None:
        self.core, self.custom = apis.core, apis.custom
        self.retry_delay = retry_delay
        self._retry: asyncio.Task[None] | None = None
        self.may_write = may_write
        self.fence = fence
        self.metrics = metrics
        self.identity = identity
        self.event_namespace = event_namespace
        self.idx: Indexes | None = None
        self._alloc = asyncio.Lock()
        # Our status writes the indexes have not shown yet: key -> (resourceVersion the write
        # was based on, the Service as written). Dropped once the index moves past that rv.
        self._overlay: dict[Key, tuple[str, LBService]] = {}
        self._pending: set[Key] = set()  # Services whose request could not be met
        self._reported: dict[str, tuple[str, ...]] = {}  # uid -> last outcome posted
        self._pools_changed = True
        self._node_labels: dict[str, NodeLabels] = {}  # what the last roll-up kick saw
        self._written: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._sweeper = Coalescer(self._sweep)
        self._roller = Coalescer(self._rollup)
        # Writes skipped because leadership was not confirmed at that moment (a Lease renewal
        # late under load, or not yet made): redone when it is (`leadership_confirmed`).
        self._deferred = False
        self._loop: asyncio.AbstractEventLoop | None = None  # kopf's, where handlers run
        self._tasks: set[asyncio.Task[None]] = set()
        self._unposted: list[tuple[dict[str, str], str, str, str]] = []  # deferred Events

    # --- kopf registry ------------------------------------------------------------------

    def registry(self, login: Callable[[], kopf.ConnectionInfo]) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()
        ctl = self

        @kopf.on.login(registry=registry)
        def _login(**_: Any) -> kopf.ConnectionInfo:
            return login()

        @kopf.on.startup(registry=registry)
        async def _startup(**_: Any) -> None:
            ctl._loop = asyncio.get_running_loop()

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
            ctl.idx = Indexes.from_kwargs(kwargs)
            namespace, name = str(kwargs["namespace"]), str(kwargs["name"])
            if event["type"] == "DELETED":
                ctl._pending.discard((namespace, name))
                ctl._reported.pop(str(kwargs.get("uid") or f"{namespace}/{name}"), None)
                await ctl._sweeper.kick()  # its addresses are free: retry the waiting ones
                return
            if (namespace, name) in ctl.idx.services or (namespace, name) in ctl._overlay:
                await ctl.reconcile_service((namespace, name))

        @kopf.on.event(GROUP, VERSION, "loadbalancerippools", registry=registry)
        async def pool_event(**kwargs: Any) -> None:
            ctl.idx = Indexes.from_kwargs(kwargs)
            ctl._pools_changed = True
            await ctl._sweeper.kick()

        async def rollup_event(**kwargs: Any) -> None:
            ctl.idx = Indexes.from_kwargs(kwargs)
            await ctl._roller.kick()

        @kopf.on.event(*NODES, id="rollup", registry=registry)
        async def node_event(event: kopf.RawEvent, **kwargs: Any) -> None:
            # Nodes change often (status, heartbeats); only their labels matter for selection.
            name = str(kwargs["name"])
            labels = None if event["type"] == "DELETED" else parse_node_labels(kwargs["body"])
            if ctl._node_labels.get(name) == labels:
                return
            if labels is None:
                ctl._node_labels.pop(name, None)
            else:
                ctl._node_labels[name] = labels
            await rollup_event(**kwargs)

        for args in ((GROUP, VERSION, "bgppeers"), (GROUP, VERSION, "bgpnodestates")):
            kopf.on.event(*args, id="rollup", registry=registry)(rollup_event)

        return registry

    # --- leadership ---------------------------------------------------------------------------

    def _defer(self, what: str) -> None:
        """A write skipped because our leadership is not confirmed right now: say so, and redo
        it when it is (the Lease holder renews, or the term ends and the next one starts over)."""
        logger.info("leadership not confirmed (Lease renewal overdue): %s deferred", what)
        self._deferred = True

    def leadership_confirmed(self) -> None:
        """The Lease was renewed after a lapse (called from the renewing thread): retry every
        write deferred meanwhile, on kopf's loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._resume_deferred)

    def _resume_deferred(self) -> None:
        if not self._deferred:
            return
        self._deferred = False
        logger.info("leadership confirmed: retrying the deferred writes")
        self._pools_changed = True  # every Service again, not only the pending ones: cheap
        unposted, self._unposted = self._unposted, []
        for work in (
            self._post_events(unposted),
            self._sweeper.kick(),
            self._roller.kick(),
        ):
            task = asyncio.get_running_loop().create_task(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- allocation -------------------------------------------------------------------------

    def _ledger(self) -> _Ledger:
        assert self.idx is not None
        for key, (based_on, _) in list(self._overlay.items()):
            current = _one(self.idx.services.get(key, ()))
            if current is None or current.resource_version != based_on:
                del self._overlay[key]  # the index has caught up (or the Service is gone)
        return _Ledger(self.idx, {k: s for k, (_, s) in self._overlay.items()})

    def _pools(self) -> list[Pool]:
        assert self.idx is not None
        pools = []
        for store in self.idx.pools.values():
            raw = _one(store)
            try:
                pools.append(Pool.from_view(parse_load_balancer_ip_pool(raw)))
            except InvalidObjectError:
                continue  # reported on the pool's status (Valid=False)
        return pools

    async def reconcile_service(self, key: Key) -> None:
        if self.idx is None:
            return
        async with self._alloc:
            ledger = self._ledger()
            service = ledger.overlay.get(key) or _one(self.idx.services.get(key, ()))
            if service is None:
                return
            pools = self._pools()
            result = assign(service, pools, ledger)
            if result is None:
                return
            written = service
            if result.addresses != service.assigned:
                try:
                    written_or_none = await self._write_service(service, result)
                except Exception as err:  # the API server failed us: try again later  # noqa: BLE001
                    logger.warning("writing %s/%s's status failed: %s", *key, err)
                    self._pending.add(key)
                    self._retry_later()
                    return
                if written_or_none is None:
                    self._pending.add(key)  # retried by the next sweep (or event)
                    return
                written = written_or_none
                self._overlay[key] = (service.resource_version, written)
            if result.failure is not None:
                self._pending.add(key)
            else:
                self._pending.discard(key)
        await self._report(service, written, result, pools)
        if result.addresses != service.assigned:
            await self._sweeper.kick()

    def _retry_later(self) -> None:
        """One delayed sweep (pending Services, pool and peer status) after a failed write: event
        handlers are not retried by kopf, and a quiet cluster sends no new event."""
        if self._retry is not None and not self._retry.done():
            return

        async def later() -> None:
            await asyncio.sleep(self.retry_delay)
            self._retry = None  # a failure during this retry schedules the next one
            await self._sweeper.kick()
            await self._roller.kick()

        self._retry = asyncio.get_running_loop().create_task(later(), name="ipam-retry")

    async def _write_service(self, service: LBService, result: Assignment) -> LBService | None:
        what = "Service {}/{}'s addresses".format(*service.key)
        # Fenced: renew the Lease right before an address changes hands, so a deposed leader
        # that wakes up late finds out here instead of writing from a stale view.
        if not self.may_write() or (
            self.fence is not None and not await asyncio.to_thread(self.fence)
        ):
            self._defer(what)
            return None
        ingress = [{"ip": ip} for ip in result.texts] or None
        body = {
            "metadata": {"resourceVersion": service.resource_version},
            "status": {"loadBalancer": {"ingress": ingress}},
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
                return None  # gone, or changed since: its next event brings us back here
            raise
        return parse_lb_service(self.core.api_client.sanitize_for_serialization(raw))

    async def _report(
        self, before: LBService, after: LBService, result: Assignment, pools: Sequence[Pool]
    ) -> None:
        """Events for a Service: one per distinct outcome, not one per reconcile."""
        events: list[tuple[str, str, str]] = []
        if result.failure is not None:
            events.append(("Warning", "AllocationFailed", str(result.failure)))
        events.extend(("Warning", "AddressOutsidePool", w) for w in result.warnings)
        if after.assigned != before.assigned and after.assigned:
            by_name = sorted(pools, key=lambda p: p.name)
            where = ", ".join(
                f"{a} (pool {next((p.name for p in by_name if p.contains(a)), 'none')})"
                for a in after.assigned
            )
            events.append(("Normal", "IPAllocated", f"assigned {where}"))
        elif before.assigned and not after.assigned:
            gone = ", ".join(str(a) for a in before.assigned)
            events.append(("Normal", "IPReleased", f"released {gone}"))
        signature = tuple(f"{r}: {m}" for _, r, m in events if r != "IPReleased")
        key = before.uid or "/".join(before.key)
        if self._reported.get(key) == signature and after.assigned == before.assigned:
            return
        self._reported[key] = signature
        for kind, reason, message in events:
            if reason == "AllocationFailed" and self.metrics is not None and result.failure:
                self.metrics.allocation_failed(result.failure.reason.value)
            await self._post_event(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "namespace": before.ref.namespace,
                    "name": before.ref.name,
                    "uid": before.uid,
                },
                kind,
                reason,
                message,
            )

    async def _post_events(self, events: Sequence[tuple[dict[str, str], str, str, str]]) -> None:
        for involved, kind, reason, message in events:
            await self._post_event(involved, kind, reason, message)

    async def _post_event(
        self, involved: Mapping[str, str], kind: str, reason: str, message: str
    ) -> None:
        if not self.may_write():
            self._defer(f"Event {reason} on {involved.get('kind')} {involved.get('name')}")
            self._unposted.append((dict(involved), kind, reason, message))
            return
        namespace = involved.get("namespace") or self.event_namespace
        stamp = datetime.now(UTC)
        client = kubernetes.client
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{involved['name']}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=involved.get("apiVersion"),
                kind=involved.get("kind"),
                name=involved.get("name"),
                namespace=involved.get("namespace"),
                uid=involved.get("uid") or None,
            ),
            type=kind,
            reason=reason,
            message=message[:1024],
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=f"{GROUP}/cluster-controller",
            reporting_instance=self.identity,
            first_timestamp=stamp,
            last_timestamp=stamp,
            count=1,
        )
        try:
            await asyncio.to_thread(self.core.create_namespaced_event, namespace, body)
        except Exception as err:  # an Event is best effort  # noqa: BLE001
            logger.warning("posting event %s on %s failed: %s", reason, involved, err)

    # --- sweeps: retry waiting Services, pool status ------------------------------------------

    async def _sweep(self) -> None:
        if self.idx is None:
            return
        if self._pools_changed:
            self._pools_changed = False
            keys = sorted(set(self.idx.services) | self._pending)
        else:
            keys = sorted(self._pending)
        for key in keys:
            await self.reconcile_service(key)
        await self._write_pool_statuses()

    async def _write_pool_statuses(self) -> None:
        assert self.idx is not None
        async with self._alloc:
            pools = self._pools()
            held = self._ledger().held()
            raws = [_one(store) for store in self.idx.pools.values()]
        if self.metrics is not None:
            self.metrics.set_pools(
                {p.name: (p.total(), sum(1 for a in held if p.contains(a))) for p in pools}
            )
        for raw in raws:
            if raw is None:
                continue
            current = self._fresh(("pool", raw["metadata"]["name"]), raw)
            status = pool_status(current, pools, held, now_rfc3339())
            if status is not None:
                await self._write_status("loadbalancerippools", current, status)

    # --- BGPPeer roll-up --------------------------------------------------------------------

    async def _rollup(self) -> None:
        if self.idx is None:
            return
        nodes = [n for store in self.idx.nodes.values() for n in store]
        states = {name: _one(store) for name, store in self.idx.node_states.items()}
        for store in list(self.idx.peers.values()):
            raw = _one(store)
            if raw is None:
                continue
            current = self._fresh(("peer", raw["metadata"]["name"]), raw)
            status = peer_status(current, nodes, states, now_rfc3339())
            if status is not None:
                await self._write_status("bgppeers", current, status)

    def _fresh(self, key: tuple[str, str], raw: dict[str, Any]) -> dict[str, Any]:
        """The object with the status we last wrote if the index has not shown it yet."""
        written = self._written.get(key)
        if written is not None and raw["metadata"].get("resourceVersion") == written[0]:
            return {**raw, "status": written[1]}
        return raw

    async def _write_status(self, plural: str, raw: dict[str, Any], status: dict[str, Any]) -> None:
        name = raw["metadata"]["name"]
        if not self.may_write():
            self._defer(f"{plural} {name}'s status")
            return
        body = {"status": status}
        try:
            updated = await asyncio.to_thread(
                self.custom.patch_cluster_custom_object_status,
                GROUP,
                VERSION,
                plural,
                name,
                body,
            )
        except Exception as err:  # noqa: BLE001
            status_code = getattr(err, "status", None)
            if status_code not in (404, 409):  # gone, or changed: its event brings us back
                logger.warning("writing %s %s's status failed: %s", plural, name, err)
                self._retry_later()
            return
        kind = "pool" if plural == "loadbalancerippools" else "peer"
        meta = updated.get("metadata") if isinstance(updated, dict) else None
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        self._written[(kind, name)] = (str(rv), status)
        if kind == "pool":
            await self._pool_events(raw, status)

    async def _pool_events(self, raw: dict[str, Any], status: dict[str, Any]) -> None:
        before = {c["type"]: c for c in (raw.get("status") or {}).get("conditions") or ()}
        for condition in status.get("conditions") or ():
            kind = condition["type"]
            if (
                kind in ("Exhausted", "AddressesOutsidePool")
                and condition["status"] == "True"
                and before.get(kind, {}).get("status") != "True"
            ):
                reason = "PoolExhausted" if kind == "Exhausted" else kind
                await self._post_event(
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "LoadBalancerIPPool",
                        "name": raw["metadata"]["name"],
                        "uid": str(raw["metadata"].get("uid", "")),
                    },
                    "Warning",
                    reason,
                    condition["message"],
                )


def _service_view(body: Mapping[str, Any]) -> LBService | None:
    """Services IPAM cares about: LoadBalancers, and any Service still holding addresses."""
    service = parse_lb_service(body)
    if service.type != "LoadBalancer" and not service.assigned:
        return None
    return service


def _items(index: kopf.Index[Any, Any]) -> Iterator[Any]:
    for store in index.values():
        yield from store


# --- running: leader election around kopf ---------------------------------------------------


def kopf_settings(*, server_timeout: int | None = None) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # our Events are ours, not kopf's log lines
    if server_timeout is not None:
        settings.watching.server_timeout = server_timeout
    return settings


class KopfThread:
    """kopf.operator in its own thread and event loop: its signal handling and its task
    clean-up stay out of the loop that holds the Lease."""

    def __init__(
        self, registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings, *, name: str
    ) -> None:
        self.registry, self.settings = registry, settings
        self.stop_flag = threading.Event()
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    settings=self.settings,
                    standalone=True,
                    clusterwide=True,
                    stop_flag=self.stop_flag,
                    ready_flag=self.ready,
                )
            )
        except BaseException as err:  # reported by the caller  # noqa: BLE001
            self.error = err
        finally:
            self.done.set()

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_flag.set()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError("kopf did not stop in time")


@dataclass(frozen=True, kw_only=True)
class ClusterOptions:
    login: Callable[[], kopf.ConnectionInfo]
    lease: LeaseConfig | None  # None: no election, always active (tests of dual activity)
    metrics: ClusterMetrics | None = None
    event_namespace: str = "default"
    server_timeout: int | None = None
    retry_delay: float = 5.0  # after a failed write


async def run_cluster(
    api_client: kubernetes.client.ApiClient, options: ClusterOptions, stop: asyncio.Event
) -> int:
    """Stand by until elected, act while leader, stand by again if the Lease is lost; return
    0 once `stop` is set (the Lease released), 1 if kopf itself failed. `api_client` is
    marked as the cluster controller's (its User-Agent, controller.kube.user_agent)."""
    api_client.user_agent = user_agent(CLUSTER_CONTROLLER)
    elector = None if options.lease is None else LeaseElector(api_client, options.lease)
    identity = COMPONENT if options.lease is None else options.lease.identity
    apis = await asyncio.to_thread(ClusterAPIs.build, api_client)
    status = 0
    while not stop.is_set():
        if elector is not None and not await elector.acquire(stop):
            break
        controller = ClusterController(
            apis,
            may_write=(lambda: True) if elector is None else elector.is_leader,
            fence=None if elector is None else elector.confirm,
            metrics=options.metrics,
            identity=identity,
            event_namespace=options.event_namespace,
            retry_delay=options.retry_delay,
        )
        runner = KopfThread(
            controller.registry(options.login),
            kopf_settings(server_timeout=options.server_timeout),
            name=f"kopf-{identity}",
        )
        if options.metrics is not None:
            options.metrics.set_leader(True)
        holder = asyncio.create_task(
            elector.hold(stop) if elector is not None else stop.wait(), name="lease-holder"
        )
        if elector is not None:
            elector.add_confirmed_listener(controller.leadership_confirmed)
        runner.start()
        # Returns once kopf's thread ends (on its own: a failure; or after runner.stop()).
        ended = asyncio.create_task(asyncio.to_thread(runner.done.wait), name="kopf-ended")
        await asyncio.wait({holder, ended}, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.to_thread(runner.stop)
        if elector is not None:
            elector.remove_confirmed_listener(controller.leadership_confirmed)
        kopf_failed = ended.done() and not holder.done()
        holder.cancel()
        await asyncio.gather(holder, ended, return_exceptions=True)
        if options.metrics is not None:
            options.metrics.set_leader(False)
        if runner.error is not None or (kopf_failed and not stop.is_set()):
            logger.error("kopf stopped unexpectedly: %r", runner.error)
            status = 1
            break
        if not stop.is_set():
            logger.warning("lost leadership: standing by")
    if elector is not None:
        await elector.release()
    return status


def api_client() -> kubernetes.client.ApiClient:
    """In-cluster service account, else $KUBECONFIG / ~/.kube/config."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    return kubernetes.client.ApiClient(configuration)


def login_from(api: kubernetes.client.ApiClient) -> Callable[[], kopf.ConnectionInfo]:
    """kopf's credentials from the same configuration the official client uses."""
    config = api.configuration

    def login() -> kopf.ConnectionInfo:
        # Through the refresh hook: in-cluster tokens rotate, and kopf logs in again on a 401.
        token = config.get_api_key_with_prefix("BearerToken", alias="authorization")
        scheme, _, value = (token or "").partition(" ")
        return kopf.ConnectionInfo(
            server=config.host,
            ca_path=config.ssl_ca_cert,
            insecure=not config.verify_ssl,
            scheme=(scheme or None) if value else None,
            token=value or token or None,
            certificate_path=config.cert_file,
            private_key_path=config.key_file,
        )

    return login


def main(options: ClusterOptions, api: kubernetes.client.ApiClient) -> int:
    """The process's main loop: SIGTERM/SIGINT stop it (the Lease is released on the way)."""

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run_cluster(api, options, stop)

    try:
        return asyncio.run(run())
    finally:
        api.close()  # type: ignore[no-untyped-call]
