"""The cluster controller's runtime for one leadership term: LoadBalancer IPAM, pool status,
BGPPeer roll-up and Events, fed by the watch glue (controller.kube.cluster_watch) and writing
through `ClusterWrites`.

The decisions are pure (`controller.domain.ipam.assign`, `controller.domain.ipam.pool_status`,
`controller.domain.peer_status.peer_status`); this module decides when to make them and keeps
what the cluster does not show yet:
- the overlay: our own Service status writes until the watch shows them (`OverlayLedger`);
- pending Services (a request that could not be met, or a write that failed), retried by the
  next sweep: whenever an address is freed or a pool changes, and `retry_delay` after a failed
  write (kopf does not retry event handlers, and a quiet cluster sends no event);
- the status we last wrote (`_written`), so a status is written only when it changes;
- deferred writes: every write first asks `Leadership.is_leader()`, and Service addresses are
  fenced by a Lease renewal (`Leadership.confirm()`); a write skipped because leadership was not
  confirmed is logged and redone when the Lease is next renewed (`leadership_confirmed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller.cluster.coalescer import Coalescer
from controller.cluster.events import ServiceOutcomes, pool_events
from controller.cluster.ledger import Key, OverlayLedger
from controller.cluster.writes import ClusterWrites, Event, Leadership, StatusKind
from controller.domain.conditions import now_rfc3339
from controller.domain.ipam import IPAddress, LBService, Pool, assign, pool_status
from controller.domain.objects import InvalidObjectError, parse_load_balancer_ip_pool
from controller.domain.peer_status import NodeLabels, NodeSessions, peer_status

logger = logging.getLogger(__name__)


class AllocationMetrics(Protocol):
    """The part of controller.controller_metrics.ClusterMetrics the runtime updates."""

    def set_pools(self, usage: dict[str, tuple[int, int]]) -> None: ...

    def allocation_failed(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Indexes:
    """The watch's live indexes (key -> the values indexed under it). They change under us as
    events arrive: read them, never keep what they return across an await."""

    services: Mapping[Key, Collection[LBService]]
    by_ip: Mapping[IPAddress, Collection[LBService]]
    by_share: Mapping[str, Collection[LBService]]
    pools: Mapping[str, Collection[dict[str, Any]]]
    peers: Mapping[str, Collection[dict[str, Any]]]
    nodes: Mapping[str, Collection[NodeLabels]]
    node_states: Mapping[str, Collection[NodeSessions]]


def _one(store: Any) -> Any:
    for value in store:
        return value
    return None


class ClusterController:
    def __init__(
        self,
        writes: ClusterWrites,
        *,
        leadership: Leadership | None = None,
        metrics: AllocationMetrics | None = None,
        retry_delay: float = 5.0,
    ) -> None:
        self.writes = writes
        self.leadership = leadership  # None: always allowed to write (no election)
        self.metrics = metrics
        self.retry_delay = retry_delay
        self.idx: Indexes | None = None
        self._retry: asyncio.Task[None] | None = None
        self._alloc = asyncio.Lock()
        # Our status writes the indexes have not shown yet: key -> (resourceVersion the write
        # was based on, the Service as written). Dropped once the index moves past that rv.
        self._overlay: dict[Key, tuple[str, LBService]] = {}
        self._pending: set[Key] = set()  # Services whose request could not be met
        self._outcomes = ServiceOutcomes()
        self._pools_changed = True
        self._node_labels: dict[str, NodeLabels] = {}  # what the last roll-up kick saw
        self._written: dict[tuple[StatusKind, str], tuple[str, Mapping[str, Any]]] = {}
        self._sweeper = Coalescer(self._sweep)
        self._roller = Coalescer(self._rollup)
        # Writes skipped because leadership was not confirmed at that moment (a Lease renewal
        # late under load, or not yet made): redone when it is (`leadership_confirmed`).
        self._deferred = False
        self._unposted: list[Event] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # where the handlers run
        self._tasks: set[asyncio.Task[None]] = set()

    # --- what the watch glue calls ---------------------------------------------------------

    def attach(self) -> None:
        """Called on the event loop the handlers run on, before the first event."""
        self._loop = asyncio.get_running_loop()

    async def service_event(self, idx: Indexes, key: Key, *, uid: str, deleted: bool) -> None:
        self.idx = idx
        if deleted:
            self._pending.discard(key)
            self._outcomes.forget(uid, key)
            await self._sweeper.kick()  # its addresses are free: retry the waiting ones
            return
        if key in idx.services or key in self._overlay:
            await self.reconcile_service(key)

    async def pool_event(self, idx: Indexes) -> None:
        self.idx = idx
        self._pools_changed = True
        await self._sweeper.kick()

    async def node_event(self, idx: Indexes, name: str, labels: NodeLabels | None) -> None:
        """A Node changed (`labels` None: deleted). Nodes change often (status, heartbeats);
        only their labels matter for BGPPeer selection."""
        if self._node_labels.get(name) == labels:
            return
        if labels is None:
            self._node_labels.pop(name, None)
        else:
            self._node_labels[name] = labels
        await self.rollup_event(idx)

    async def rollup_event(self, idx: Indexes) -> None:
        """A BGPPeer or a BGPNodeState changed."""
        self.idx = idx
        await self._roller.kick()

    # --- leadership -------------------------------------------------------------------------

    def _may_write(self) -> bool:
        return self.leadership is None or self.leadership.is_leader()

    def _defer(self, what: str) -> None:
        """A write skipped because our leadership is not confirmed right now: say so, and redo
        it when it is (the Lease holder renews, or the term ends and the next one starts over)."""
        logger.info("leadership not confirmed (Lease renewal overdue): %s deferred", what)
        self._deferred = True

    def leadership_confirmed(self) -> None:
        """The Lease was renewed after a lapse (called from the renewing thread): retry every
        write deferred meanwhile, on the handlers' loop."""
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
        for work in (self._post_events(unposted), self._sweeper.kick(), self._roller.kick()):
            task = asyncio.get_running_loop().create_task(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- allocation -------------------------------------------------------------------------

    def _ledger(self) -> OverlayLedger:
        assert self.idx is not None
        for key, (based_on, _) in list(self._overlay.items()):
            current = _one(self.idx.services.get(key, ()))
            if current is None or current.resource_version != based_on:
                del self._overlay[key]  # the index has caught up (or the Service is gone)
        overlay = {k: s for k, (_, s) in self._overlay.items()}
        return OverlayLedger(self.idx.by_ip, self.idx.by_share, overlay)

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
                    written_or_none = await self._write_service(service, result.texts)
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
        for event in self._outcomes.events(service, written, result, pools):
            if event.reason == "AllocationFailed" and self.metrics and result.failure:
                self.metrics.allocation_failed(result.failure.reason.value)
            await self._post_event(event)
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

    async def _write_service(
        self, service: LBService, addresses: Sequence[str]
    ) -> LBService | None:
        what = "Service {}/{}'s addresses".format(*service.key)
        # Fenced: renew the Lease right before an address changes hands, so a deposed leader
        # that wakes up late finds out here instead of writing from a stale view.
        if not self._may_write() or (
            self.leadership is not None and not await asyncio.to_thread(self.leadership.confirm)
        ):
            self._defer(what)
            return None
        return await self.writes.write_service_addresses(service, addresses)

    async def _post_events(self, events: Sequence[Event]) -> None:
        for event in events:
            await self._post_event(event)

    async def _post_event(self, event: Event) -> None:
        if not self._may_write():
            self._defer(f"Event {event.reason} on {event.involved.kind} {event.involved.name}")
            self._unposted.append(event)
            return
        try:
            await self.writes.post_event(event)
        except Exception as err:  # an Event is best effort  # noqa: BLE001
            logger.warning("posting event %s on %s failed: %s", event.reason, event.involved, err)

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
            current = self._fresh("LoadBalancerIPPool", raw)
            status = pool_status(current, pools, held, now_rfc3339())
            if status is None:
                continue
            if await self._write_status("LoadBalancerIPPool", current, status):
                for event in pool_events(current, status):
                    await self._post_event(event)

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
            current = self._fresh("BGPPeer", raw)
            status = peer_status(current, nodes, states, now_rfc3339())
            if status is not None:
                await self._write_status("BGPPeer", current, status)

    def _fresh(self, kind: StatusKind, raw: dict[str, Any]) -> dict[str, Any]:
        """The object with the status we last wrote if the index has not shown it yet."""
        written = self._written.get((kind, raw["metadata"]["name"]))
        if written is not None and raw["metadata"].get("resourceVersion") == written[0]:
            return {**raw, "status": written[1]}
        return raw

    async def _write_status(
        self, kind: StatusKind, raw: dict[str, Any], status: dict[str, Any]
    ) -> bool:
        """Write `status`; True when it was written."""
        name = raw["metadata"]["name"]
        if not self._may_write():
            self._defer(f"{kind} {name}'s status")
            return False
        try:
            version = await self.writes.write_status(kind, name, status)
        except Exception as err:  # noqa: BLE001
            logger.warning("writing %s %s's status failed: %s", kind, name, err)
            self._retry_later()
            return False
        if version is None:
            return False  # gone, or changed: its event brings us back
        self._written[(kind, name)] = (version, status)
        return True
