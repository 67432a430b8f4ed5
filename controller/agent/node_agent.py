"""The node agent without Kubernetes: it is fed object changes (by controller.kube.node_watch,
or by a test), keeps the cluster snapshot, re-plans after a burst of changes and hands the
plan to the push loop; the status reporter writes what the speaker runs back.

    agent = NodeAgent(node_name="n1", push=PushLoop(path, ...), reporter=..., metrics=...)
    agent.upsert(obj); agent.delete(obj)  # per watch event; never raise, never block
    agent.listed()                      # once what was fed is the whole cluster
    agent.resync(every_object)          # or: here is the whole cluster
    await agent.run()                   # the planning loop, the push loop and the reporter

Objects are fed as raw mappings or already parsed (`controller.domain.snapshot.parse`: a view,
or the reason it has none); the agent keeps only the parsed views, never the raw bodies, and a
view fed again (the same object, or an equal one) is no change at all.

Coalescing: a change is planned once no other change came for `quiet` seconds, and at the
latest `max_delay` seconds after the first change of the burst. Every feed method is cheap
(a dict assignment), so kopf's handlers stay trivially correct.

Secrets are not watched (the node agent may read only the Secrets BGPPeers point at, by name,
in their namespaces): a `SecretSource` GETs each referenced Secret before the plan that first
needs it, and again every `secret_refresh` seconds for rotations. A Secret that does not exist
is planned as missing (no session); one the agent is not allowed to read (`SecretUnreadable`:
401/403, the chart's RBAC does not list it) likewise, for the peers needing it only, with the
reason saying so and a Warning Event on each such BGPPeer; one that cannot be read for any
other reason (5xx, a timeout) holds the plan back until it can, so an agent restart never drops
a peer for want of its password over an API hiccup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from controller.agent.health import LiveReason, readiness
from controller.agent.heap import collector_paused, settle
from controller.agent.node_status import (
    EventType,
    NodeStatusReporter,
    SessionEvent,
    SessionReason,
)
from controller.agent.push import PushLoop
from controller.controller_metrics import AgentMetrics
from controller.domain.planner import DEFAULT_ASN, NodePlanner
from controller.domain.reasons import ObjectRef, Reason
from controller.domain.snapshot import Parsed, Snapshot, parse
from controller.health_endpoint import Health
from speaker.api.schema import DesiredState, Fib

log = logging.getLogger("kubgp.agent")

DEFAULT_QUIET: Final = 0.05
DEFAULT_MAX_DELAY: Final = 0.5
DEFAULT_SECRET_REFRESH: Final = 60.0
SECRET_RETRY_MAX: Final = 5.0

Raw = Mapping[str, Any]
SecretKey = tuple[str, str]  # namespace, name
Fed = Raw | Parsed  # what the feed methods take: a raw object, or its view (or reason)


class SecretUnreadable(Exception):
    """The API refused to give the agent this Secret (401, 403): it will not change by asking
    again until someone changes the RBAC, so the peers needing it are planned without it."""


class SecretSource(Protocol):
    async def get_secret(self, namespace: str, name: str) -> Raw | None:
        """The Secret, or None when it does not exist. Raises `SecretUnreadable` when the
        agent may not read it, anything else when it cannot tell (retried)."""
        ...


def unreadable_detail(namespace: str, name: str) -> str:
    return (
        f"Secret {namespace}/{name} is not readable by the node agent: list it in rbac.peerSecrets"
    )


_UNREADABLE: Final = object()  # in the Secret cache: refused, not missing


def referenced_secrets(snapshot: Snapshot) -> set[SecretKey]:
    return {
        (p.password_secret_ref.namespace, p.password_secret_ref.name)
        for p in snapshot.peers
        if p.password_secret_ref is not None
    }


def object_ref(raw: Raw) -> ObjectRef:
    meta = raw.get("metadata") or {}
    return ObjectRef(str(raw.get("kind", "")), str(meta.get("namespace") or ""),
                     str(meta.get("name", "")))  # fmt: skip


def _parsed(obj: Fed) -> Parsed:
    return parse(obj) if isinstance(obj, Mapping) else obj


def _current(snapshot: Snapshot, ref: ObjectRef) -> Parsed | None:
    """What the snapshot holds for `ref`: its view, the reason it has none, or None."""
    invalid = snapshot.invalid.get(ref)
    if invalid is not None:
        return invalid
    key = (ref.namespace, ref.name)
    view: Parsed | None
    match ref.kind:
        case "Service":
            view = snapshot.services.get(key)
        case "EndpointSlice":
            view = snapshot.endpoint_slices.get(key)
        case "Node":
            view = snapshot.nodes.get(ref.name)
        case "Secret":
            view = snapshot.secrets.get(key)
        case "BGPPeer":
            view = next((p for p in snapshot.peers if p.name == ref.name), None)
        case "BGPAdvertisement":
            view = next((a for a in snapshot.advertisements if a.name == ref.name), None)
        case "BGPNodePeering":
            view = next((p for p in snapshot.node_peerings if p.name == ref.name), None)
        case _:
            view = next((p for p in snapshot.pools if p.ref.name == ref.name), None)
    return view


def coalesce_deadline(first: float, last: float, *, quiet: float, max_delay: float) -> float:
    """When a burst of changes that began at `first` and last grew at `last` is planned."""
    return min(last + quiet, first + max_delay)


class NodeAgent:
    def __init__(
        self,
        *,
        node_name: str,
        push: PushLoop,
        metrics: AgentMetrics,
        reporter: NodeStatusReporter | None = None,
        default_asn: int = DEFAULT_ASN,
        quiet: float = DEFAULT_QUIET,
        max_delay: float = DEFAULT_MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
        freeze_after_sync: bool = False,
        secrets: SecretSource | None = None,
        secret_refresh: float = DEFAULT_SECRET_REFRESH,
        fib: Fib | None = None,
        all_nodes: bool = False,
        always_compare_med: bool = False,
    ) -> None:
        """`freeze_after_sync`: `gc.freeze()` after the first plan, so the long-lived snapshot
        stays out of the collector's full scans (docs/planner.md); for the agent process.
        `all_nodes`: it is fed every Node, not only its own, and so plans sessions to other
        nodes (BGPNodePeering, docs/in-cluster-routing.md)."""
        self.node_name = node_name
        self.all_nodes = all_nodes
        self._freeze = freeze_after_sync
        self.push = push
        self.reporter = reporter
        self._metrics = metrics
        self._planner = NodePlanner(
            node_name,
            default_asn=default_asn,
            fib=fib,
            all_nodes=all_nodes,
            always_compare_med=always_compare_med,
        )
        self._quiet = quiet
        self._max_delay = max_delay
        self._clock = clock
        self.snapshot = Snapshot()
        self.synced = False
        self._full: dict[ObjectRef, Parsed] | None = None  # a resync not yet planned
        self._changes: dict[ObjectRef, Parsed | None] = {}  # None: deleted
        self._event_times: list[float] = []
        self._first: float | None = None
        self._last = 0.0
        self._wake = asyncio.Event()
        self._offered: DesiredState | None = None
        self._reasons: tuple[Reason, ...] = ()
        self.plans = 0  # for tests and logs
        self._ready: Health | None = None  # latched once ready (controller.agent.health)
        self._running = False
        self._secrets = secrets
        self._secret_refresh = secret_refresh
        # None: does not exist; _UNREADABLE: the API refused it
        self._secret_cache: dict[SecretKey, Raw | object | None] = {}
        self._fed_at: dict[ObjectRef, float] = {}  # when each object was last fed
        if reporter is not None:
            reporter.configured = self._peer_configured

    # -- feeding: called from kopf's handlers; cheap, never raise ---------------------------

    def resync(self, objects: Iterable[Fed]) -> None:
        """The whole cluster as it is now (replaces the snapshot at the next plan)."""
        full: dict[ObjectRef, Parsed] = {}
        for obj in objects:
            view = _parsed(obj)
            full[view.ref] = view
        self._full = full
        self._changes.clear()
        self.synced = True
        self._touch(live=False)

    def listed(self) -> None:
        """Every watched kind is complete in what was fed so far (the caller knows how): plan
        it as the whole cluster."""
        if self.synced:
            return
        self._full = {ref: view for ref, view in self._changes.items() if view is not None}
        self._changes.clear()
        self._event_times.clear()  # the listing is no event to measure latency from
        self.synced = True
        self._touch(live=False)

    def was_listed(self, ref: ObjectRef) -> bool:
        """Whether the object was fed at all (upserted, or deleted) since the agent started."""
        return self.synced or ref in self._changes

    def upsert(self, obj: Fed, *, live: bool = True) -> None:
        """An object was added or changed. `live`: a watch event, not an initial listing (only
        those count for the event -> ack latency). The very view the agent holds already (or
        an equal one) is no change."""
        view = _parsed(obj)
        ref = view.ref
        self._fed_at[ref] = self._clock()
        if self._full is not None:
            self._full[ref] = view
        else:
            held = self._changes[ref] if ref in self._changes else _current(self.snapshot, ref)
            if held is view or held == view:
                return
            self._changes[ref] = view
        self._touch(live=live)

    def delete(self, obj: Raw | ObjectRef, *, live: bool = True) -> None:
        ref = obj if isinstance(obj, ObjectRef) else object_ref(obj)
        self._fed_at.pop(ref, None)
        if self._full is not None:
            self._full.pop(ref, None)
        else:
            self._changes[ref] = None
        self._touch(live=live)

    def was_fed(self, obj: Raw | ObjectRef) -> bool:
        """Whether this object came through `upsert` before (and was not deleted since)."""
        return (obj if isinstance(obj, ObjectRef) else object_ref(obj)) in self._fed_at

    def now(self) -> float:
        return self._clock()

    def known(self, kind: str) -> set[ObjectRef]:
        """The objects of `kind` the agent holds (planned or pending)."""
        if self._full is not None:
            refs = set(self._full)
        else:
            refs = {view.ref for view in self.snapshot.objects()} | set(self.snapshot.invalid)
            for ref, raw in self._changes.items():
                if raw is None:
                    refs.discard(ref)
                else:
                    refs.add(ref)
        return {ref for ref in refs if ref.kind == kind}

    def sweep(self, kind: str, listed: Iterable[ObjectRef], *, listed_since: float) -> int:
        """Forget objects of `kind` that a LIST begun at `listed_since` (clock()) did not
        return and that nothing fed since: deleted while no watch saw it (kopf re-lists after
        a 410 Gone but never reports what vanished meanwhile). Returns how many."""
        present = set(listed)
        gone = [
            ref
            for ref in self.known(kind)
            if ref not in present and self._fed_at.get(ref, float("-inf")) < listed_since
        ]
        for ref in gone:
            log.info("%s vanished while unwatched: forgetting it", ref)
            self.delete(ref, live=False)
        return len(gone)

    def _touch(self, *, live: bool) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
        self._last = now
        if live:
            self._event_times.append(now)
        self._wake.set()

    # -- health ----------------------------------------------------------------------------

    def readiness(self) -> Health:
        """/readyz: listed, planned, and the first state acknowledged (or none to send);
        stays ready once it was (controller.agent.health)."""
        if self._ready is not None:
            return self._ready
        health = readiness(
            synced=self.synced,
            plans=self.plans,
            offered=self._offered is not None,
            acked=self.push.acked_state is not None,
        )
        if health.ok:
            self._ready = health
            log.info("ready: %s", health.text().strip())
        return health

    def liveness(self) -> Health:
        """/livez: the loops run (and, being asked on this event loop, the loop answers)."""
        if self._running:
            return Health(True, LiveReason.Running)
        return Health(False, LiveReason.Stopped, "the agent's loops are not running")

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        self._running = True
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._plan_loop(), name="plan")
                tasks.create_task(self.push.run(), name="push")
                if self.reporter is not None:
                    tasks.create_task(self.reporter.run(), name="status")
                if self._secrets is not None:
                    tasks.create_task(self._refresh_secrets(), name="secrets")
        finally:
            self._running = False

    async def _plan_loop(self) -> None:
        while True:
            self._wake.clear()
            if not self.synced or self._first is None:
                await self._wake.wait()
                continue
            due = coalesce_deadline(
                self._first, self._last, quiet=self._quiet, max_delay=self._max_delay
            )
            delay = due - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue  # look again: the burst may have grown
            try:
                await self._replan()
            except Exception:  # a planner bug must not stop the agent; the next change retries
                log.exception("planning failed")

    async def _replan(self) -> None:
        full, self._full = self._full, None
        changes, self._changes = self._changes, {}
        times, self._event_times = self._event_times, []
        self._first = None
        first_plan = self.plans == 0
        if full is not None:
            # A bulk load: nothing it allocates is garbage (controller.agent.heap).
            with collector_paused():
                self.snapshot = Snapshot().apply(views=full.values())
        else:
            self.snapshot = self.snapshot.apply(
                views=[view for view in changes.values() if view is not None],
                deletes=[ref for ref, view in changes.items() if view is None],
            )
        if self._secrets is not None:
            await self._add_secrets()
        started = time.perf_counter()
        if full is not None:
            with collector_paused():
                plan = self._planner.plan(self.snapshot)
        else:
            plan = self._planner.plan(self.snapshot)
        self._metrics.plan_duration.observe(time.perf_counter() - started)
        self.plans += 1
        if first_plan and self._freeze:
            settle()  # the snapshot is long-lived: keep it out of the collector's scans
        if self.reporter is not None:
            self.reporter.node_sessions = self._planner.node_sessions
        if plan.reasons != self._reasons:
            self._reasons = plan.reasons
            for reason in plan.reasons:
                log.debug("plan: %s %s: %s", reason.code, reason.ref, reason.detail)
        if plan.state is None:
            why = "; ".join(f"{r.code} {r.ref}: {r.detail}" for r in plan.reasons[:3])
            log.warning("no valid state for node %s, sending nothing: %s", self.node_name, why)
            return
        if plan.state == self._offered:
            return  # nothing changed for this node
        self._offered = plan.state
        self.push.offer(plan.state, times)

    async def _add_secrets(self) -> None:
        """Put every referenced Secret into the snapshot, fetching the ones never fetched,
        and tell the planner which ones the agent may not read."""
        wanted = referenced_secrets(self.snapshot)
        for key in sorted(wanted - self._secret_cache.keys()):
            self._set_secret(key, await self._fetch_secret(key))
        present = self.snapshot.secrets.keys()
        found = [
            raw
            for key in sorted(wanted)
            if key not in present and isinstance(raw := self._secret_cache.get(key), Mapping)
        ]
        unreadable = {
            key: unreadable_detail(*key)
            for key in sorted(wanted)
            if self._secret_cache.get(key) is _UNREADABLE
        }
        if found or unreadable != self.snapshot.unreadable_secrets:
            self.snapshot = self.snapshot.apply(upserts=found, unreadable_secrets=unreadable)

    def _set_secret(self, key: SecretKey, answer: Raw | object | None) -> None:
        """Remember what the API said about a Secret; a newly refused one is announced on the
        BGPPeers needing it (an Event each) and in the log."""
        was = self._secret_cache.get(key)
        self._secret_cache[key] = answer
        if answer is not _UNREADABLE or was is _UNREADABLE:
            return
        detail = unreadable_detail(*key)
        peers = sorted(
            p.name
            for p in self.snapshot.peers
            if p.password_secret_ref is not None
            and (p.password_secret_ref.namespace, p.password_secret_ref.name) == key
        )
        log.warning("%s; BGPPeer(s) %s get no session on this node", detail, ", ".join(peers))
        if self.reporter is not None:
            for peer in peers:
                self.reporter.announce(
                    SessionEvent(
                        peer=peer,
                        type=EventType.Warning,
                        reason=SessionReason.PeerSecretUnreadable,
                        message=f"{detail}; no BGP session from node {self.node_name}",
                    )
                )

    async def _fetch_secret(self, key: SecretKey) -> Raw | object | None:
        """GET until the answer is known: the Secret, None when it does not exist,
        _UNREADABLE when the agent may not read it."""
        assert self._secrets is not None
        delay = 0.1
        while True:
            try:
                raw = await self._secrets.get_secret(*key)
            except SecretUnreadable:
                return _UNREADABLE
            except Exception as err:  # noqa: BLE001 - any other API failure: unknown, retry
                log.warning("cannot read Secret %s/%s (retrying): %s", *key, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, SECRET_RETRY_MAX)
                continue
            if raw is None:
                log.warning("Secret %s/%s referenced by a BGPPeer does not exist", *key)
            return raw

    async def _refresh_secrets(self) -> None:
        """Re-read the referenced Secrets now and then: rotations, deletions and RBAC changes
        reach the plan through the same feed as watch events."""
        while True:
            await asyncio.sleep(self._secret_refresh)
            if not self.synced:
                continue
            for key in sorted(referenced_secrets(self.snapshot)):
                answer = await self._fetch_secret(key)
                old = self._secret_cache.get(key)
                if key in self._secret_cache and _secret_content(answer) == _secret_content(old):
                    continue
                self._set_secret(key, answer)
                ref = ObjectRef("Secret", key[0], key[1])
                if isinstance(answer, Mapping):
                    self.upsert(answer, live=False)
                else:  # gone, or no longer readable: either way not in the snapshot
                    self.delete(ref, live=False)

    def _peer_configured(self, name: str) -> bool:
        return any(p.name == name for p in self.snapshot.peers)


def _secret_content(answer: Raw | object | None) -> object:
    if isinstance(answer, Mapping):
        return (answer.get("data"), answer.get("stringData"))
    return answer
