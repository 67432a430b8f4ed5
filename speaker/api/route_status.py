"""The receiving half in the control protocol: the `fib` summary of a `status` reply and the
`routes` request and reply (`kubgp-speaker routes`). Pure, like `speaker.api.ipc`, which
registers these messages in its dispatch tables.

    client -> speaker   {"type":"routes","prefix":"10.0.0.0/8"|null,"peer":"tor-a"|null,
                         "limit":1000}
    speaker -> client   {"type":"routes","fib":{...}|null,"total":N,"truncated":false,
                         "prefixes":[{"prefix","family","selected","installed","nextHops",
                                      "reason","paths":[{...}]}]}

`prefix` selects the received prefixes inside that CIDR (itself included); `peer` only that
peer's paths; at most `limit` prefixes are sent (in prefix order), `total` says how many
matched. A prefix's `reason` answers "why is this prefix not in my kernel" (null when it is);
each path says what the import policy did (`policy`, the deciding `rule` index, null when no
rule matched), whether its next hop resolves (`eligible`), whether it is the best path and in
the multipath set, and a `note` when it is not (rejected, looped, unreachable next hop, which
decision step it lost at). Field meanings: docs/route-import.md ("Visibility"). Parsers raise
`FieldError` naming the key; `speaker.api.ipc` turns that into its `IpcError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from speaker.api.fields import (
    JSON,
    Fields,
    any_string,
    boolean,
    integer,
    number,
    one_of,
    sequence,
)
from speaker.api.fields import prefix as cidr_prefix

MAX_COUNTER: Final = (1 << 63) - 1
DEFAULT_ROUTES_LIMIT: Final = 1000
MAX_ROUTES_LIMIT: Final = 100_000
SUMMARY_ITEMS: Final = 16
"""Prefixes listed in the status summary (not installed, and installed): bounded, so status
stays small and BGPNodeState stays under its size limit."""
FIB_STATES: Final = ("off", "on", "deferred")
POLICY_VERDICTS: Final = ("accept", "reject")


def _count(value: object, path: str) -> int:
    return integer(value, path, 0, MAX_COUNTER)


def _strings(value: object, path: str) -> tuple[str, ...]:
    return tuple(any_string(v, f"{path}[{i}]") for i, v in enumerate(sequence(value, path, JSON)))


def _limit(value: object, path: str) -> int:
    return integer(value, path, 1, MAX_ROUTES_LIMIT)


def _fields(doc: object, path: str, keys: Sequence[str], optional: Sequence[str] = ()) -> Fields:
    return Fields(doc, path, (*keys, *optional), required=keys, words=JSON)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteNote:
    """One prefix in the status summary and what to say about it."""

    prefix: str
    text: str

    def to_json(self) -> dict[str, object]:
        return {"prefix": self.prefix, "text": self.text}

    @classmethod
    def from_json(cls, doc: object, path: str) -> RouteNote:
        f = _fields(doc, path, ("prefix", "text"))
        return cls(
            prefix=any_string(f.raw("prefix"), f.at("prefix")),
            text=any_string(f.raw("text"), f.at("text")),
        )


_FIB_SUMMARY_KEYS = (
    "state",
    "table",
    "protocol",
    "metric",
    "maxPaths",
    "selected",
    "installed",
    "failed",
    "waitingFor",
    "deferredUntil",
    "notInstalled",
    "installedSample",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FibSummary:
    """The receiving half of a speaker, in `status` (present when some peer has import rules
    or `fib` is set). `state`: off (no `fib`: nothing is installed), on, or deferred (restarted
    with graceful restart: the previous run's routes stay in the kernel until End-of-RIB from
    `waiting_for` or `deferred_until`, Unix time). `selected` prefixes have a best path,
    `installed` routes of ours are in the kernel, `failed` ones the kernel refused."""

    state: str
    table: int | None = None
    protocol: int | None = None
    metric: int | None = None
    max_paths: int = 1
    selected: int = 0
    installed: int = 0
    failed: int = 0
    waiting_for: tuple[str, ...] = ()
    deferred_until: float | None = None
    not_installed: tuple[RouteNote, ...] = ()
    installed_sample: tuple[RouteNote, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "table": self.table,
            "protocol": self.protocol,
            "metric": self.metric,
            "maxPaths": self.max_paths,
            "selected": self.selected,
            "installed": self.installed,
            "failed": self.failed,
            "waitingFor": list(self.waiting_for),
            "deferredUntil": self.deferred_until,
            "notInstalled": [n.to_json() for n in self.not_installed],
            "installedSample": [n.to_json() for n in self.installed_sample],
        }

    @classmethod
    def from_json(cls, doc: object, path: str) -> FibSummary:
        f = _fields(doc, path, _FIB_SUMMARY_KEYS)

        def notes(key: str) -> tuple[RouteNote, ...]:
            raw = sequence(f.raw(key), f.at(key), JSON)
            return tuple(RouteNote.from_json(v, f"{f.at(key)}[{i}]") for i, v in enumerate(raw))

        return cls(
            state=one_of(f.raw("state"), f.at("state"), FIB_STATES),
            table=f.optional("table", _count),
            protocol=f.optional("protocol", _count),
            metric=f.optional("metric", _count),
            max_paths=_count(f.raw("maxPaths"), f.at("maxPaths")),
            selected=_count(f.raw("selected"), f.at("selected")),
            installed=_count(f.raw("installed"), f.at("installed")),
            failed=_count(f.raw("failed"), f.at("failed")),
            waiting_for=_strings(f.raw("waitingFor"), f.at("waitingFor")),
            deferred_until=f.optional("deferredUntil", number),
            not_installed=notes("notInstalled"),
            installed_sample=notes("installedSample"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePath:
    """One peer's path for a prefix, as received (before policy), and what became of it."""

    peer: str
    next_hop: str | None
    as_path: str  # "65001 65002 {65003,65004}"
    origin: str  # IGP, EGP, INCOMPLETE
    local_pref: int | None
    med: int | None
    communities: tuple[str, ...]
    large_communities: tuple[str, ...]
    stale: bool  # kept for a restarting peer (graceful restart helper)
    policy: str  # accept | reject
    rule: int | None  # the deciding import rule (index), None: no rule matched
    eligible: bool  # a candidate whose next hop resolves
    best: bool
    multipath: bool
    note: str | None  # why not best / not used, when it is not

    def to_json(self) -> dict[str, object]:
        return {
            "peer": self.peer,
            "nextHop": self.next_hop,
            "asPath": self.as_path,
            "origin": self.origin,
            "localPref": self.local_pref,
            "med": self.med,
            "communities": list(self.communities),
            "largeCommunities": list(self.large_communities),
            "stale": self.stale,
            "policy": self.policy,
            "rule": self.rule,
            "eligible": self.eligible,
            "best": self.best,
            "multipath": self.multipath,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, doc: object, path: str) -> RoutePath:
        keys = ("peer", "nextHop", "asPath", "origin", "localPref", "med", "communities",
                "largeCommunities", "stale", "policy", "rule", "eligible", "best", "multipath",
                "note")  # fmt: skip
        f = _fields(doc, path, keys)
        return cls(
            peer=any_string(f.raw("peer"), f.at("peer")),
            next_hop=f.optional("nextHop", any_string),
            as_path=any_string(f.raw("asPath"), f.at("asPath")),
            origin=any_string(f.raw("origin"), f.at("origin")),
            local_pref=f.optional("localPref", _count),
            med=f.optional("med", _count),
            communities=_strings(f.raw("communities"), f.at("communities")),
            large_communities=_strings(f.raw("largeCommunities"), f.at("largeCommunities")),
            stale=boolean(f.raw("stale"), f.at("stale")),
            policy=one_of(f.raw("policy"), f.at("policy"), POLICY_VERDICTS),
            rule=f.optional("rule", _count),
            eligible=boolean(f.raw("eligible"), f.at("eligible")),
            best=boolean(f.raw("best"), f.at("best")),
            multipath=boolean(f.raw("multipath"), f.at("multipath")),
            note=f.optional("note", any_string),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteEntry:
    """One received prefix: every peer's path, the selection, and the kernel's side."""

    prefix: str
    family: str
    selected: bool
    installed: bool
    next_hops: tuple[str, ...]  # of our kernel route (installed) or of the selection
    reason: str | None  # why it is not installed (None when it is)
    paths: tuple[RoutePath, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "prefix": self.prefix,
            "family": self.family,
            "selected": self.selected,
            "installed": self.installed,
            "nextHops": list(self.next_hops),
            "reason": self.reason,
            "paths": [p.to_json() for p in self.paths],
        }

    @classmethod
    def from_json(cls, doc: object, path: str) -> RouteEntry:
        keys = ("prefix", "family", "selected", "installed", "nextHops", "reason", "paths")
        f = _fields(doc, path, keys)
        raw = sequence(f.raw("paths"), f.at("paths"), JSON)
        return cls(
            prefix=any_string(f.raw("prefix"), f.at("prefix")),
            family=any_string(f.raw("family"), f.at("family")),
            selected=boolean(f.raw("selected"), f.at("selected")),
            installed=boolean(f.raw("installed"), f.at("installed")),
            next_hops=_strings(f.raw("nextHops"), f.at("nextHops")),
            reason=f.optional("reason", any_string),
            paths=tuple(RoutePath.from_json(v, f"{f.at('paths')}[{i}]") for i, v in enumerate(raw)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutesRequest:
    """client -> speaker: received routes and their fate."""

    prefix: str | None = None
    peer: str | None = None
    limit: int = DEFAULT_ROUTES_LIMIT
    TYPE: ClassVar[str] = "routes"

    def to_json(self) -> dict[str, object]:
        return {"type": self.TYPE, "prefix": self.prefix, "peer": self.peer, "limit": self.limit}

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> RoutesRequest:
        f = _fields(doc, "", ("type",), ("prefix", "peer", "limit"))
        return cls(
            prefix=f.optional("prefix", cidr_prefix),
            peer=f.optional("peer", any_string),
            limit=f.get("limit", _limit, DEFAULT_ROUTES_LIMIT),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Routes:
    """speaker -> client: the answer to a routes request."""

    fib: FibSummary | None
    total: int
    truncated: bool
    prefixes: tuple[RouteEntry, ...]
    TYPE: ClassVar[str] = "routes"

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.TYPE,
            "fib": None if self.fib is None else self.fib.to_json(),
            "total": self.total,
            "truncated": self.truncated,
            "prefixes": [e.to_json() for e in self.prefixes],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> Routes:
        f = _fields(doc, "", ("type", "fib", "total", "truncated", "prefixes"))
        raw = sequence(f.raw("prefixes"), "prefixes", JSON)
        return cls(
            fib=f.optional("fib", FibSummary.from_json),
            total=_count(f.raw("total"), "total"),
            truncated=boolean(f.raw("truncated"), "truncated"),
            prefixes=tuple(RouteEntry.from_json(v, f"prefixes[{i}]") for i, v in enumerate(raw)),
        )


__all__ = [
    "DEFAULT_ROUTES_LIMIT",
    "FIB_STATES",
    "MAX_ROUTES_LIMIT",
    "SUMMARY_ITEMS",
    "FibSummary",
    "RouteEntry",
    "RouteNote",
    "RoutePath",
    "Routes",
    "RoutesRequest",
]
