"""The controller's heart: `plan(snapshot, node_name) -> Plan(state, reasons)`, with no I/O.

From a `Snapshot` of the cluster it computes one node's desired speaker state
(`speaker.api.schema.DesiredState`) and a `Reason` for everything it left out or altered. The rules,
in the order they apply (docs/planner.md has the full table):

- Node: ASN from the `kubgp.io/asn` annotation, else `default_asn`; router id from
  `kubgp.io/router-id`, else the node's first IPv4 InternalIP. If either is invalid or missing the
  plan has no state (`state is None`): the agent must send nothing, so the speaker keeps what it
  has. Unknown node: no state either.
- BGPPeer: kept when its nodeSelector selects the node; a `passwordSecretRef` whose Secret or key
  is missing drops the peer (`PeerSecretMissing`), never a session without its password.
- BGPAdvertisement: applies when its nodeSelector selects the node and its peerSelector selects at
  least one kept peer; an empty peerSelector leaves the speaker's `peers` absent (every peer).
- Prefixes: pod CIDRs of the node; Service LoadBalancer ingress IPs (type LoadBalancer, class
  unset or `kubgp.io/bgp`), externalIPs and clusterIPs, each cut to the advertisement's
  aggregation length; a prefix no selected peer's family carries is dropped (`NoAddressFamily`).
- Traffic policy Local (external for LoadBalancer/External IPs, internal for ClusterIPs): only
  with a ready endpoint on this node; with only serving-but-terminating ones the prefix is kept
  with `asPathPrepend = DRAIN_AS_PATH_PREPEND` so the ToR prefers other nodes while it drains.
- Several advertisements yielding one prefix merge: peers union, communities and large
  communities union, highest localPreference, lowest MED, smallest AS-path prepend.

`NodePlanner` is the same function with memory: it caches each Service's contribution by the
identity of its (immutable) facts, so replanning after one Service change costs a pass over the
Services that changed, not a recomputation. How a Service is planned on this node depends only
on its node-independent *shape* (`controller.domain.snapshot.ServiceFacts.shape`: the
advertisements selecting it, which address kinds it has and their families, its traffic
policies) and on whether the node has a ready or a terminating endpoint of it; the planner
compiles each shape once into a `_Program` for its node and runs that per Service.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, NamedTuple

from controller.domain.node_peering import (
    NO_SESSIONS,
    Membership,
    NodeSessions,
    membership,
    node_sessions,
)
from controller.domain.objects import (
    ANNOTATION_ASN,
    ANNOTATION_ROUTER_ID,
    BGPAdvertisement,
    BGPPeer,
    Node,
)
from controller.domain.reasons import ObjectRef, Reason, ReasonCode
from controller.domain.snapshot import (
    KINDS,
    NOT_SELECTED_DETAIL,
    Key,
    KindShape,
    ServiceFacts,
    Shape,
    Snapshot,
)
from speaker.api.schema import (
    DEFAULT_PORT,
    FAMILY_IPV4,
    FAMILY_IPV6,
    Advertisement,
    DesiredState,
    Fib,
    GracefulRestart,
    Listen,
    Peer,
    family_of,
    prefix_sort_key,
)

DEFAULT_ASN: Final = 64512
OWN_NODE_ONLY: Final = (
    "the node agent watches only its own Node, so it knows no other member: run it with "
    "--all-nodes (chart value inClusterRouting.enabled)"
)
DRAIN_AS_PATH_PREPEND: Final = 3
UINT32_MAX: Final = 0xFFFFFFFF
MAX_PASSWORD_BYTES: Final = 80


class Plan(NamedTuple):
    """`state` None means: no valid state for this node; send nothing (the speaker keeps its
    last state). An empty `DesiredState` (no peers) means: withdraw everything."""

    state: DesiredState | None
    reasons: tuple[Reason, ...]


def plan(
    snapshot: Snapshot,
    node_name: str,
    *,
    default_asn: int = DEFAULT_ASN,
    fib: Fib | None = None,
    all_nodes: bool = True,
    always_compare_med: bool = False,
) -> Plan:
    """One node's desired speaker state and the reasons for what it left out. Pure. `fib`:
    the node agent's kernel route settings (--fib), passed through to the state, as is
    `always_compare_med` (--always-compare-med).
    `all_nodes` False: the snapshot holds only this node (an agent watching its own Node), so
    it plans no session to other nodes (saying why) rather than sessions to none."""
    return NodePlanner(
        node_name,
        default_asn=default_asn,
        fib=fib,
        all_nodes=all_nodes,
        always_compare_med=always_compare_med,
    ).plan(snapshot)


@dataclass(frozen=True, slots=True)
class _AdContext:
    """An advertisement as it applies to this node: the speaker peers it goes to (None = all)
    and the families those peers carry. `index`: its place among the node's contexts (they
    are in advertisement-name order), so that sets of contexts have one canonical order."""

    ad: BGPAdvertisement
    peers: tuple[str, ...] | None
    families: frozenset[str]
    index: int


_Contexts = tuple[_AdContext, ...]  # interned per planner: equal sets are the same tuple

# Locality of a Service on this node, as indexes into `_Program.variants`.
_READY: Final = 0
_DRAINING: Final = 1
_NO_LOCAL: Final = 2

# One step of a program: the Service's address (kind index, address index) announced as its
# host prefix (`suffix` "/32" or "/128") or aggregated to `length`, to `contexts`, with
# `prepend`.
_Step = tuple[int, int, str | None, int, _Contexts, int]

# Reasons a program yields, resolved per Service: (what, kind index, address index, length,
# context). What: the kind is unavailable, no local endpoint, draining, no peer carries the
# family, opted out, not selected.
_KIND, _NOLOCAL, _DRAIN, _FAMILY, _OPTOUT, _NOTSELECTED = range(6)
_ReasonSlot = tuple[int, int, int, int, _AdContext | None]
_Variant = tuple[tuple[_Step, ...], tuple[_ReasonSlot, ...]]


class _Program(NamedTuple):
    """How this node plans every Service of one shape: one variant, or three by locality
    (ready / draining / no local endpoint) when a wanted kind has traffic policy Local."""

    shape: Shape  # keeps the shape alive while it is a key by id
    local: bool
    variants: tuple[_Variant, ...]


# What one Service contributes to one prefix: the prefix, the advertisements (as they apply to
# this node) that announce it, and the AS-path prepend. The Advertisement value is built once
# per prefix, from the union of every contributing Service's contexts (`_remerge`), not once
# per Service.
_Contribution = tuple[str, _Contexts, int]
_NOTHING: Final[tuple[_Contribution, ...]] = ()
# A prefix's contributors: (key, contribution) when one Service announces it (the usual
# case), else a dict by Service key.
_Owners = tuple[Key, _Contribution] | dict[Key, _Contribution]


# One Service's contribution and reasons, valid while its facts are the very same object. A
# plain tuple: 10,000 of them are made by a first plan, and a NamedTuple costs 10x as much.
_Entry = tuple[ServiceFacts, tuple[_Contribution, ...], tuple[Reason, ...]]


class NodePlanner:
    """`plan()` for one node, remembering per-Service results between calls.

    A Service's cached contribution is reused while its facts are the very same object
    (snapshots share unchanged facts) and the node's advertisement contexts are equal; the
    merged prefix table, its sorted order and the Services' reasons are updated only where a
    contribution changed. Results are always those of a fresh `plan()` (a property test checks
    this).
    """

    def __init__(
        self,
        node_name: str,
        *,
        default_asn: int = DEFAULT_ASN,
        fib: Fib | None = None,
        all_nodes: bool = True,
        always_compare_med: bool = False,
    ) -> None:
        self.node_name = node_name
        self.default_asn = default_asn
        self.fib = fib
        self.always_compare_med = always_compare_med
        self.all_nodes = all_nodes
        # Node peering (BGPNodePeering): the membership and this node's sessions, reused while
        # what they were computed from is the very same objects (snapshots share them).
        self._membership: tuple[object, object, Membership] | None = None
        self._sessions: tuple[tuple[object, ...], NodeSessions] | None = None
        # The last plan's sessions to other nodes, with their roles (for status).
        self.node_sessions: NodeSessions = NO_SESSIONS
        self._reset(None)

    def _reset(self, context: _Contexts | None) -> None:
        self._context = context
        self._by_name: dict[str, _AdContext] = {c.ad.name: c for c in context or ()}
        self._programs: dict[int, _Program] = {}  # by id(shape)
        self._interned: dict[tuple[int, ...], _Contexts] = {}  # by context indexes
        self._unions: dict[tuple[int, int], _Contexts] = {}  # by ids of the two
        self._attributes: dict[int, _Attributes] = {}  # by id of an interned _Contexts
        self._entries: dict[Key, _Entry] = {}
        self._owners: dict[str, _Owners] = {}
        self._merged: dict[str, Advertisement] = {}
        self._order: list[str] = []  # keys of _merged, in prefix order
        self._advertisements: list[Advertisement] = []  # _merged's values in that order
        self._reason_keys: list[Key] = []  # Services with reasons, in key order
        self._reason_lists: list[tuple[Reason, ...]] = []  # their reasons, the same order
        self._reasons: tuple[Reason, ...] = ()  # all of them, flat
        self._token: object = None  # the snapshot the caches describe

    def plan(self, snapshot: Snapshot) -> Plan:
        reasons: list[Reason] = list(snapshot.invalid.values())
        node = snapshot.nodes.get(self.node_name)
        if node is None:
            ref_reason = Reason(
                ReasonCode.NodeNotFound,
                _node_ref(self.node_name),
                "no valid Node object of that name",
            )
            return Plan(None, (ref_reason, *reasons))
        identity = _node_identity(node, self.default_asn, reasons)
        if identity is None:
            return Plan(None, tuple(reasons))
        asn, router_id = identity

        peers = self._peers(snapshot, node, reasons)
        in_cluster = self._node_sessions(snapshot, node, asn, peers)
        reasons.extend(in_cluster.reasons)
        contexts = self._advertisement_contexts(
            snapshot, node, peers, reasons, explicit=bool(in_cluster.sessions)
        )
        pod_advertisements: dict[str, Advertisement] = {}
        self._pod_cidrs(node, contexts, pod_advertisements, reasons)
        for cidr, names in in_cluster.pod_targets:
            adv = Advertisement(prefix=cidr, peers=names)
            old = pod_advertisements.get(cidr)
            pod_advertisements[cidr] = adv if old is None else _merge(old, adv)

        service_contexts = tuple(c for c in contexts if c.ad.service_addresses)
        if service_contexts != self._context:
            self._reset(service_contexts)
        self._update_services(snapshot)
        reasons.extend(self._reasons)

        advertisements: Sequence[Advertisement] = self._advertisements
        if pod_advertisements:
            order = list(self._order)
            advertisements = list(advertisements)
            for prefix, adv in pod_advertisements.items():
                key = prefix_sort_key(prefix)
                i = bisect.bisect_left(order, key, key=prefix_sort_key)
                if i < len(order) and order[i] == prefix:
                    advertisements[i] = _merge(advertisements[i], adv)
                else:
                    order.insert(i, prefix)
                    advertisements.insert(i, adv)

        speaker_peers = tuple(p for _, p in peers.values())
        listen = None
        if any(p.passive for p in speaker_peers) or in_cluster.sessions:
            listen = Listen(address=_listen_address(node, in_cluster), port=DEFAULT_PORT)
        state = DesiredState(
            router_id=router_id,
            asn=asn,
            listen=listen,
            peers=speaker_peers + in_cluster.peers,
            advertisements=tuple(advertisements),
            fib=self.fib,
            always_compare_med=self.always_compare_med,
            cluster_id=in_cluster.cluster_id,
        )
        self.node_sessions = in_cluster
        return Plan(state, tuple(reasons))

    def _node_sessions(
        self,
        snapshot: Snapshot,
        node: Node,
        asn: int,
        peers: Mapping[str, tuple[BGPPeer, Peer]],
    ) -> NodeSessions:
        """This node's sessions to other nodes (controller.domain.node_peering), computed again
        only when the Nodes, the BGPNodePeerings, the Secrets or this node's BGPPeers changed."""
        if not snapshot.node_peerings:
            self._membership = self._sessions = None
            return NO_SESSIONS
        cached = self._membership
        if (
            cached is None
            or cached[0] is not snapshot.nodes
            or cached[1] is not snapshot.node_peerings
        ):
            members = membership(snapshot.nodes, snapshot.node_peerings, self.default_asn)
            self._membership = cached = (snapshot.nodes, snapshot.node_peerings, members)
        members = cached[2]
        taken = frozenset(p.address for _, p in peers.values())
        key = (members, node, asn, snapshot.secrets, snapshot.unreadable_secrets, taken)
        hit = self._sessions
        if hit is not None and all(a is b or a == b for a, b in zip(hit[0], key, strict=True)):
            return hit[1]
        found = node_sessions(
            node,
            asn,
            members=members,
            peerings=snapshot.node_peerings,
            secrets=snapshot.secrets,
            unreadable=snapshot.unreadable_secrets,
            taken=taken,
        )
        if not self.all_nodes and found.peering is not None:
            why = Reason(ReasonCode.NoNodeSession, found.peering.ref, OWN_NODE_ONLY)
            found = replace(found, sessions=(), pod_targets=(), cluster_id=None,
                            reasons=(*found.reasons, why))  # fmt: skip
        self._sessions = (key, found)
        return found

    # --- services: which changed, their contributions -------------------------------------

    def _update_services(self, snapshot: Snapshot) -> None:
        facts = snapshot.service_facts
        incremental = (
            snapshot.previous_token is self._token
            and snapshot.changed_services is not None
            and self._token is not None
        )
        self._token = snapshot.token
        if not self._entries:
            self._first_pass(facts)
            return
        candidates: Iterable[Key] = snapshot.changed_services if incremental else facts  # type: ignore[assignment]
        dirty: set[str] = set()
        changed_reasons: dict[Key, tuple[Reason, ...]] = {}
        entries = self._entries
        for key in candidates:
            f = facts.get(key)
            old = entries.get(key)
            if f is None:
                if old is not None:
                    del entries[key]
                    self._withdraw(key, old[1], dirty)
                    if old[2]:
                        changed_reasons[key] = ()
                continue
            if old is not None and old[0] is f:
                continue
            found, service_reasons = self._evaluate(f)
            if old is not None:
                self._withdraw(key, old[1], dirty)
                if old[2] != service_reasons:
                    changed_reasons[key] = service_reasons
            elif service_reasons:
                changed_reasons[key] = service_reasons
            self._register(key, found, dirty)
            entries[key] = (f, found, service_reasons)
        if not incremental and len(entries) > len(facts):
            for key in [k for k in entries if k not in facts]:
                old = entries.pop(key)
                self._withdraw(key, old[1], dirty)
                if old[2]:
                    changed_reasons[key] = ()
        for prefix in dirty:
            self._remerge(prefix)
        if changed_reasons:
            self._update_reasons(changed_reasons)

    def _first_pass(self, facts: Mapping[Key, ServiceFacts]) -> None:
        """Every Service, with nothing cached: register, then merge and sort once."""
        entries = self._entries
        owners = self._owners
        reason_keys = self._reason_keys
        reason_lists = self._reason_lists
        programs = self._programs
        node = self.node_name
        evaluate = self._evaluate
        for key, f in facts.items():  # in key order, so reasons come sorted
            # `_evaluate`, inlined for the usual case: at most one step.
            program = programs.get(id(f.shape))
            if program is None:
                program = programs[id(f.shape)] = self._compile(f.shape)
            if program.local:
                if node in f.ready_nodes:
                    steps, slots = program.variants[_READY]
                elif node in f.terminating_nodes:
                    steps, slots = program.variants[_DRAINING]
                else:
                    steps, slots = program.variants[_NO_LOCAL]
            else:
                steps, slots = program.variants[0]
            if len(steps) > 1:
                found, service_reasons = evaluate(f)
            else:
                if steps:
                    k, a, suffix, length, contexts, prepend = steps[0]
                    address = f.kinds[k].addresses[a]
                    prefix = (
                        address + suffix if suffix is not None else f.aggregated[(address, length)]
                    )
                    found = ((prefix, contexts, prepend),)
                else:
                    found = _NOTHING
                if not slots:
                    service_reasons = ()
                elif (
                    len(slots) == 1
                    and slots[0][0] == _NOLOCAL
                    and (no_local := f.no_local[slots[0][1]])
                ):  # the usual reason, straight from the facts
                    service_reasons = (no_local,)
                else:
                    service_reasons = self._resolve(f, slots)
            entries[key] = (f, found, service_reasons)
            if service_reasons:
                reason_keys.append(key)
                reason_lists.append(service_reasons)
            for contribution in found:
                prefix = contribution[0]
                had = owners.get(prefix)
                if had is None:
                    owners[prefix] = (key, contribution)
                elif isinstance(had, tuple):
                    owners[prefix] = {had[0]: had[1], key: contribution}
                else:
                    had[key] = contribution
        merged = self._merged
        attributes = self._attributes
        for prefix, had in owners.items():
            if isinstance(had, tuple):
                _, contexts, prepend = had[1]
                attrs = attributes.get(id(contexts))
                if attrs is None:
                    attrs = attributes[id(contexts)] = _merged_attributes(contexts)
                merged[prefix] = _make_advertisement(prefix, attrs, prepend)
            else:
                merged[prefix] = self._advertisement_of(prefix, had.values())
        self._order = sorted(merged, key=prefix_sort_key)
        self._advertisements = [merged[p] for p in self._order]
        self._reasons = tuple(itertools.chain.from_iterable(reason_lists))

    def _register(self, key: Key, found: tuple[_Contribution, ...], dirty: set[str]) -> None:
        owners = self._owners
        for contribution in found:
            prefix = contribution[0]
            had = owners.get(prefix)
            if had is None:
                owners[prefix] = (key, contribution)
            elif isinstance(had, tuple):
                owners[prefix] = {had[0]: had[1], key: contribution}
            else:
                had[key] = contribution
            dirty.add(prefix)

    def _withdraw(self, key: Key, found: tuple[_Contribution, ...], dirty: set[str]) -> None:
        owners = self._owners
        for contribution in found:
            prefix = contribution[0]
            had = owners[prefix]
            if isinstance(had, tuple):
                del owners[prefix]
            else:
                del had[key]
                if len(had) == 1:
                    owners[prefix] = next(iter(had.items()))
            dirty.add(prefix)

    def _remerge(self, prefix: str) -> None:
        """Rebuild one prefix's Advertisement from its contributors, keeping the order."""
        had = self._owners.get(prefix)
        order = self._order
        i = bisect.bisect_left(order, prefix_sort_key(prefix), key=prefix_sort_key)
        present = i < len(order) and order[i] == prefix
        if had is None:
            if present:
                del self._merged[prefix]
                del order[i]
                del self._advertisements[i]
            return
        if isinstance(had, tuple):
            adv = self._advertisement_of(prefix, (had[1],))
        else:
            adv = self._advertisement_of(prefix, had.values())
        self._merged[prefix] = adv
        if present:
            self._advertisements[i] = adv
        else:
            order.insert(i, prefix)
            self._advertisements.insert(i, adv)

    def _advertisement_of(self, prefix: str, found: Iterable[_Contribution]) -> Advertisement:
        it = iter(found)
        _, contexts, prepend = next(it)
        for _, other, other_prepend in it:
            contexts = self._union(contexts, other)
            prepend = min(prepend, other_prepend)
        attrs = self._attributes.get(id(contexts))
        if attrs is None:
            attrs = self._attributes[id(contexts)] = _merged_attributes(contexts)
        return _make_advertisement(prefix, attrs, prepend)

    def _update_reasons(self, changed: Mapping[Key, tuple[Reason, ...]]) -> None:
        keys = self._reason_keys
        lists = self._reason_lists
        for key, service_reasons in changed.items():
            i = bisect.bisect_left(keys, key)
            present = i < len(keys) and keys[i] == key
            if service_reasons:
                if present:
                    lists[i] = service_reasons
                else:
                    keys.insert(i, key)
                    lists.insert(i, service_reasons)
            elif present:
                del keys[i]
                del lists[i]
        self._reasons = tuple(itertools.chain.from_iterable(lists))

    # --- one Service --------------------------------------------------------------------------

    def _evaluate(self, f: ServiceFacts) -> tuple[tuple[_Contribution, ...], tuple[Reason, ...]]:
        """One Service on this node: its contributions and reasons."""
        shape = f.shape
        program = self._programs.get(id(shape))
        if program is None:
            program = self._programs[id(shape)] = self._compile(shape)
        if program.local:
            node = self.node_name
            if node in f.ready_nodes:
                steps, slots = program.variants[_READY]
            elif node in f.terminating_nodes:
                steps, slots = program.variants[_DRAINING]
            else:
                steps, slots = program.variants[_NO_LOCAL]
        else:
            steps, slots = program.variants[0]
        reasons: tuple[Reason, ...] = ()
        if slots:
            reasons = self._resolve(f, slots)
        if not steps:
            return _NOTHING, reasons
        kinds = f.kinds
        if len(steps) == 1:
            k, a, suffix, length, contexts, prepend = steps[0]
            address = kinds[k].addresses[a]
            prefix = address + suffix if suffix is not None else f.aggregated[(address, length)]
            return ((prefix, contexts, prepend),), reasons
        # A handful of prefixes: a list searched linearly beats a dict here.
        found: list[_Contribution] = []
        for k, a, suffix, length, contexts, prepend in steps:
            address = kinds[k].addresses[a]
            prefix = address + suffix if suffix is not None else f.aggregated[(address, length)]
            for i, (seen, seen_contexts, seen_prepend) in enumerate(found):
                if seen == prefix:
                    found[i] = (
                        prefix,
                        self._union(seen_contexts, contexts),
                        min(seen_prepend, prepend),
                    )
                    break
            else:
                found.append((prefix, contexts, prepend))
        return tuple(found), reasons

    def _resolve(self, f: ServiceFacts, slots: tuple[_ReasonSlot, ...]) -> tuple[Reason, ...]:
        out: list[Reason] = []
        ref = f.service.ref
        for what, k, a, length, ctx in slots:
            reason: Reason | None
            if what == _NOLOCAL:
                reason = f.no_local[k]
            elif what == _KIND:
                reason = f.kinds[k].unavailable
            elif what == _OPTOUT:
                reason = f.opted_out
            elif what == _NOTSELECTED:
                reason = f.not_selected or Reason(
                    ReasonCode.ServiceNotSelected, ref, NOT_SELECTED_DETAIL
                )
            elif what == _DRAIN:
                reason = Reason(ReasonCode.DrainingTerminatingEndpoint, ref, _DRAIN_DETAIL[k])
            else:
                assert ctx is not None
                address = f.kinds[k].addresses[a]
                host = 128 if ":" in address else 32
                prefix = f"{address}/{host}" if length == host else f.aggregated[(address, length)]
                reason = _no_family(ref, prefix, ctx)
            assert reason is not None
            out.append(reason)
        if len(out) > 1:
            return tuple(dict.fromkeys(out))
        return tuple(out)

    def _compile(self, shape: Shape) -> _Program:
        """What a shape means on this node (see `controller.domain.snapshot.ServiceFacts`):
        the same walk as planning one Service, over address positions instead of addresses."""
        ad_names, opted_out, k0, k1, k2 = shape
        kinds = (k0, k1, k2)
        if opted_out:
            return _Program(shape, False, (((), ((_OPTOUT, 0, 0, 0, None),)),))
        selecting = [self._by_name[n] for n in ad_names if n in self._by_name]
        if not selecting:
            if not self._by_name:
                return _Program(shape, False, (((), ()),))
            return _Program(shape, False, (((), ((_NOTSELECTED, 0, 0, 0, None),)),))
        by_kind: list[tuple[int, list[_AdContext]]] = []
        for k, kind in enumerate(KINDS):
            wanting = [c for c in selecting if kind in c.ad.service_addresses]
            if wanting:
                by_kind.append((k, wanting))
        local = False
        for k, _ in by_kind:
            unavailable, traffic_local, families = kinds[k]
            local = local or (not unavailable and traffic_local and bool(families))
        localities = (_READY, _DRAINING, _NO_LOCAL) if local else (_READY,)
        variants = tuple(self._walk(by_kind, kinds, locality) for locality in localities)
        return _Program(shape, local, variants)

    def _walk(
        self,
        by_kind: list[tuple[int, list[_AdContext]]],
        kinds: tuple[KindShape, KindShape, KindShape],
        locality: int,
    ) -> _Variant:
        groups: dict[tuple[int, int, int], tuple[list[_AdContext], int]] = {}
        slots: list[_ReasonSlot] = []
        for k, wanting in by_kind:
            unavailable, traffic_local, families = kinds[k]
            if unavailable:
                slots.append((_KIND, k, 0, 0, None))
                continue
            if not families:
                continue
            prepend = 0
            if traffic_local:
                if locality == _NO_LOCAL:
                    slots.append((_NOLOCAL, k, 0, 0, None))
                    continue
                if locality == _DRAINING:
                    prepend = DRAIN_AS_PATH_PREPEND
                    slots.append((_DRAIN, k, 0, 0, None))
            for ctx in wanting:
                ad = ctx.ad
                for a, is_ipv6 in enumerate(families):
                    if is_ipv6:
                        length, family = ad.aggregation_length_ipv6, FAMILY_IPV6
                    else:
                        length, family = ad.aggregation_length_ipv4, FAMILY_IPV4
                    if family not in ctx.families:
                        slots.append((_FAMILY, k, a, length, ctx))
                        continue
                    group = groups.get((k, a, length))
                    if group is None:
                        groups[(k, a, length)] = ([ctx], prepend)
                    else:
                        group[0].append(ctx)
        steps = []
        for (k, a, length), (contexts, prepend) in groups.items():
            host = length == (128 if kinds[k][2][a] else 32)
            suffix = f"/{length}" if host else None
            steps.append((k, a, suffix, length, self._intern(contexts), prepend))
        return tuple(steps), tuple(slots)

    def _intern(self, contexts: Iterable[_AdContext]) -> _Contexts:
        """The one tuple of these contexts (in context order)."""
        key = tuple(sorted({c.index for c in contexts}))
        out = self._interned.get(key)
        if out is None:
            assert self._context is not None
            out = self._interned[key] = tuple(self._context[i] for i in key)
        return out

    def _union(self, a: _Contexts, b: _Contexts) -> _Contexts:
        if a is b:
            return a
        key = (id(a), id(b))
        out = self._unions.get(key)
        if out is None:
            out = self._unions[key] = self._intern((*a, *b))
        return out

    # --- peers and advertisements ----------------------------------------------------------

    def _peers(
        self, snapshot: Snapshot, node: Node, reasons: list[Reason]
    ) -> dict[str, tuple[BGPPeer, Peer]]:
        out: dict[str, tuple[BGPPeer, Peer]] = {}
        for bgp_peer in snapshot.peers:
            if not bgp_peer.node_selector.matches(node.labels):
                reasons.append(
                    Reason(ReasonCode.NotSelected, bgp_peer.ref, "nodeSelector does not match")
                )
                continue
            password: str | None = None
            ref = bgp_peer.password_secret_ref
            if ref is not None:
                key = (ref.namespace, ref.name)
                secret = snapshot.secrets.get(key)
                where = f"Secret {ref.namespace}/{ref.name}"
                if secret is None:
                    unreadable = snapshot.unreadable_secrets.get(key)
                    detail = f"{where} not found" if unreadable is None else unreadable
                    reasons.append(Reason(ReasonCode.PeerSecretMissing, bgp_peer.ref, detail))
                    continue
                password = secret.data.get(ref.key)
                if password is None:
                    reasons.append(
                        Reason(
                            ReasonCode.PeerSecretMissing,
                            bgp_peer.ref,
                            f"{where} has no key {ref.key!r}",
                        )
                    )
                    continue
                if not password or len(password.encode()) > MAX_PASSWORD_BYTES:
                    reasons.append(
                        Reason(
                            ReasonCode.InvalidObject,
                            bgp_peer.ref,
                            f"{where} key {ref.key!r}: password must be 1..80 bytes",
                        )
                    )
                    continue
            out[bgp_peer.name] = (
                bgp_peer,
                Peer(
                    name=bgp_peer.name,
                    address=bgp_peer.peer_address,
                    port=bgp_peer.port,
                    asn=bgp_peer.peer_asn,
                    local_asn=bgp_peer.local_asn,
                    source_address=bgp_peer.source_address,
                    passive=bgp_peer.passive,
                    hold_time=bgp_peer.hold_time,
                    keepalive_time=bgp_peer.keepalive_time,
                    connect_retry_time=bgp_peer.connect_retry_time,
                    password=password,
                    ebgp_multihop=bgp_peer.ebgp_multihop,
                    ttl_security=bgp_peer.ttl_security,
                    graceful_restart=GracefulRestart(
                        enabled=bgp_peer.graceful_restart, restart_time=bgp_peer.restart_time
                    ),
                    families=bgp_peer.families,
                    max_prefixes=bgp_peer.max_prefixes,
                    bfd=bgp_peer.bfd,
                    import_rules=bgp_peer.import_rules,
                ),
            )
        return out

    def _advertisement_contexts(
        self,
        snapshot: Snapshot,
        node: Node,
        peers: Mapping[str, tuple[BGPPeer, Peer]],
        reasons: list[Reason],
        *,
        explicit: bool = False,
    ) -> tuple[_AdContext, ...]:
        """`explicit`: the node has sessions to other nodes, so an advertisement for every
        BGPPeer names them all (absent `peers` would mean every peer, the nodes too)."""
        out: list[_AdContext] = []
        for ad in snapshot.advertisements:
            if not ad.node_selector.matches(node.labels):
                reasons.append(
                    Reason(ReasonCode.NotSelected, ad.ref, "nodeSelector does not match")
                )
                continue
            chosen = [(n, p) for n, (bp, p) in peers.items() if ad.peer_selector.matches(bp.labels)]
            if not chosen:
                reasons.append(
                    Reason(
                        ReasonCode.NoPeerSelected,
                        ad.ref,
                        f"peerSelector selects none of this node's {len(peers)} peer(s)",
                    )
                )
                continue
            families = frozenset(f for _, p in chosen for f in p.families)
            names = (
                None
                if ad.peer_selector.is_empty and not explicit
                else tuple(sorted(n for n, _ in chosen))
            )
            out.append(_AdContext(ad, names, families, 0))
        # Only the ones announcing Services are indexed (the planner's service contexts).
        index = 0
        for i, ctx in enumerate(out):
            if ctx.ad.service_addresses:
                out[i] = _AdContext(ctx.ad, ctx.peers, ctx.families, index)
                index += 1
        return tuple(out)

    def _pod_cidrs(
        self,
        node: Node,
        contexts: Iterable[_AdContext],
        merged: dict[str, Advertisement],
        reasons: list[Reason],
    ) -> None:
        wanting = [c for c in contexts if c.ad.pod_cidrs]
        if wanting and not node.pod_cidrs:
            reasons.append(Reason(ReasonCode.NoPodCIDR, node.ref, "spec.podCIDRs is empty"))
        for ctx in wanting:
            for cidr in node.pod_cidrs:
                if family_of(cidr) not in ctx.families:
                    reasons.append(_no_family(node.ref, cidr, ctx))
                    continue
                adv = _advertisement(cidr, (ctx,), 0)
                old = merged.get(cidr)
                merged[cidr] = adv if old is None else _merge(old, adv)


_DRAIN_DETAIL: Final = tuple(
    f"{kind}: only terminating endpoints here; AS path prepended {DRAIN_AS_PATH_PREPEND}x"
    for kind in KINDS
)


def _node_ref(name: str) -> ObjectRef:
    return ObjectRef("Node", "", name)


def _node_identity(node: Node, default_asn: int, reasons: list[Reason]) -> tuple[int, str] | None:
    """The node's (ASN, router id), or None with a reason."""
    asn = default_asn
    raw_asn = node.annotations.get(ANNOTATION_ASN)
    if raw_asn is not None:
        if not raw_asn.isdigit() or not 1 <= int(raw_asn) <= UINT32_MAX:
            detail = f"annotation {ANNOTATION_ASN}={raw_asn!r}: must be 1..4294967295"
            reasons.append(Reason(ReasonCode.InvalidObject, node.ref, detail))
            return None
        asn = int(raw_asn)
    raw_id = node.annotations.get(ANNOTATION_ROUTER_ID)
    if raw_id is not None:
        try:
            return asn, str(ipaddress.IPv4Address(raw_id))
        except ValueError:
            detail = f"annotation {ANNOTATION_ROUTER_ID}={raw_id!r}: must be an IPv4 dotted quad"
            reasons.append(Reason(ReasonCode.InvalidObject, node.ref, detail))
            return None
    for ip in node.internal_ips:
        if family_of(ip) == FAMILY_IPV4:
            return asn, ip
    detail = f"no IPv4 InternalIP and no {ANNOTATION_ROUTER_ID} annotation"
    reasons.append(Reason(ReasonCode.NoRouterId, node.ref, detail))
    return None


def _listen_address(node: Node, in_cluster: NodeSessions) -> str:
    """The node's first IPv4 InternalIP; every address ("::", dual-stack) when it has IPv6
    sessions to other nodes, since the listener has one address and they must be accepted."""
    if any(s.peer.families == (FAMILY_IPV6,) for s in in_cluster.sessions):
        return "::"
    ipv4 = [ip for ip in node.internal_ips if family_of(ip) == FAMILY_IPV4]
    return (ipv4 or list(node.internal_ips) or ["0.0.0.0"])[0]


def _no_family(ref: ObjectRef, prefix: str, ctx: _AdContext) -> Reason:
    return Reason(
        ReasonCode.NoAddressFamily,
        ref,
        f"{prefix}: no peer selected by BGPAdvertisement {ctx.ad.name} carries {family_of(prefix)}",
    )


class _Attributes(NamedTuple):
    """What an Advertisement carries besides its prefix and AS-path prepend."""

    peers: tuple[str, ...] | None
    communities: tuple[str, ...]
    large_communities: tuple[str, ...]
    local_preference: int | None
    med: int | None


def _merged_attributes(contexts: Sequence[_AdContext]) -> _Attributes:
    """The attributes of a prefix that several BGPAdvertisements select: what `_merge` gives
    for their advertisements, without building the intermediate values (a view's communities
    are sorted and unique, so one advertisement's equal their union)."""
    if len(contexts) == 1:
        ad = contexts[0].ad
        return _Attributes(
            contexts[0].peers, ad.communities, ad.large_communities, ad.local_preference, ad.med
        )
    peers: tuple[str, ...] | None = None
    if all(c.peers is not None for c in contexts):
        peers = tuple(sorted({p for c in contexts for p in c.peers or ()}))
    prefs = [c.ad.local_preference for c in contexts if c.ad.local_preference is not None]
    meds = [c.ad.med for c in contexts if c.ad.med is not None]
    return _Attributes(
        peers,
        tuple(sorted({x for c in contexts for x in c.ad.communities})),
        tuple(sorted({x for c in contexts for x in c.ad.large_communities})),
        max(prefs) if prefs else None,
        min(meds) if meds else None,
    )


def _make_advertisement(prefix: str, a: _Attributes, prepend: int) -> Advertisement:
    return Advertisement(
        prefix=prefix,
        peers=a.peers,
        communities=a.communities,
        large_communities=a.large_communities,
        local_preference=a.local_preference,
        med=a.med,
        as_path_prepend=prepend,
    )


def _advertisement(prefix: str, contexts: Sequence[_AdContext], prepend: int) -> Advertisement:
    return _make_advertisement(prefix, _merged_attributes(contexts), prepend)


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a if a == b else tuple(sorted({*a, *b}))


def _pick(a: int | None, b: int | None, best: Callable[[int, int], int]) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return best(a, b)


def _merge(a: Advertisement, b: Advertisement) -> Advertisement:
    """One prefix from several advertisements (or Services): see the module docstring."""
    if a == b:
        return a
    peers = None if a.peers is None or b.peers is None else _union(a.peers, b.peers)
    return Advertisement(
        prefix=a.prefix,
        peers=peers,
        communities=_union(a.communities, b.communities),
        large_communities=_union(a.large_communities, b.large_communities),
        local_preference=_pick(a.local_preference, b.local_preference, max),
        med=_pick(a.med, b.med, min),
        as_path_prepend=min(a.as_path_prepend, b.as_path_prepend),
    )
