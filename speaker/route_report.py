"""`kubgp-speaker routes`: every received path of the prefixes asked for, with what became of it
(import policy verdict, loop, next hop, decision, multipath, kernel), built from the running
route service without changing anything. "Why is this prefix not in my kernel?" is the
prefix's `reason`; "why is this path not used?" is the path's `note`.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from speaker.api.communities import community_text
from speaker.api.route_status import RouteEntry, RoutePath, Routes, RoutesRequest
from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.decision import Candidate, Selection, Step
from speaker.bgp.rib.loc_rib import LocRib
from speaker.bgp.rib.received_attributes import (
    as_path,
    cluster_list,
    communities,
    large_communities,
    originator_id,
    path_asns,
)
from speaker.bgp.wire.attributes import (
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_SET,
    LocalPrefAttribute,
    MultiExitDiscAttribute,
    Origin,
    OriginAttribute,
    Segment,
)
from speaker.bgp.wire.context import Family, family_name
from speaker.bgp.wire.nlri import MAX_BITS, Prefix, prefix_to_int, prefix_to_str

if TYPE_CHECKING:
    from speaker.route_service import RouteService

STEP_TEXT = {
    Step.LocalPref: "LOCAL_PREF",
    Step.AsPathLength: "AS_PATH length",
    Step.Origin: "ORIGIN",
    Step.Med: "MED",
    Step.EbgpOverIbgp: "eBGP over iBGP",
    Step.NextHopCost: "next-hop cost",
    Step.RouterId: "router id",
    Step.ClusterListLength: "CLUSTER_LIST length",
    Step.PeerAddress: "peer address",
    Step.PeerName: "peer name",
}
ORIGINS = {Origin.IGP: "IGP", Origin.EGP: "EGP", Origin.INCOMPLETE: "INCOMPLETE"}

_Key = tuple[Family, Prefix]
_Received = tuple[str, ReceivedPath, bool]  # peer, path, stale


def as_path_text(segments: tuple[Segment, ...]) -> str:
    parts = []
    for seg_type, asns in segments:
        text = " ".join(str(a) for a in asns)
        if seg_type == AS_SET:
            text = "{" + ",".join(str(a) for a in asns) + "}"
        elif seg_type == AS_CONFED_SEQUENCE:
            text = f"({text})"
        elif seg_type == AS_CONFED_SET:
            text = "[" + ",".join(str(a) for a in asns) + "]"
        parts.append(text)
    return " ".join(parts)


def _address(octets: bytes | None) -> str | None:
    return None if octets is None else str(ipaddress.ip_address(octets))


def _matcher(text: str | None) -> tuple[int, int, int] | None:
    """(afi, length, key) of the filter CIDR; a prefix matches when it lies inside it."""
    if text is None:
        return None
    net = ipaddress.ip_network(text)
    bits = net.max_prefixlen
    return (
        (1 if net.version == 4 else 2),
        net.prefixlen,
        int(net.network_address) >> (bits - net.prefixlen),
    )


def _inside(prefix: Prefix, afi: int, match: tuple[int, int, int] | None) -> bool:
    if match is None:
        return True
    m_afi, m_len, key = match
    if afi != m_afi or prefix[0] < m_len:
        return False
    bits = MAX_BITS[afi]
    return prefix_to_int(prefix, bits) >> (bits - m_len) == key


def _sort_key(key: _Key) -> tuple[int, int, int]:
    family, prefix = key
    return family[0], prefix_to_int(prefix, MAX_BITS[family[0]]), prefix[0]


def _collect(svc: RouteService, request: RoutesRequest) -> dict[_Key, list[_Received]]:
    match = _matcher(request.prefix)
    found: dict[_Key, list[_Received]] = {}
    for name, session in sorted(svc.sessions().items()):
        if request.peer is not None and name != request.peer:
            continue
        rib_in = session.rib_in
        for family, table in rib_in.routes.items():
            stale = rib_in.stale.get(family, set())
            afi = family[0]
            for prefix, path in table.items():
                if _inside(prefix, afi, match):
                    found.setdefault((family, prefix), []).append((name, path, prefix in stale))
    return found


def build_routes(svc: RouteService, request: RoutesRequest) -> Routes:
    found = _collect(svc, request)
    keys = sorted(found, key=_sort_key)
    shown = keys[: request.limit]
    entries = tuple(_entry(svc, key, found[key]) for key in shown)
    return Routes(
        fib=svc.summary(),
        total=len(keys),
        truncated=len(keys) > len(shown),
        prefixes=entries,
    )


def _entry(svc: RouteService, key: _Key, received: list[_Received]) -> RouteEntry:
    family, prefix = key
    rib = svc.rib
    sel = rib.selected(family, prefix) if rib is not None else None
    candidates = {c.peer: c for c in rib.candidates(family, prefix)} if rib is not None else {}
    paths = tuple(
        _path(svc, rib, family, prefix, name, path, stale, candidates.get(name), sel)
        for name, path, stale in received
    )
    reason: str | None
    if sel is None:
        reason = _why_no_selection(paths)
        installed = False
    else:
        reason = svc.reason(family, prefix)
        installed = reason is None
    hops: tuple[bytes, ...] = ()
    if installed:
        hops = svc.kernel_hops(family, prefix) or ()
    elif sel is not None:
        hops = sel.next_hops
    return RouteEntry(
        prefix=prefix_to_str(prefix, family[0]),
        family=family_name(family),
        selected=sel is not None,
        installed=installed,
        next_hops=tuple(_address(h) or "" for h in hops),
        reason=reason,
        paths=paths,
    )


def _why_no_selection(paths: tuple[RoutePath, ...]) -> str:
    accepted = [p for p in paths if p.policy == "accept"]
    if not accepted:
        return "no path is accepted by import policy (no rule accepts it: accept nothing)"
    if not any(p.eligible for p in accepted):
        notes = sorted({p.note for p in accepted if p.note})
        return "no eligible path: " + "; ".join(notes)
    return "no eligible path"


def _path(  # noqa: PLR0917 - one call site, every value named there
    svc: RouteService,
    rib: LocRib | None,
    family: Family,
    prefix: Prefix,
    name: str,
    path: ReceivedPath,
    stale: bool,
    cand: Candidate | None,
    sel: Selection | None,
) -> RoutePath:
    policy = svc.policy_of(name)
    verdict = policy.evaluate(family[0], prefix, path) if policy is not None else None
    accepted = verdict is not None and verdict.path is not None
    shown = verdict.path if verdict is not None and verdict.path is not None else path
    attrs = shown.attributes
    eligible = cand is not None and rib is not None and rib.resolver.cost(cand.next_hop) is not None
    best = sel is not None and cand is not None and sel.best.peer == name
    multipath = sel is not None and any(c.peer == name for c in sel.paths)
    note: str | None = None
    if not accepted:
        rule = None if verdict is None else verdict.rule
        note = (
            f"rejected by import rule {rule}"
            if rule is not None
            else "no import rule matched: rejected (accept nothing by default)"
        )
    elif path.next_hop is None:
        note = "no next hop"
    elif cand is None:
        note = _loop_note(svc, shown)
    elif not eligible:
        note = (
            f"next hop {_address(cand.next_hop)} is not reachable: no connected or device "
            "route covers it (routes through a gateway do not count)"
        )
    elif sel is not None and not best:
        note = _lost_note(cand, sel, multipath, rib)
    return RoutePath(
        peer=name,
        next_hop=_address(path.next_hop),
        as_path=as_path_text(as_path(attrs)),
        origin=_origin(attrs),
        local_pref=_value(attrs, LocalPrefAttribute),
        med=_value(attrs, MultiExitDiscAttribute),
        communities=tuple(community_text(c) for c in communities(attrs)),
        large_communities=tuple(f"{a}:{b}:{c}" for a, b, c in large_communities(attrs)),
        stale=stale,
        policy="accept" if accepted else "reject",
        rule=None if verdict is None else verdict.rule,
        eligible=eligible,
        best=best,
        multipath=multipath,
        note=note,
    )


def _origin(attrs: tuple[object, ...]) -> str:
    for attr in attrs:
        if isinstance(attr, OriginAttribute):
            return ORIGINS.get(Origin(attr.value), str(attr.value))
    return "INCOMPLETE"


def _value(attrs: tuple[object, ...], kind: type) -> int | None:
    for attr in attrs:
        if isinstance(attr, kind):
            value: int = attr.value  # type: ignore[attr-defined]
            return value
    return None


def _loop_note(svc: RouteService, path: ReceivedPath) -> str:
    rib = svc.rib
    if rib is None:
        return "not in the Loc-RIB"
    opts = rib.options
    ours = path_asns(as_path(path.attributes)) & opts.local_asns
    if ours:
        return f"AS loop: our AS {min(ours)} is in the AS path"
    if originator_id(path.attributes) == opts.router_id:
        return "loop: ORIGINATOR_ID is our router id"
    if opts.cluster_id in cluster_list(path.attributes):
        return "loop: our cluster id is in CLUSTER_LIST"
    return "not in the Loc-RIB (the session is not Established yet)"


def _lost_note(cand: Candidate, sel: Selection, multipath: bool, rib: LocRib | None) -> str:
    best = sel.best
    if multipath:
        return f"in the multipath set with {best.peer} (best)"
    step = _first_worse(cand, best, rib)
    if step is None:
        return (
            f"equal to the best ({best.peer}) but not in the multipath set: maxPaths "
            f"{rib.options.max_paths if rib else 1}, or its next hop is already used"
        )
    return f"not best: {best.peer} wins at {STEP_TEXT[step]}"


def _first_worse(cand: Candidate, best: Candidate, rib: LocRib | None) -> Step | None:
    """The first decision step at which `best` beats `cand` (pairwise, for the note)."""
    always = rib.options.always_compare_med if rib is not None else False
    cost = rib.resolver.cost if rib is not None else (lambda _: 0)
    checks: list[tuple[Step, object, object]] = [
        (Step.LocalPref, -best.local_pref, -cand.local_pref),
        (Step.AsPathLength, best.as_path_length, cand.as_path_length),
        (Step.Origin, best.origin, cand.origin),
    ]
    if always or best.neighbor_as == cand.neighbor_as:
        checks.append((Step.Med, best.med, cand.med))
    checks += [
        (Step.EbgpOverIbgp, not best.ebgp, not cand.ebgp),
        (Step.NextHopCost, cost(best.next_hop) or 0, cost(cand.next_hop) or 0),
        (Step.RouterId, best.router_id, cand.router_id),
        (Step.ClusterListLength, best.cluster_list_length, cand.cluster_list_length),
        (Step.PeerAddress, best.address_key, cand.address_key),
        (Step.PeerName, best.peer, cand.peer),
    ]
    for step, b, c in checks:
        if b != c:
            return step if b < c else None  # type: ignore[operator]
    return None


__all__ = ["as_path_text", "build_routes"]
