"""Import policy: which received routes of one peer may enter the Loc-RIB, and with what changes.

An `ImportPolicy` is an ordered list of `ImportRule`s; the first rule whose conditions all hold
decides (accept or reject). **No rule, or no rule matching, rejects**: a node never installs a
route it was not told to take.

Conditions (all given ones must hold):
- `prefix`: a `PrefixMatch`, the CIDR with a length range (`ge`/`le`, as in FRR prefix lists:
  without them only the exact length matches); it also restricts the rule to that family.
- `communities` / `large_communities`: every listed value is carried by the route.
- `as_path_contains`: every listed ASN appears somewhere in the AS path.
- `origin_asn`: the AS that originated the route (the last AS of the path) is this one.
Actions of an accepting rule: `set_local_preference`, `add_communities`, `add_large_communities`.

Evaluation is on wire values (the prefix as on the wire, communities as ints) and is split so
the per-prefix part is small: the attribute conditions are evaluated once per distinct
`ReceivedPath` object (every prefix of one UPDATE shares it) into a short list of rules that can
still match, each with its outcome prepared; per prefix only the prefix condition runs.
Rules that name one exact prefix and no attribute condition (what a node's peering with other
nodes is made of: one rule per pod CIDR, docs/in-cluster-routing.md) are not in that list but
in a dict by prefix: there a path often carries a single prefix (each node's route has its own
ORIGINATOR_ID and next hop), so a per-path pass over hundreds of rules would be the whole cost.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.received_attributes import (
    as_path,
    communities,
    large_communities,
    origin_as,
    path_asns,
)
from speaker.bgp.wire.attributes import (
    Attribute,
    CommunitiesAttribute,
    LargeCommunitiesAttribute,
    LargeCommunity,
    LocalPrefAttribute,
)
from speaker.bgp.wire.nlri import MAX_BITS, Prefix, prefix_from_int

PLAN_CACHE_SIZE = 8192  # distinct path objects whose rule plans are kept


class Action(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefixMatch:
    """`network/length` with lengths `ge..le` (both default to `length`)."""

    afi: int
    network: int  # the address as an int, host bits zero
    length: int
    ge: int
    le: int

    def __post_init__(self) -> None:
        bits = MAX_BITS.get(self.afi)
        if bits is None:
            raise ValueError(f"unknown AFI {self.afi}")
        if not 0 <= self.length <= self.ge <= self.le <= bits:
            raise ValueError(
                f"prefix lengths must satisfy {self.length} <= ge ({self.ge}) <= le ({self.le})"
                f" <= {bits}"
            )
        if self.network & ((1 << (bits - self.length)) - 1):
            raise ValueError("host bits set in the prefix")

    @property
    def key(self) -> int:
        """The network's first `length` bits."""
        return self.network >> (MAX_BITS[self.afi] - self.length)

    def matches(self, afi: int, prefix: Prefix) -> bool:
        """Readable reference of the check `ImportPolicy.evaluate` inlines."""
        length, octets = prefix[0], prefix[1:]
        if afi != self.afi or not self.ge <= length <= self.le:
            return False
        return int.from_bytes(octets, "big") >> (8 * len(octets) - self.length) == self.key


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportRule:
    action: Action
    prefix: PrefixMatch | None = None
    communities: frozenset[int] = frozenset()
    large_communities: frozenset[LargeCommunity] = frozenset()
    as_path_contains: frozenset[int] = frozenset()
    origin_asn: int | None = None
    set_local_preference: int | None = None
    add_communities: tuple[int, ...] = ()
    add_large_communities: tuple[LargeCommunity, ...] = ()

    def __post_init__(self) -> None:
        if self.action is Action.REJECT and self.modifies:
            raise ValueError("a rejecting rule cannot set attributes")

    @property
    def modifies(self) -> bool:
        return bool(
            self.set_local_preference is not None
            or self.add_communities
            or self.add_large_communities
        )


@dataclass(frozen=True, slots=True, eq=False)
class Verdict:
    """What the policy decided for one route: `path` is what enters the Loc-RIB (the received
    path, or a copy with the rule's actions applied), None when rejected. `rule` is the index of
    the deciding rule, None when no rule matched (rejected by default)."""

    rule: int | None
    path: ReceivedPath | None

    @property
    def accepted(self) -> bool:
        return self.path is not None


NO_MATCH = Verdict(None, None)

# Per rule that can still match a path: (prefix check or None, outcome). The prefix check is
# (afi, length, key, ge, le), inlined in `evaluate`.
_PrefixCheck = tuple[int, int, int, int, int]
_Plan = tuple[tuple[_PrefixCheck | None, Verdict], ...]


def _with_actions(rule: ImportRule, path: ReceivedPath) -> ReceivedPath:
    if not rule.modifies:
        return path
    attrs: list[Attribute] = []
    have_comm = have_large = False
    for attr in path.attributes:
        if isinstance(attr, LocalPrefAttribute) and rule.set_local_preference is not None:
            continue
        if isinstance(attr, CommunitiesAttribute) and rule.add_communities:
            have_comm = True
            extra = tuple(c for c in dict.fromkeys(rule.add_communities) if c not in attr.values)
            attrs.append(CommunitiesAttribute(attr.values + extra))
        elif isinstance(attr, LargeCommunitiesAttribute) and rule.add_large_communities:
            have_large = True
            more = tuple(
                c for c in dict.fromkeys(rule.add_large_communities) if c not in attr.values
            )
            attrs.append(LargeCommunitiesAttribute(attr.values + more))
        else:
            attrs.append(attr)
    if rule.set_local_preference is not None:
        attrs.append(LocalPrefAttribute(rule.set_local_preference))
    if rule.add_communities and not have_comm:
        attrs.append(CommunitiesAttribute(tuple(dict.fromkeys(rule.add_communities))))
    if rule.add_large_communities and not have_large:
        attrs.append(LargeCommunitiesAttribute(tuple(dict.fromkeys(rule.add_large_communities))))
    attrs.sort(key=lambda a: a.type_code)
    return replace(path, attributes=tuple(attrs))


class ImportPolicy:
    """One peer's ordered import rules. Pure; caches per-path work (see the module doc)."""

    __slots__ = ("_exact", "_paths", "_scan", "rules")

    def __init__(self, rules: Sequence[ImportRule] = ()) -> None:
        self.rules: tuple[ImportRule, ...] = tuple(rules)
        # exact-prefix rules without attribute conditions: (afi, prefix) -> first index
        self._exact: dict[tuple[int, Prefix], int] = {}
        self._scan: tuple[int, ...] = ()  # the other rules, in order: the per-path plan
        scan: list[int] = []
        for index, rule in enumerate(self.rules):
            pm = rule.prefix
            if pm is not None and pm.ge == pm.le == pm.length and not _conditional(rule):
                wire = prefix_from_int(pm.network, pm.length, MAX_BITS[pm.afi])
                self._exact.setdefault((pm.afi, wire), index)
            else:
                scan.append(index)
        self._scan = tuple(scan)
        # per path: the plan of the scanned rules, and the exact rules' verdicts made for it
        self._paths: dict[int, tuple[ReceivedPath, _Plan, dict[int, Verdict]]] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImportPolicy) and other.rules == self.rules

    def __hash__(self) -> int:
        return hash(self.rules)

    def __repr__(self) -> str:
        return f"ImportPolicy({len(self.rules)} rules)"

    def _plan(self, path: ReceivedPath) -> _Plan:
        attrs = path.attributes
        comms = frozenset(communities(attrs))
        larges = frozenset(large_communities(attrs))
        segments = as_path(attrs)
        asns = path_asns(segments)
        origin = origin_as(segments)
        plan: list[tuple[_PrefixCheck | None, Verdict]] = []
        for index in self._scan:
            rule = self.rules[index]
            if not (
                rule.communities <= comms
                and rule.large_communities <= larges
                and rule.as_path_contains <= asns
                and (rule.origin_asn is None or rule.origin_asn == origin)
            ):
                continue
            accepted = rule.action is Action.ACCEPT
            verdict = Verdict(index, _with_actions(rule, path) if accepted else None)
            pm = rule.prefix
            check = None if pm is None else (pm.afi, pm.length, pm.key, pm.ge, pm.le)
            plan.append((check, verdict))
            if check is None:
                break  # matches every prefix: later rules can never be reached
        return tuple(plan)

    def evaluate(self, afi: int, prefix: Prefix, path: ReceivedPath) -> Verdict:
        """The verdict for `prefix` of address family `afi` received with `path`."""
        if not self.rules:
            return NO_MATCH
        cached = self._paths.get(id(path))
        if cached is None or cached[0] is not path:
            if len(self._paths) >= PLAN_CACHE_SIZE:
                self._paths.clear()
            cached = self._paths[id(path)] = (path, self._plan(path), {})
        _, plan, made = cached
        exact = self._exact.get((afi, prefix), -1) if self._exact else -1
        length, octets = prefix[0], prefix[1:]
        for check, verdict in plan:
            if exact >= 0 and verdict.rule is not None and verdict.rule > exact:
                break  # the exact rule comes first
            if check is None:
                return verdict
            r_afi, r_len, key, ge, le = check
            if (
                r_afi == afi
                and ge <= length <= le
                and (not r_len or int.from_bytes(octets, "big") >> (8 * len(octets) - r_len) == key)
            ):
                return verdict
        if exact < 0:
            return NO_MATCH
        found = made.get(exact)
        if found is None:
            rule = self.rules[exact]
            accepted = rule.action is Action.ACCEPT
            found = made[exact] = Verdict(exact, _with_actions(rule, path) if accepted else None)
        return found


def _conditional(rule: ImportRule) -> bool:
    """The rule looks at the path's attributes (not only the prefix)."""
    return bool(
        rule.communities
        or rule.large_communities
        or rule.as_path_contains
        or rule.origin_asn is not None
    )
