"""kopf glue of the node agent (`kubgp-controller node`): watches feed a `NodeAgent`; the
`kubernetes` client writes this node's BGPNodeState and the session Events.

Safe as one of N identical replicas (one per node, DaemonSet): kopf runs `standalone` (no
peering objects), with event handlers only — no change handlers, so no finalizers, no progress
annotations, nothing written to any watched object — and kopf's own Event posting is off.
Nodes are watched through a server-side field selector for this node only, unless the agent
plans node-to-node sessions (`--all-nodes`, the chart's `inClusterRouting.enabled`): then every
Node, since a session needs the other node's addresses and pod CIDRs. Each agent writes one
object, the BGPNodeState named after its node, and Events about its own sessions.

Every event is parsed once, in its handler, into the planner's view and fed to the agent, which
keeps nothing else (no raw body); the handlers never raise (kopf does not retry event
handlers).

When to plan the first time: not before every watched kind is complete, or the agent would
push a partial state (say, Services not listed yet) and withdraw routes the speaker kept across
an agent restart. kopf's own way to know — indexes: it calls no handler before every index is
populated from the initial listings — does not scale: until the last object is indexed, every
object's worker waits with its body, and each indexed object wakes every waiting worker. With
10,000 Services and their EndpointSlices that is ~20,000 bodies held at once (the process
keeps that peak as resident memory for good) and ~2*10^8 wake-ups (measured: 2 minutes for
4,000 objects, a quadratic climb). So the agent uses no index. Instead `InitialListing` LISTs
every kind itself (names only, page by page) once kopf is running, and marks the agent listed
when kopf's handlers have fed every object that LIST returned (an upsert, or a delete if it
went since). Whatever existed when the LIST ran is then in the agent, with the content kopf
delivered, which is as current as kopf's own: the same guarantee as before. An object the LIST
saw but kopf never will (deleted after that LIST, before kopf's own) would keep it waiting, so
when kopf delivers nothing for `stall` seconds it LISTs again.

kopf re-lists after a 410 Gone but never reports objects that vanished in the gap (they would
stay planned: a deleted Service's address announced until the agent restarts). So a re-list
seen by the handlers (initial-listing events after the first sync) makes `Sweeper` LIST that
kind itself a moment later and have the agent forget what is gone; it also sweeps every kind
every `sweep_interval` as a safety net.

Secrets are not watched: the agent may read only those BGPPeers reference (RBAC by namespace,
maybe by name), so `KubeSecretSource` GETs them for the agent (see controller.agent.node_agent).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import kopf
import kubernetes

from controller.agent.node_agent import NodeAgent, SecretUnreadable
from controller.agent.node_status import SessionEvent
from controller.domain.reasons import ObjectRef
from controller.domain.snapshot import parse
from controller.kube.client import PAGE, list_pages, log_in_with, path_for

log = logging.getLogger("kubgp.agent")

GROUP: Final = "kubgp.io"
VERSION: Final = "v1alpha1"
NODE_STATES: Final = "bgpnodestates"
EVENT_NAMESPACE: Final = "default"  # where Events about cluster-scoped objects go
COMPONENT: Final = "kubgp-node-agent"


@dataclass(frozen=True, slots=True)
class Watched:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


NODES: Final = Watched("", "v1", "nodes", "Node")
PEERS: Final = Watched(GROUP, VERSION, "bgppeers", "BGPPeer")
WATCHED: Final = (
    NODES,
    Watched("", "v1", "services", "Service"),
    Watched("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    PEERS,
    Watched(GROUP, VERSION, "bgpadvertisements", "BGPAdvertisement"),
    Watched(GROUP, VERSION, "bgpnodepeerings", "BGPNodePeering"),
)


def node_field_selector(agent: NodeAgent) -> str | None:
    """The field selector of the agent's Node watches and lists: its own Node only, unless it
    watches every Node (`NodeAgent.all_nodes`)."""
    return None if agent.all_nodes else f"metadata.name={agent.node_name}"


def _raw(body: Mapping[str, Any], watched: Watched) -> dict[str, Any]:
    raw = dict(body)
    raw.setdefault("apiVersion", watched.api_version)
    raw.setdefault("kind", watched.kind)
    return raw


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name", "")))


class PeerUids:
    """BGPPeer name -> uid, for Events' involvedObject (kept by the BGPPeer handler)."""

    def __init__(self) -> None:
        self.uids: dict[str, str] = {}


class InitialListing:
    """Marks the agent listed once kopf has fed it every object of a LIST of every watched
    kind (see the module docstring)."""

    def __init__(self, client: Any, agent: NodeAgent, *, stall: float = 10.0) -> None:
        self._client = client
        self._agent = agent
        self._stall = stall
        self.lists = 0

    async def run(self) -> None:
        delay = 0.5
        while not self._agent.synced:
            try:
                refs = [ref for w in WATCHED for ref in await self._list(w)]
            except Exception as err:  # noqa: BLE001 - any API failure: list again
                log.warning("cannot list to complete the initial listing (retrying): %s", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.lists += 1
            missing = [ref for ref in refs if not self._agent.was_listed(ref)]
            progress = self._agent.now()
            while missing:
                await asyncio.sleep(0.05)
                left = [ref for ref in missing if not self._agent.was_listed(ref)]
                if len(left) < len(missing):
                    progress = self._agent.now()
                missing = left
                if missing and self._agent.now() - progress > self._stall:
                    log.info("%d listed objects not delivered by the watches in %.0f s "
                             "(gone since?): listing again", len(missing), self._stall)  # fmt: skip
                    break
            if not missing:
                log.info("initial listing complete: %d objects", len(refs))
                self._agent.listed()

    async def _list(self, watched: Watched) -> list[ObjectRef]:
        selector = node_field_selector(self._agent) if watched is NODES else None
        return await asyncio.to_thread(list_refs, self._client, watched, selector)


class Sweeper:
    """LISTs a kind when kopf re-listed it (and every kind now and then) so that the agent
    forgets objects deleted while no watch was open."""

    def __init__(
        self, client: Any, agent: NodeAgent, *, interval: float = 600.0, settle: float = 2.0
    ) -> None:
        self._client = client
        self._agent = agent
        self._interval = interval
        self._settle = settle
        self._pending: set[Watched] = set()
        self._wake = asyncio.Event()
        self.sweeps = 0

    @property
    def client(self) -> Any:
        return self._client

    def relisted(self, watched: Watched) -> None:
        self._pending.add(watched)
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
                await asyncio.sleep(self._settle)  # let kopf's re-list reach the handlers
                kinds, self._pending = self._pending, set()
                self._wake.clear()
            except TimeoutError:
                kinds = set(WATCHED)
            if not self._agent.synced:
                continue
            for watched in sorted(kinds, key=WATCHED.index):
                try:
                    await self.sweep(watched)
                except Exception as err:  # noqa: BLE001 - any API failure: next time
                    log.warning("cannot list %s to sweep: %s", watched.plural, err)

    async def sweep(self, watched: Watched) -> int:
        since = self._agent.now()
        selector = node_field_selector(self._agent) if watched is NODES else None
        refs = await asyncio.to_thread(list_refs, self._client, watched, selector)
        self.sweeps += 1
        return self._agent.sweep(watched.kind, refs, listed_since=since)


def list_refs(client: Any, watched: Watched, field_selector: str | None = None) -> list[ObjectRef]:
    """Every object of a kind (names only), through the `kubernetes` client, page by page."""
    path = path_for(watched.api_version, watched.plural)
    query = {"fieldSelector": field_selector} if field_selector else {}
    return [
        ObjectRef(watched.kind, *_key(item))
        for page in list_pages(client, path, query)
        for item in page.get("items") or ()
    ]


def build_registry(
    agent: NodeAgent,
    peer_uids: PeerUids,
    login: Callable[[], kopf.ConnectionInfo],
    sweeper: Sweeper | None = None,
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    log_in_with(registry, login)

    for watched in WATCHED:
        _register(registry, agent, peer_uids, sweeper, watched)
    return registry


def _register(
    registry: kopf.OperatorRegistry,
    agent: NodeAgent,
    peer_uids: PeerUids,
    sweeper: Sweeper | None,
    watched: Watched,
) -> None:
    async def on_event(event: kopf.RawEvent, **_: Any) -> None:
        try:
            raw = _raw(event["object"], watched)
            namespace, name = _key(raw)
            ref = ObjectRef(watched.kind, namespace, name)
            if event["type"] is None and sweeper is not None and agent.was_fed(ref):
                sweeper.relisted(watched)  # a listing of what was seen already: a re-list
            live = event["type"] is not None
            if watched is PEERS:
                _remember_uid(peer_uids, raw)
            if event["type"] == "DELETED":
                agent.delete(ref, live=live)
            else:
                agent.upsert(parse(raw), live=live)
        except Exception:  # kopf never retries event handlers: log, never raise
            log.exception("cannot take %s event for %s", watched.kind, _key(event["object"]))

    kopf.on.event(watched.api_version, watched.plural, id=f"feed_{watched.plural}",
                  registry=registry)(on_event)  # fmt: skip


def _remember_uid(peer_uids: PeerUids, raw: Mapping[str, Any]) -> None:
    meta = raw.get("metadata") or {}
    if meta.get("uid"):
        peer_uids.uids[str(meta.get("name"))] = str(meta["uid"])


def build_settings(node_name: str, *, all_nodes: bool = False) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    if not all_nodes:
        settings.watching.field_selectors[NODES.plural] = f"metadata.name={node_name}"
    settings.posting.enabled = False  # N replicas must not post each handler's log lines
    settings.watching.server_timeout = 300  # reconnects resume from the resourceVersion
    # Memory at start-up: kopf lists a page at a time, and an object's worker (with the last
    # body it handled) ends half a second after its last event instead of five.
    settings.watching.chunk_size = PAGE
    settings.queueing.idle_timeout = 0.5
    return settings


class KubeSecretSource:
    """controller.agent.node_agent.SecretSource through the sync client, in a worker thread."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._core = kubernetes.client.CoreV1Api(client)

    async def get_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        def get() -> Mapping[str, Any] | None:
            try:
                obj = self._core.read_namespaced_secret(name, namespace)
            except kubernetes.client.ApiException as err:
                if err.status == 404:
                    return None
                if err.status in (401, 403):  # not for us to read: asking again will not help
                    raise SecretUnreadable(f"{err.status} {err.reason}") from None
                raise
            raw: dict[str, Any] = self._client.sanitize_for_serialization(obj)
            raw.setdefault("apiVersion", "v1")
            raw.setdefault("kind", "Secret")
            return raw

        return await asyncio.to_thread(get)


class KubeNodeStateWriter:
    """The agent's writes (controller.agent.node_status.KubeWriter) through the sync
    `kubernetes` client, each in a worker thread."""

    def __init__(self, client: Any, *, node_name: str, peer_uids: PeerUids) -> None:
        self.node_name = node_name
        self._custom = kubernetes.client.CustomObjectsApi(client)
        self._core = kubernetes.client.CoreV1Api(client)
        self._peer_uids = peer_uids

    async def read_node_state(self) -> Mapping[str, Any] | None:
        def read() -> Mapping[str, Any] | None:
            try:
                obj: Any = self._custom.get_cluster_custom_object(
                    GROUP, VERSION, NODE_STATES, self.node_name
                )
            except kubernetes.client.ApiException as err:
                if err.status == 404:
                    return None
                raise
            status = obj.get("status")
            return status if isinstance(status, dict) and status else None

        return await asyncio.to_thread(read)

    async def write_node_state(self, status: Mapping[str, Any]) -> None:
        def write() -> None:
            body = {"status": dict(status)}
            try:
                self._custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, NODE_STATES, self.node_name, body
                )
                return
            except kubernetes.client.ApiException as err:
                if err.status != 404:
                    raise
            obj = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "BGPNodeState",
                "metadata": {"name": self.node_name},
                "spec": {},
            }
            try:
                self._custom.create_cluster_custom_object(GROUP, VERSION, NODE_STATES, obj)
            except kubernetes.client.ApiException as err:
                if err.status != 409:  # another replica of this node's agent was first
                    raise
            self._custom.patch_cluster_custom_object_status(
                GROUP, VERSION, NODE_STATES, self.node_name, body
            )

        await asyncio.to_thread(write)

    async def post_event(self, event: SessionEvent) -> None:
        now = datetime.datetime.now(tz=datetime.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        involved: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": event.kind,
            "name": event.object_name,
        }
        uid = self._peer_uids.uids.get(event.object_name) if event.kind == PEERS.kind else None
        if uid is not None:
            involved["uid"] = uid
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{event.object_name}.", "namespace": EVENT_NAMESPACE},
            "involvedObject": involved,
            "type": event.type.value,
            "reason": event.reason.value,
            "message": event.message,
            "source": {"component": COMPONENT, "host": self.node_name},
            "reportingComponent": f"{GROUP}/node-agent",
            "reportingInstance": self.node_name,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }

        def post() -> None:
            self._core.create_namespaced_event(EVENT_NAMESPACE, body)

        await asyncio.to_thread(post)


async def run_operator(
    agent: NodeAgent,
    peer_uids: PeerUids,
    *,
    login: Callable[[], kopf.ConnectionInfo],
    sweeper: Sweeper | None = None,
    listing: InitialListing | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """kopf and the agent side by side in this event loop, until SIGTERM/SIGINT (kopf's own
    handlers) or `stop`. If the agent's tasks end (they should not), kopf is stopped too.
    `login` gives kopf the credentials of the agent's own client (controller.kube.client).
    `listing` tells the agent when it is listed (default: one through the sweeper's client;
    without either, the agent would never plan)."""
    if listing is None and sweeper is not None:
        listing = InitialListing(sweeper.client, agent)
    registry = build_registry(agent, peer_uids, login, sweeper)
    settings = build_settings(agent.node_name, all_nodes=agent.all_nodes)
    stop = stop or asyncio.Event()

    @kopf.on.cleanup(registry=registry)
    async def stop_agent(**_: Any) -> None:
        # kopf waits 5 s for tasks it did not start before giving up on them: end ours now.
        agent_task.cancel()

    async def agent_and_sweeper() -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(agent.run(), name="agent")
            if listing is not None:
                tasks.create_task(listing.run(), name="initial-listing")
            if sweeper is not None:
                tasks.create_task(sweeper.run(), name="sweeper")

    agent_task = asyncio.create_task(agent_and_sweeper(), name="node-agent")
    agent_task.add_done_callback(lambda _: stop.set())
    try:
        await kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=True,
            stop_flag=stop,
        )
    finally:
        agent_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await agent_task  # raises what the agent died of, if it did
