"""The node agent without Kubernetes: it is fed object changes (by controller.kube.node_watch,
or by a test), keeps the cluster snapshot, re-plans after a burst of changes and hands the
plan to the push loop; the status reporter writes what the speaker runs back.

    agent = NodeAgent(node_name="n1", push=PushLoop(path, ...), reporter=..., metrics=...)
    agent.resync(every_raw_object)      # once everything is listed (kopf: indexes are ready)
    agent.upsert(raw); agent.delete(raw)  # per watch event; never raise, never block
    await agent.run()                   # the planning loop, the push loop and the reporter

Coalescing: a change is planned once no other change came for `quiet` seconds, and at the
latest `max_delay` seconds after the first change of the burst. Every feed method is cheap
(a dict assignment), so kopf's handlers stay trivially correct.

Secrets are not watched (the node agent may read only the Secrets BGPPeers point at, by name,
in their namespaces): a `SecretSource` GETs each referenced Secret before the plan that first
needs it, and again every `secret_refresh` seconds for rotations. A Secret that does not exist
is planned as missing (no session); one that cannot be read (API error) holds the plan back
until it can, so an agent restart never drops a peer for want of its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from controller.agent.health import LiveReason, readiness
from controller.agent.node_status import NodeStatusReporter
from controller.agent.push import PushLoop
from controller.controller_metrics import AgentMetrics
from controller.domain.planner import DEFAULT_ASN, NodePlanner
from controller.domain.reasons import ObjectRef, Reason
from controller.domain.snapshot import Snapshot
from controller.health_endpoint import Health
from speaker.api.schema import DesiredState

log = logging.getLogger("kubgp.agent")

DEFAULT_QUIET: Final = 0.05
DEFAULT_MAX_DELAY: Final = 0.5
DEFAULT_SECRET_REFRESH: Final = 60.0
SECRET_RETRY_MAX: Final = 5.0

Raw = Mapping[str, Any]
SecretKey = tuple[str, str]  # namespace, name


class SecretSource(Protocol):
    async def get_secret(self, namespace: str, name: str) -> Raw | None:
        """The Secret, or None when it does not exist. Raises when it cannot tell."""
        ...


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
    ) -> None:
        """`freeze_after_sync`: `gc.freeze()` after the first plan, so the long-lived snapshot
        stays out of the collector's full scans (docs/planner.md); for the agent process."""
        self.node_name = node_name
        self._freeze = freeze_after_sync
        self.push = push
        self.reporter = reporter
        self._metrics = metrics
        self._planner = NodePlanner(node_name, default_asn=default_asn)
        self._quiet = quiet
        self._max_delay = max_delay
        self._clock = clock
        self.snapshot = Snapshot()
        self.synced = False
        self._full: dict[ObjectRef, Raw] | None = None  # a resync not yet planned
        self._changes: dict[ObjectRef, Raw | None] = {}  # None: deleted
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
        self._secret_cache: dict[SecretKey, Raw | None] = {}  # None: does not exist
        self._fed_at: dict[ObjectRef, float] = {}  # when each object was last fed
        if reporter is not None:
            reporter.configured = self._peer_configured

    # -- feeding: called from kopf's handlers; cheap, never raise ---------------------------

    def resync(self, raws: Iterable[Raw]) -> None:
        """The whole cluster as it is now (replaces the snapshot at the next plan)."""
        self._full = {object_ref(raw): raw for raw in raws}
        self._changes.clear()
        self.synced = True
        self._touch(live=False)

    def upsert(self, raw: Raw, *, live: bool = True) -> None:
        """An object was added or changed. `live`: a watch event, not an initial listing (only
        those count for the event -> ack latency)."""
        ref = object_ref(raw)
        self._fed_at[ref] = self._clock()
        if self._full is not None:
            self._full[ref] = raw
        else:
            self._changes[ref] = raw
        self._touch(live=live)

    def delete(self, raw: Raw, *, live: bool = True) -> None:
        ref = object_ref(raw)
        self._fed_at.pop(ref, None)
        if self._full is not None:
            self._full.pop(ref, None)
        else:
            self._changes[ref] = None
        self._touch(live=live)

    def was_fed(self, raw: Raw) -> bool:
        """Whether this object came through `upsert` before (and was not deleted since)."""
        return object_ref(raw) in self._fed_at

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
            self.delete({"kind": ref.kind,
                         "metadata": {"namespace": ref.namespace, "name": ref.name}},
                        live=False)  # fmt: skip
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
            self.snapshot = Snapshot.build(full.values())
        else:
            self.snapshot = self.snapshot.apply(
                upserts=[raw for raw in changes.values() if raw is not None],
                deletes=[ref for ref, raw in changes.items() if raw is None],
            )
        if self._secrets is not None:
            await self._add_secrets()
        started = time.perf_counter()
        plan = self._planner.plan(self.snapshot)
        self._metrics.plan_duration.observe(time.perf_counter() - started)
        self.plans += 1
        if first_plan and self._freeze:
            gc.collect()
            gc.freeze()  # the snapshot is long-lived: keep it out of the collector's scans
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
        """Put every referenced Secret into the snapshot, fetching the ones never fetched."""
        wanted = referenced_secrets(self.snapshot)
        for key in sorted(wanted - self._secret_cache.keys()):
            self._secret_cache[key] = await self._fetch_secret(key)
        present = self.snapshot.secrets.keys()
        found = [
            raw
            for key in sorted(wanted)
            if key not in present and (raw := self._secret_cache.get(key)) is not None
        ]
        if found:
            self.snapshot = self.snapshot.apply(upserts=found)

    async def _fetch_secret(self, key: SecretKey) -> Raw | None:
        """GET until the answer is known: the Secret, or None when it does not exist."""
        assert self._secrets is not None
        delay = 0.1
        while True:
            try:
                raw = await self._secrets.get_secret(*key)
            except Exception as err:  # noqa: BLE001 - any API failure: unknown, retry
                log.warning("cannot read Secret %s/%s (retrying): %s", *key, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, SECRET_RETRY_MAX)
                continue
            if raw is None:
                log.warning("Secret %s/%s referenced by a BGPPeer does not exist", *key)
            return raw

    async def _refresh_secrets(self) -> None:
        """Re-read the referenced Secrets now and then: rotations and deletions reach the
        plan through the same feed as watch events."""
        while True:
            await asyncio.sleep(self._secret_refresh)
            if not self.synced:
                continue
            for key in sorted(referenced_secrets(self.snapshot)):
                raw = await self._fetch_secret(key)
                old = self._secret_cache.get(key)
                if _secret_content(raw) == _secret_content(old) and key in self._secret_cache:
                    continue
                self._secret_cache[key] = raw
                ref = {"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"namespace": key[0], "name": key[1]}}  # fmt: skip
                if raw is None:
                    self.delete(ref, live=False)
                else:
                    self.upsert(raw, live=False)

    def _peer_configured(self, name: str) -> bool:
        return any(p.name == name for p in self.snapshot.peers)


def _secret_content(raw: Raw | None) -> object:
    return None if raw is None else (raw.get("data"), raw.get("stringData"))
