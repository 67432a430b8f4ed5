"""What kubectl-kubgp shows, computed from raw objects with no I/O: the BGP sessions of every
node (from BGPNodeStates), one node's plan, and why each node does or does not announce a
Service. Each view is a plain dict (the `-o json|yaml` document) with a table rendering.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from controller.domain.objects import (
    ADDRESS_CLUSTER,
    ADDRESS_EXTERNAL,
    ADDRESS_LOAD_BALANCER,
    Service,
)
from controller.domain.planner import plan
from controller.domain.reasons import ObjectRef, Reason
from controller.domain.snapshot import Snapshot
from speaker.api.schema import DesiredState, family_of

Raw = Mapping[str, Any]
REDACTED: Final = "<redacted>"

# Reasons the plugin adds when the planner has nothing to say about a Service on a node
# (the planner only explains Services on nodes where some advertisement announces Services).
NO_PEERS: Final = "NoPeers"
NOT_ADVERTISED: Final = "NotAdvertised"


# --- tables -------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, as kubectl prints them; the last column is not
    padded."""
    all_rows = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in all_rows
    ).rstrip()


def age(since: str | None, now: datetime.datetime) -> str:
    """'3d4h', '5m12s' like kubectl's AGE; '-' when unknown."""
    if not since:
        return "-"
    try:
        moment = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return since
    seconds = max(0, int((now - moment).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


# --- status -------------------------------------------------------------------------------


def status_view(node_states: Iterable[Raw], nodes: Iterable[Raw]) -> dict[str, Any]:
    """Nodes x peers from the BGPNodeStates, the nodes that have none (no agent there yet, or
    it cannot write its state), and per BGPNodePeering its members, reflectors and
    node-to-node sessions (`node_peering_view`)."""
    node_states = list(node_states)
    reported: list[dict[str, Any]] = []
    for ns in sorted(node_states, key=lambda o: str(o["metadata"]["name"])):
        status = ns.get("status") or {}
        reported.append(
            {
                "node": ns["metadata"]["name"],
                "routerId": status.get("routerId"),
                "asn": status.get("asn"),
                "appliedGeneration": status.get("appliedGeneration"),
                "peers": [
                    {
                        "name": p.get("name"),
                        "address": p.get("address"),
                        "state": p.get("state"),
                        "since": p.get("since"),
                        "prefixesAdvertised": p.get("prefixesAdvertised", 0),
                        "prefixesReceived": p.get("prefixesReceived", 0),
                        "lastError": p.get("lastError", ""),
                    }
                    | ({"bfd": p["bfd"]} if isinstance(p.get("bfd"), dict) else {})
                    | {k: p[k] for k in ("node", "role") if isinstance(p.get(k), str)}
                    for p in sorted(status.get("peers") or (), key=lambda p: str(p.get("name")))
                ],
            }
        )
    names = {n["node"] for n in reported}
    missing = sorted(
        str(n["metadata"]["name"]) for n in nodes if n["metadata"]["name"] not in names
    )
    view: dict[str, Any] = {"nodes": reported, "nodesWithoutState": missing}
    peerings = node_peering_view(node_states)
    if peerings:
        view["nodePeerings"] = peerings
    return view


def node_peering_view(node_states: Iterable[Raw]) -> list[dict[str, Any]]:
    """Per BGPNodePeering, from its members' BGPNodeStates: mode, members, reflectors (and
    their cluster ids), and its node-to-node sessions counted once per pair of nodes. A pair
    is established when every session either end reports between them is; one that only one
    end reports is down ("not on NODE": that node's plan or speaker lacks it)."""
    peerings: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[tuple[str, str], dict[str, list[str]]]] = {}
    for ns in node_states:
        node = str(ns["metadata"]["name"])
        status = ns.get("status") or {}
        summary = status.get("nodePeering")
        if not isinstance(summary, Mapping) or not isinstance(summary.get("name"), str):
            continue
        name = summary["name"]
        entry = peerings.setdefault(
            name, {"name": name, "mode": summary.get("mode"), "members": [], "routeReflectors": []}
        )
        entry["members"].append(node)
        if summary.get("routeReflector"):
            entry["routeReflectors"].append(node)
            if isinstance(summary.get("clusterId"), str):
                entry.setdefault("clusterIds", {})[node] = summary["clusterId"]
        pairs = ends.setdefault(name, {})
        for p in status.get("peers") or ():
            other = p.get("node")
            if isinstance(other, str) and other != node:
                pair = (min(node, other), max(node, other))
                pairs.setdefault(pair, {}).setdefault(node, []).append(str(p.get("state")))
    out = []
    for name in sorted(peerings):
        entry = peerings[name]
        entry["members"].sort()
        entry["routeReflectors"].sort()
        down = []
        for (a, b), by_end in sorted(ends.get(name, {}).items()):
            missing = [n for n in (a, b) if n not in by_end and n in entry["members"]]
            states = sorted({s for seen in by_end.values() for s in seen})
            if missing or states != ["Established"]:
                why = [f"not on {n}" for n in missing] + [s for s in states if s != "Established"]
                down.append({"nodes": [a, b], "why": ", ".join(why)})
        entry["sessions"] = len(ends.get(name, {}))
        entry["establishedSessions"] = entry["sessions"] - len(down)
        entry["down"] = down
        out.append(entry)
    return out


def bfd_cell(bfd: Mapping[str, Any] | None) -> str:
    """`Up`; `Down(control-detection-time-expired),bgp-held`; `-` without BFD."""
    if not bfd:
        return "-"
    text = str(bfd.get("state", "?"))
    if text != "Up" and bfd.get("lastDiagnostic"):
        text += f"({bfd['lastDiagnostic']})"
    return text + (",bgp-held" if bfd.get("bgpHeld") else "")


def status_table(view: Mapping[str, Any], now: datetime.datetime) -> str:
    """One row per node and peer; the BFD column is there when some peer has BFD, the ROLE
    column when some session goes to another node; then one row per BGPNodePeering."""
    with_bfd = any("bfd" in p for node in view["nodes"] for p in node["peers"])
    with_role = any("role" in p for node in view["nodes"] for p in node["peers"])

    def bfd(cell: str) -> list[str]:
        return [cell] if with_bfd else []

    def role(cell: str) -> list[str]:
        return [cell] if with_role else []

    rows = []
    for node in view["nodes"]:
        if not node["peers"]:
            rows.append(
                [node["node"], "-", *role("-"), "-", "NoPeers", "-", "0", "0", *bfd("-"), "-"]
            )
        for p in node["peers"]:
            rows.append(
                [
                    node["node"],
                    str(p["name"]),
                    *role(str(p.get("role", "-"))),
                    str(p["address"] or "-"),
                    str(p["state"]),
                    age(p["since"], now),
                    str(p["prefixesAdvertised"]),
                    str(p["prefixesReceived"]),
                    *bfd(bfd_cell(p.get("bfd"))),
                    p["lastError"] or "-",
                ]
            )
    for name in view["nodesWithoutState"]:
        rows.append(
            [name, "-", *role("-"), "-", "NoNodeState", "-", "-", "-", *bfd("-"),
             "no BGPNodeState (agent?)"]
        )  # fmt: skip
    header = ["NODE", "PEER", *role("ROLE"), "ADDRESS", "STATE", "SINCE", "ADVERTISED",
              "RECEIVED", *bfd("BFD"), "LAST ERROR"]  # fmt: skip
    text = table(header, rows) if rows else "No nodes."
    peerings = view.get("nodePeerings") or ()
    if peerings:
        text += "\n\n" + node_peering_table(peerings)
    return text


NAMES_SHOWN: Final = 4


def _names(items: Sequence[str]) -> str:
    shown = ",".join(items[:NAMES_SHOWN])
    return (shown + f",+{len(items) - NAMES_SHOWN}") if len(items) > NAMES_SHOWN else shown or "-"


def node_peering_table(peerings: Iterable[Mapping[str, Any]]) -> str:
    """One row per BGPNodePeering: its mode, members, reflectors, sessions (pairs of nodes)
    and the first few that are down."""
    rows = []
    for p in peerings:
        cluster_ids = sorted(set((p.get("clusterIds") or {}).values()))
        down = [f"{a}-{b}({d['why']})" for d in p["down"] for a, b in [d["nodes"]]]
        rows.append([
            str(p["name"]),
            str(p.get("mode") or "-"),
            str(len(p["members"])),
            _names(p["routeReflectors"]),
            ",".join(cluster_ids) or "-",
            f"{p['establishedSessions']}/{p['sessions']}",
            _names(down),
        ])  # fmt: skip
    header = ["NODE PEERING", "MODE", "MEMBERS", "REFLECTORS", "CLUSTER ID", "ESTABLISHED",
              "DOWN"]  # fmt: skip
    return table(header, rows)


# --- routes -------------------------------------------------------------------------------

SPEAKER_ROUTES_HINT: Final = (
    "every received path, the policy verdict and why a prefix is not installed: in the speaker "
    "container on the node (find the pod with `kubectl get pods -A -l "
    "app.kubernetes.io/component=node --field-selector spec.nodeName={node}`), run "
    "`kubectl exec -n NAMESPACE POD -c speaker -- kubgp-speaker routes [PREFIX]`"
)


def routes_view(node: str, node_state: Raw | None) -> dict[str, Any]:
    """What the node's BGPNodeState says of its received routes: per peer received, accepted,
    best and installed; the kernel in numbers; at most 16 prefixes not installed (with the
    reason) and 16 installed ones. The node agent writes that bounded summary; the whole
    table is only in the speaker (`kubgp-speaker routes`, see `hint`)."""
    status = (node_state or {}).get("status") or {}
    peers = [
        {
            "name": p.get("name"),
            "state": p.get("state"),
            "prefixesReceived": p.get("prefixesReceived", 0),
            "prefixesAccepted": p.get("prefixesAccepted"),
            "prefixesBest": p.get("prefixesBest"),
            "prefixesInstalled": p.get("prefixesInstalled"),
        }
        for p in status.get("peers") or ()
        if isinstance(p, Mapping)
    ]
    return {
        "node": node,
        "nodeState": node_state is not None,
        "routes": status.get("routes"),
        "peers": peers,
        "hint": SPEAKER_ROUTES_HINT.format(node=node),
    }


def _number(value: object) -> str:
    return "-" if value is None else str(value)


def routes_table(view: Mapping[str, Any]) -> str:
    node = view["node"]
    if not view["nodeState"]:
        return f"No BGPNodeState for node {node} (no node agent there, or it cannot write)."
    routes = view["routes"]
    lines: list[str] = []
    if routes is None:
        lines.append(
            f"node {node}: no route import (no BGPPeer of this node has spec.import rules)"
        )
    else:
        if routes.get("state") == "off":
            head = "fib off (the node agent runs without --fib: selected, never installed)"
        else:
            head = (f"fib {routes.get('state')} (table {routes.get('table')}, protocol "
                    f"{routes.get('protocol')}, metric {routes.get('metric')}, maxPaths "
                    f"{routes.get('maxPaths')})")  # fmt: skip
        lines.append(f"node {node}: {head}: {routes.get('selected', 0)} selected, "
                     f"{routes.get('installed', 0)} installed, {routes.get('failed', 0)} "
                     "refused by the kernel")  # fmt: skip
        if routes.get("waitingFor"):
            lines.append("graceful restart: the previous run's routes stay until End-of-RIB "
                         f"from {', '.join(routes['waitingFor'])}")  # fmt: skip
    rows = [[str(p["name"]), str(p["state"]), _number(p["prefixesReceived"]),
             _number(p["prefixesAccepted"]), _number(p["prefixesBest"]),
             _number(p["prefixesInstalled"])] for p in view["peers"]]  # fmt: skip
    if rows:
        lines.append("")
        lines.append(table(["PEER", "STATE", "RECEIVED", "ACCEPTED", "BEST", "INSTALLED"], rows))
    if routes is not None:
        installed = routes.get("installedRoutes") or []
        if installed:
            lines.append("")
            lines.append(table(["INSTALLED (shortest first, at most 16)", "VIA"],
                               [[r["prefix"], r["via"]] for r in installed]))  # fmt: skip
        missing = routes.get("notInstalled") or []
        if missing:
            lines.append("")
            lines.append(table(["NOT INSTALLED (at most 16)", "WHY"],
                               [[r["prefix"], r["reason"]] for r in missing]))  # fmt: skip
    lines.append("")
    lines.append(f"More: {view['hint']}.")
    return "\n".join(lines)


# --- plan ---------------------------------------------------------------------------------


def state_document(state: DesiredState | None, *, show_secrets: bool) -> dict[str, Any] | None:
    if state is None:
        return None
    doc = state.to_dict()
    if not show_secrets:
        for peer in doc["peers"]:  # type: ignore[attr-defined]
            if "password" in peer:
                peer["password"] = REDACTED
    return doc


def plan_view(
    snapshot: Snapshot, node: str, *, default_asn: int, show_secrets: bool = False
) -> dict[str, Any]:
    """The node's desired speaker state and reasons, as the node's agent would compute them."""
    result = plan(snapshot, node, default_asn=default_asn)
    return {
        "node": node,
        "state": state_document(result.state, show_secrets=show_secrets),
        "reasons": [r.to_dict() for r in result.reasons],
    }


def plan_table(view: Mapping[str, Any]) -> str:
    state = view["state"]
    out = []
    if state is None:
        out.append(f"Node {view['node']}: no state (the speaker keeps what it has).")
    else:
        out.append(f"Node {view['node']}: router id {state['routerId']}, ASN {state['asn']}")
        out.append("")
        out.append(
            table(
                ["PEER", "ADDRESS", "ASN", "FAMILIES"],
                (
                    [p["name"], p["address"], str(p["asn"]), ",".join(p.get("families", []))]
                    for p in state["peers"]
                ),
            )
            if state["peers"]
            else "No peers."
        )
        out.append("")
        out.append(
            table(
                ["PREFIX", "PEERS", "COMMUNITIES", "PREPEND"],
                (
                    [
                        a["prefix"],
                        ",".join(a["peers"]) if "peers" in a else "(all)",
                        ",".join(a.get("communities", []) + a.get("largeCommunities", [])) or "-",
                        str(a.get("asPathPrepend", 0)),
                    ]
                    for a in state["advertisements"]
                ),
            )
            if state["advertisements"]
            else "No advertisements."
        )
    if view["reasons"]:
        out.append("")
        out.append(table(["REASON", "OBJECT", "DETAIL"], (_reason_row(r) for r in view["reasons"])))
    return "\n".join(out)


def _reason_row(r: Mapping[str, str]) -> list[str]:
    ns = r.get("namespace")
    obj = f"{r['kind']} {ns}/{r['name']}" if ns else f"{r['kind']} {r['name']}"
    return [r["reason"], obj, r.get("detail", "") or "-"]


# --- explain service ----------------------------------------------------------------------


def service_addresses(service: Service) -> list[tuple[str, str]]:
    """(kind, address) of every address kubgp could announce for the Service."""
    return (
        [(ADDRESS_LOAD_BALANCER, a) for a in service.load_balancer_ips]
        + [(ADDRESS_EXTERNAL, a) for a in service.external_ips]
        + [(ADDRESS_CLUSTER, a) for a in service.cluster_ips]
    )


def explain_view(
    snapshot: Snapshot, namespace: str, name: str, *, default_asn: int
) -> dict[str, Any] | None:
    """Per node: the Service's prefixes it announces and to which peers, or why it does not.
    None when the Service is not in the snapshot (unknown, or it did not parse)."""
    service = snapshot.services.get((namespace, name))
    ref = ObjectRef("Service", namespace, name)
    if service is None:
        invalid = snapshot.invalid.get(ref)
        if invalid is None:
            return None
        return {
            "service": f"{namespace}/{name}",
            "addresses": [],
            "nodes": [],
            "reasons": [invalid.to_dict()],
        }
    addresses = service_addresses(service)
    networks = [ipaddress.ip_address(a) for _, a in addresses]
    nodes = []
    for node in sorted(snapshot.nodes):
        result = plan(snapshot, node, default_asn=default_asn)
        mine = [r for r in result.reasons if r.ref == ref]
        entry: dict[str, Any] = {"node": node, "announces": [], "reasons": []}
        if result.state is None:
            entry["reasons"] = [r.to_dict() for r in result.reasons if r.ref.kind == "Node"]
            nodes.append(entry)
            continue
        state = result.state
        for ad in state.advertisements:
            net = ipaddress.ip_network(ad.prefix)
            if not any(a in net for a in networks):
                continue
            peers = (
                list(ad.peers)
                if ad.peers is not None
                else [p.name for p in state.peers if family_of(ad.prefix) in p.families]
            )
            entry["announces"].append(
                {"prefix": ad.prefix, "peers": peers, "asPathPrepend": ad.as_path_prepend}
            )
        entry["reasons"] = [r.to_dict() for r in mine]
        if not entry["announces"] and not mine:
            entry["reasons"] = [_why_not(state, result.reasons, ref).to_dict()]
        nodes.append(entry)
    return {
        "service": f"{namespace}/{name}",
        "addresses": [{"kind": k, "address": a} for k, a in addresses],
        "nodes": nodes,
        "reasons": [],
    }


def _why_not(state: DesiredState, reasons: Sequence[Reason], ref: ObjectRef) -> _Note:
    if not state.peers:
        return _Note(NO_PEERS, ref, "no BGPPeer selects this node (or its Secret is missing)")
    ads = sorted(
        {f"{r.ref.name} ({r.code.value})" for r in reasons if r.ref.kind == "BGPAdvertisement"}
    )
    detail = "no BGPAdvertisement on this node announces this Service's addresses"
    if ads:
        detail += "; skipped here: " + ", ".join(ads)
    return _Note(NOT_ADVERTISED, ref, detail)


class _Note:
    """A reason the plugin adds (not a planner ReasonCode)."""

    def __init__(self, code: str, ref: ObjectRef, detail: str) -> None:
        self.code, self.ref, self.detail = code, ref, detail

    def to_dict(self) -> dict[str, str]:
        return {
            "reason": self.code,
            "kind": self.ref.kind,
            "namespace": self.ref.namespace,
            "name": self.ref.name,
            "detail": self.detail,
        }


def explain_table(view: Mapping[str, Any]) -> str:
    lines = [f"Service {view['service']}"]
    if view["addresses"]:
        lines.append(
            "Addresses: " + ", ".join(f"{a['address']} ({a['kind']})" for a in view["addresses"])
        )
    for r in view["reasons"]:
        lines.append(f"{r['reason']}: {r.get('detail', '')}")
    if view["nodes"]:
        lines.append("")
        rows = []
        for n in view["nodes"]:
            for a in n["announces"]:
                note = f"prepend {a['asPathPrepend']}" if a["asPathPrepend"] else "-"
                rows.append([n["node"], a["prefix"], ",".join(a["peers"]) or "-", note])
            if not n["announces"]:
                for r in n["reasons"] or [{"reason": "-", "detail": ""}]:
                    rows.append([n["node"], "-", "-", f"{r['reason']}: {r.get('detail', '')}"])
        lines.append(table(["NODE", "ANNOUNCES", "TO PEERS", "REASON"], rows))
    return "\n".join(lines)
