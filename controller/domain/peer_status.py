"""BGPPeer status roll-up from the nodes' BGPNodeStates, as pure functions.

`rollup(peer, nodes, states)` says which nodes the peer's nodeSelector selects, which of them
report the session Established, and why each of the others is down; `peer_status(...)` turns
that into the status to write, or None when the current status already says it (the controller
writes only on change).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from controller.domain.conditions import Condition, name_list, set_condition
from controller.domain.objects import BGPPeer, InvalidObjectError, parse_bgp_peer

READY: Final = "Ready"
ESTABLISHED: Final = "Established"


def _map(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLabels:
    name: str
    labels: Mapping[str, str]


def parse_node_labels(raw: Mapping[str, Any]) -> NodeLabels:
    """Only what selection needs, leniently: a Node with an odd spec is still selectable."""
    meta = _map(raw, "metadata")
    return NodeLabels(
        name=str(meta.get("name")),
        labels={str(k): v for k, v in _map(meta, "labels").items() if isinstance(v, str)},
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSessions:
    """A BGPNodeState's per-peer session states (peer name -> FSM state)."""

    name: str
    sessions: Mapping[str, str]


def parse_node_state(raw: Mapping[str, Any]) -> NodeSessions:
    meta, status = _map(raw, "metadata"), _map(raw, "status")
    peers = status.get("peers")
    peers = peers if isinstance(peers, list) else []
    sessions = {
        str(p["name"]): str(p.get("state") or "Unknown")
        for p in peers
        if isinstance(p, Mapping) and isinstance(p.get("name"), str)
    }
    return NodeSessions(name=str(meta.get("name")), sessions=sessions)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollup:
    selected: tuple[str, ...]  # node names, sorted
    established: tuple[str, ...]
    down: tuple[tuple[str, str], ...]  # (node, why): its FSM state, or what is missing

    @property
    def condition(self) -> tuple[str, str, str]:
        """(status, reason, message) of the Ready condition."""
        if not self.selected:
            return ("False", "NoNodesSelected", "the nodeSelector selects no node")
        if not self.down:
            n = len(self.selected)
            return ("True", "Established", f"established on all {n} selected node(s)")
        return (
            "False",
            "SessionsDown",
            f"{len(self.established)}/{len(self.selected)} established; down on "
            + name_list([f"{node} ({why})" for node, why in self.down]),
        )


def rollup(
    peer: BGPPeer, nodes: Iterable[NodeLabels], states: Mapping[str, NodeSessions]
) -> Rollup:
    selected = sorted(n.name for n in nodes if peer.node_selector.matches(n.labels))
    established: list[str] = []
    down: list[tuple[str, str]] = []
    for node in selected:
        state = states.get(node)
        session = None if state is None else state.sessions.get(peer.name)
        if session == ESTABLISHED:
            established.append(node)
        elif state is None:
            down.append((node, "no BGPNodeState"))
        elif session is None:
            down.append((node, "no session configured"))
        else:
            down.append((node, session))
    return Rollup(selected=tuple(selected), established=tuple(established), down=tuple(down))


def peer_status(
    raw_peer: Mapping[str, Any],
    nodes: Iterable[NodeLabels],
    states: Mapping[str, NodeSessions],
    now: str,
) -> dict[str, Any] | None:
    """The BGPPeer's new status, or None when its current status already says it."""
    generation = _map(raw_peer, "metadata").get("generation")
    current = _map(raw_peer, "status")
    try:
        peer: BGPPeer | None = parse_bgp_peer(raw_peer)
    except InvalidObjectError as err:
        peer = None
        condition = Condition(
            type=READY,
            status="False",
            reason="InvalidSpec",
            message=err.detail,
            observed_generation=generation if isinstance(generation, int) else None,
        )
        selected = established = 0
    if peer is not None:
        result = rollup(peer, nodes, states)
        status, reason, message = result.condition
        condition = Condition(
            type=READY,
            status=status,
            reason=reason,
            message=message,
            observed_generation=generation if isinstance(generation, int) else None,
        )
        selected, established = len(result.selected), len(result.established)
    desired = {
        **current,
        "selectedNodes": selected,
        "establishedNodes": established,
        "conditions": set_condition(current.get("conditions"), condition, now),
    }
    return None if desired == dict(current) else desired
