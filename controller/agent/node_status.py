"""What the node agent reports to Kubernetes, decided without Kubernetes: the BGPNodeState
status document, when it is worth writing (only on change, rate-limited), and which session
transitions become Events on the BGPPeer.

`NodeStatusReporter.observe(...)` is fed every speaker status the push loop reads; it keeps
the document it last wrote (or found at start-up) and the sessions it last saw, and hands the
writes and Events to a `KubeWriter` from its own task. A quiet cluster writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final, Protocol

from controller.controller_metrics import AgentMetrics
from controller.domain.node_peering import NO_SESSIONS, NodeSessions, Role, session_node
from speaker.api.client import FibSummary, PeerStatus, StateVersion
from speaker.api.schema import DesiredState

log = logging.getLogger("kubgp.agent")

ESTABLISHED: Final = "Established"
STATES: Final = frozenset({"Idle", "Connect", "Active", "OpenSent", "OpenConfirm", ESTABLISHED})
LAST_ERROR_MAX: Final = 1024  # crds/bgpnodestates.yaml
BFD_STATES: Final = frozenset({"AdminDown", "Down", "Init", "Up"})
BFD_DIAGNOSTIC_MAX: Final = 256  # crds/bgpnodestates.yaml
ROUTE_REASON_MAX: Final = 512  # crds/bgpnodestates.yaml
ROUTE_VIA_MAX: Final = 1024
# The speaker reports `since` as now - age, so it wobbles by microseconds between reads; a
# state whose start moved by less than this is the same state, not a change to write.
SINCE_TOLERANCE: Final = 2.0
DEFAULT_MIN_INTERVAL: Final = 2.0
EVENT_ATTEMPTS: Final = 3  # an Event is news; after that many failures it is dropped
MODE_MESH: Final = "FullMesh"
MODE_REFLECTION: Final = "RouteReflection"

StatusDoc = dict[str, Any]


class EventType(StrEnum):
    Normal = "Normal"
    Warning = "Warning"


class SessionReason(StrEnum):
    SessionEstablished = "SessionEstablished"
    SessionDown = "SessionDown"
    BfdUp = "BfdUp"
    BfdDown = "BfdDown"
    # No session at all: the peer's password Secret is not readable by the node agent (RBAC)
    PeerSecretUnreadable = "PeerSecretUnreadable"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvent:
    """A Kubernetes Event about the speaker's peer `peer`, posted on the BGPPeer of that name,
    or for a session to another node (`node/NAME`) on its BGPNodePeering (`kind`, `name`)."""

    peer: str
    type: EventType
    reason: SessionReason
    message: str
    kind: str = "BGPPeer"
    name: str = ""  # the object the Event is about; "" = `peer`

    @property
    def object_name(self) -> str:
        return self.name or self.peer


class KubeWriter(Protocol):
    """The agent's writes to Kubernetes (controller.kube implements it). Each may raise; the
    reporter logs, counts and retries on the next round."""

    async def read_node_state(self) -> Mapping[str, Any] | None:
        """This node's BGPNodeState status as stored now, None when there is none."""
        ...

    async def write_node_state(self, status: Mapping[str, Any]) -> None:
        """Create this node's BGPNodeState if missing and set its status."""
        ...

    async def post_event(self, event: SessionEvent) -> None: ...


def rfc3339(unix: float) -> str:
    moment = datetime.datetime.fromtimestamp(int(unix), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def routes_status(fib: FibSummary) -> dict[str, Any]:
    """The speaker's route import summary as BGPNodeState `status.routes` (bounded lists)."""
    doc: dict[str, Any] = {"state": fib.state}
    if fib.table is not None:
        doc.update(table=fib.table, protocol=fib.protocol, metric=fib.metric)
    doc.update(maxPaths=fib.max_paths, selected=fib.selected, installed=fib.installed,
               failed=fib.failed)  # fmt: skip
    if fib.waiting_for:
        doc["waitingFor"] = list(fib.waiting_for)
    doc["notInstalled"] = [
        {"prefix": n.prefix, "reason": n.text[:ROUTE_REASON_MAX]} for n in fib.not_installed
    ]
    doc["installedRoutes"] = [
        {"prefix": n.prefix, "via": n.text.removeprefix("via ")[:ROUTE_VIA_MAX]}
        for n in fib.installed_sample
    ]
    return doc


def build_status(
    *,
    state: DesiredState | None,
    applied: StateVersion | None,
    peers: Sequence[PeerStatus],
    previous: Mapping[str, Any] | None = None,
    fib: FibSummary | None = None,
    node_sessions: NodeSessions = NO_SESSIONS,
) -> StatusDoc:
    """The BGPNodeState status for what the speaker runs (`state`, the version it reported as
    applied) and its sessions. A peer's `since` is taken from `previous` when its state is the
    same and the times agree within SINCE_TOLERANCE, so that re-reads do not look like
    changes. `node_sessions` (the plan's) names the other node and its role for each session
    to another node, and gives the node's BGPNodePeering summary."""
    old_peers = {p.get("name"): p for p in (previous or {}).get("peers", ()) if isinstance(p, dict)}
    doc: StatusDoc = {}
    if state is not None:
        doc["routerId"] = state.router_id
        doc["asn"] = state.asn
        doc["advertisedPrefixes"] = len(state.advertisements)
    if applied is not None:
        doc["appliedEpoch"] = applied.epoch
        doc["appliedGeneration"] = applied.generation
    entries: list[dict[str, Any]] = []
    roles = {s.peer.name: s for s in node_sessions.sessions}
    for p in sorted(peers, key=lambda p: p.name):
        entry: dict[str, Any] = {"name": p.name, "address": p.address}
        session = roles.get(p.name)
        if session is not None:
            entry["node"] = session.node
            entry["role"] = session.role.value
        entry["state"] = p.state if p.state in STATES else "Idle"
        if p.since is not None:
            since = rfc3339(p.since)
            old = old_peers.get(p.name)
            if old is not None and old.get("state") == entry["state"]:
                old_since = parse_rfc3339(old.get("since"))
                if old_since is not None and abs(old_since - p.since) < SINCE_TOLERANCE:
                    since = str(old["since"])
            entry["since"] = since
        entry["prefixesAdvertised"] = p.prefixes_advertised
        entry["prefixesReceived"] = p.prefixes_received
        for key, value in (("prefixesAccepted", p.prefixes_accepted),
                           ("prefixesBest", p.prefixes_best),
                           ("prefixesInstalled", p.prefixes_installed)):  # fmt: skip
            if value is not None:
                entry[key] = value
        if p.last_error:
            entry["lastError"] = p.last_error[:LAST_ERROR_MAX]
        if p.bfd is not None:
            # No `since`: it wobbles between reads; flaps and the state say what changed.
            bfd: dict[str, Any] = {
                "state": p.bfd.state if p.bfd.state in BFD_STATES else "Down",
                "flaps": p.bfd.flaps,
                "bgpHeld": p.bfd.bgp_held,
            }
            if p.bfd.last_diagnostic:
                bfd["lastDiagnostic"] = p.bfd.last_diagnostic[:BFD_DIAGNOSTIC_MAX]
            entry["bfd"] = bfd
        entries.append(entry)
    if fib is not None:
        doc["routes"] = routes_status(fib)
    doc["configuredPeers"] = len(entries)
    doc["establishedPeers"] = sum(1 for e in entries if e["state"] == ESTABLISHED)
    peering = node_sessions.peering
    if peering is not None:
        to_nodes = [e for e in entries if "node" in e]
        summary: dict[str, Any] = {
            "name": peering.name,
            "mode": MODE_REFLECTION if peering.reflector_selector is not None else MODE_MESH,
            "routeReflector": node_sessions.reflector,
        }
        if node_sessions.cluster_id is not None:
            summary["clusterId"] = node_sessions.cluster_id
        summary["sessions"] = len(to_nodes)
        summary["establishedSessions"] = sum(1 for e in to_nodes if e["state"] == ESTABLISHED)
        doc["nodePeering"] = summary
    doc["peers"] = entries
    return doc


def session_events(
    node_name: str,
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    configured: Callable[[str], bool] = lambda _: True,
) -> list[SessionEvent]:
    """Events for sessions that came up or went down between two status documents.

    Up: a peer Established now that was not (or was not there). Down: a peer that was
    Established and is not now (reason: its lastError), or is gone from the speaker while its
    BGPPeer still exists (`configured(name)`: e.g. its nodeSelector no longer selects this
    node). A peer that stayed Established but whose `since` moved went down and up in between:
    both are reported. The same for a peer's BFD session (BfdDown/BfdUp, before the BGP
    session's own events: BFD going down is what takes BGP down), its flap count telling a
    down-and-up between two reads."""
    before = {p["name"]: p for p in (previous or {}).get("peers", ()) if isinstance(p, dict)}
    now = {p["name"]: p for p in current.get("peers", ())}
    peering_now = _peering_name(current)
    peering_before = _peering_name(previous)
    events: list[SessionEvent] = []
    for name in sorted(before.keys() | now.keys()):
        old, new = before.get(name), now.get(name)
        was_up = old is not None and old.get("state") == ESTABLISHED
        is_up = new is not None and new.get("state") == ESTABLISHED
        flapped = (
            was_up and is_up and old is not None and new is not None
            and old.get("since") != new.get("since")
        )  # fmt: skip
        bfd_down, bfd_up = _bfd_events(node_name, name, old, new)
        events.extend(bfd_down)
        if was_up and (not is_up or flapped):
            if new is None and not configured(name):
                events.extend(bfd_up)
                continue
            if new is None:
                why = "the peer is no longer configured for this node"
            elif flapped:
                why = new.get("lastError") or (
                    f"it was re-established at {new.get('since')} (the speaker restarted, or "
                    "the session reset between two status reads)"
                )
            else:
                why = new.get("lastError") or f"the session is {new.get('state')}"
            events.append(
                SessionEvent(
                    peer=name,
                    type=EventType.Warning,
                    reason=SessionReason.SessionDown,
                    message=f"BGP session from node {node_name} went down: {why}",
                )
            )
        events.extend(bfd_up)
        if is_up and (not was_up or flapped):
            assert new is not None
            events.append(
                SessionEvent(
                    peer=name,
                    type=EventType.Normal,
                    reason=SessionReason.SessionEstablished,
                    message=(
                        f"BGP session from node {node_name} to {new.get('address')} established"
                    ),
                )
            )
    return [_about(e, peering_now or peering_before) for e in events]


def _peering_name(doc: Mapping[str, Any] | None) -> str | None:
    summary = (doc or {}).get("nodePeering")
    name = summary.get("name") if isinstance(summary, Mapping) else None
    return name if isinstance(name, str) and name else None


def _about(event: SessionEvent, peering: str | None) -> SessionEvent:
    """A session to another node is reported on its BGPNodePeering, not on a BGPPeer."""
    if session_node(event.peer) is None or peering is None:
        return event
    return replace(event, kind="BGPNodePeering", name=peering)


def _bfd_events(
    node_name: str, name: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> tuple[list[SessionEvent], list[SessionEvent]]:
    before = (old or {}).get("bfd") or {}
    now = (new or {}).get("bfd") or {}
    if not now or new is None:
        return [], []
    was_up, is_up = before.get("state") == "Up", now.get("state") == "Up"
    flapped = was_up and is_up and now.get("flaps", 0) != before.get("flaps", 0)
    down: list[SessionEvent] = []
    up: list[SessionEvent] = []
    if was_up and (not is_up or flapped):
        why = now.get("lastDiagnostic") or f"it is {now.get('state')}"
        held = "; BGP is held down until BFD is Up again" if now.get("bgpHeld") else ""
        down.append(SessionEvent(
            peer=name, type=EventType.Warning, reason=SessionReason.BfdDown,
            message=f"BFD session from node {node_name} to {new.get('address')} went down: "
                    f"{why}{held}",
        ))  # fmt: skip
    if is_up and (not was_up or flapped):
        up.append(SessionEvent(
            peer=name, type=EventType.Normal, reason=SessionReason.BfdUp,
            message=f"BFD session from node {node_name} to {new.get('address')} is up",
        ))  # fmt: skip
    return down, up


class RateLimit:
    """At most one write per `min_interval` seconds; the first is free."""

    def __init__(self, min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval = min_interval
        self._clock = clock
        self._last: float | None = None

    def wait_time(self) -> float:
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.min_interval - self._clock())

    def mark(self) -> None:
        self._last = self._clock()


class NodeStatusReporter:
    """Turns speaker status reads into BGPNodeState writes and session Events."""

    def __init__(
        self,
        *,
        node_name: str,
        writer: KubeWriter,
        metrics: AgentMetrics,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_name = node_name
        self._writer = writer
        self._metrics = metrics
        self._limit = RateLimit(min_interval, clock)
        self._retry_interval = retry_interval
        self._written: Mapping[str, Any] | None = None  # what Kubernetes holds, as we know it
        self._seen: Mapping[str, Any] | None = None  # the sessions as events last saw them
        self._wanted: StatusDoc | None = None
        self._events: list[tuple[SessionEvent, int]] = []  # with failed attempts so far
        self._wake = asyncio.Event()
        self._loaded = False
        self.configured: Callable[[str], bool] = lambda _: True
        self.node_sessions: NodeSessions = NO_SESSIONS  # the agent's latest plan's

    @property
    def written(self) -> Mapping[str, Any] | None:
        return self._written

    def observe(
        self, *, state: DesiredState | None, applied: StateVersion | None,
        peers: Sequence[PeerStatus], fib: FibSummary | None = None,
    ) -> None:  # fmt: skip
        """A fresh read of the speaker. Never raises; cheap; wakes the writer only when the
        document or a session changed."""
        if not self._loaded:
            return  # until start-up has read what Kubernetes holds
        base = self._wanted if self._wanted is not None else self._written
        doc = build_status(state=state, applied=applied, peers=peers, previous=base, fib=fib,
                           node_sessions=self.node_sessions)  # fmt: skip
        self._count_node_sessions(doc)
        new = session_events(self.node_name, self._seen, doc, self.configured)
        self._events.extend((event, 0) for event in new)
        self._seen = doc
        if doc != self._written:
            self._wanted = doc
            self._wake.set()
        elif self._events:
            self._wake.set()
        else:
            self._wanted = None

    def _count_node_sessions(self, doc: Mapping[str, Any]) -> None:
        metrics = self._metrics
        for role in Role:
            mine = [p for p in doc.get("peers", ()) if p.get("role") == role.value]
            up = sum(1 for p in mine if p.get("state") == ESTABLISHED)
            metrics.node_sessions.labels(role=role.value).set(len(mine))
            metrics.node_sessions_established.labels(role=role.value).set(up)
        summary = doc.get("nodePeering") or {}
        metrics.route_reflector.set(1 if summary.get("routeReflector") else 0)

    def announce(self, event: SessionEvent) -> None:
        """An Event that is not about a status read (say, a peer left out of the plan): posted
        by the writer task like the others. Never raises."""
        self._events.append((event, 0))
        self._wake.set()

    async def load(self) -> None:
        """Read the stored status once, so that an agent restart neither rewrites an unchanged
        document nor re-announces sessions that were already up."""
        delay = 0.2
        while True:
            try:
                self._written = await self._writer.read_node_state()
                break
            except Exception as err:  # noqa: BLE001 - any API failure: retry, never give up the agent
                log.warning("cannot read BGPNodeState %s (retrying): %s", self.node_name, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_interval)
        self._seen = self._written
        self._loaded = True

    async def run(self) -> None:
        await self.load()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._post_events()
            if self._wanted is None:
                continue
            await asyncio.sleep(self._limit.wait_time())  # later reads fold into one write
            wanted = self._wanted
            if wanted is None or wanted == self._written:
                self._wanted = None
                continue
            self._limit.mark()
            try:
                await self._writer.write_node_state(wanted)
            except Exception as err:  # noqa: BLE001 - the API may fail any way; retry later
                self._metrics.status_writes.labels(result="error").inc()
                log.warning("cannot write BGPNodeState %s (retrying): %s", self.node_name, err)
                self._schedule_retry()
                continue
            self._metrics.status_writes.labels(result="ok").inc()
            self._written = wanted
            if self._wanted is wanted:
                self._wanted = None

    def _schedule_retry(self) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(self._retry_interval, self._wake.set)

    async def _post_events(self) -> None:
        events, self._events = self._events, []
        for i, (event, attempts) in enumerate(events):
            try:
                await self._writer.post_event(event)
            except Exception as err:  # noqa: BLE001 - the API may fail any way; retry later
                log.warning("cannot post %s on %s %s (attempt %d): %s", event.reason,
                            event.kind, event.object_name, attempts + 1, err)  # fmt: skip
                rest = events[i + 1 :]
                if attempts + 1 < EVENT_ATTEMPTS:
                    rest.insert(0, (event, attempts + 1))
                self._events[:0] = rest
                self._schedule_retry()
                return
            self._metrics.session_events.labels(reason=event.reason.value).inc()
            log.info("%s %s: %s: %s", event.kind, event.object_name, event.reason, event.message)


__all__ = [
    "EventType",
    "KubeWriter",
    "NodeStatusReporter",
    "RateLimit",
    "SessionEvent",
    "SessionReason",
    "build_status",
    "routes_status",
    "session_events",
]
