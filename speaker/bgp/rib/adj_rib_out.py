"""Adj-RIB-Out: what one session has announced, and the difference to what it should announce.

Prefixes are NLRI keys: the prefix as on the wire, a length octet and then ceil(length / 8)
octets (`Prefix`, the form speaker/bgp/wire/nlri.py decodes to); the UPDATE builder packs them
as they are. A session's desired routes are a `Desired`: per family a `FamilyTable` (`routes`,
{key: value}, and `counts`, how many keys each value has) that every session of a state shares,
and per family a `Resolve`, what a value means to this session: the `PathAttributes` to send, or
None (not for this peer). The runtime's values are its advertisements' attribute sets, so one
table of 100k routes serves every peer, and the attributes of each peer are worked out once per
attribute set, not once per route.

The Adj-RIB-Out keeps the tables as last sent, shared rather than copied: a change is worked
out against them, and when the runtime changes a shared table in place (a delta) it passes the
changed keys along (`changed`), so that costs the size of the change, not of the table. A plain
table ({family: {prefix: PathAttributes}}, `Table`) is taken too (`Desired.of`).

Changes are grouped by attribute set and packed by `UpdateBuilder` into the fewest UPDATEs.
`PathAttributes.next_hop` None means "self": the session's local address, resolved when
encoding (the same desired table serves every session; only the bytes differ).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from speaker.bgp.rib.update_builder import UpdateBuilder
from speaker.bgp.wire.attributes import Attribute
from speaker.bgp.wire.context import AFI_IPV4, IPV4_UNICAST, Family
from speaker.bgp.wire.nlri import Prefix

Nlri = Prefix
"""One prefix as on the wire (RFC 4271 §4.3): a length octet, then the prefix octets."""


@dataclass(frozen=True, slots=True)
class PathAttributes:
    """One attribute set as sent: everything but NEXT_HOP/MP_*, plus the next hop (None = self)."""

    attributes: tuple[Attribute, ...]
    next_hop: bytes | None = None


class AttributeInterner:
    """Hands out one shared `PathAttributes` object per distinct value."""

    __slots__ = ("_table",)

    def __init__(self) -> None:
        self._table: dict[PathAttributes, PathAttributes] = {}

    def intern(self, value: PathAttributes) -> PathAttributes:
        return self._table.setdefault(value, value)

    def __len__(self) -> int:
        return len(self._table)


Table = Mapping[Family, Mapping[Prefix, PathAttributes]]
"""The plain form of a desired Adj-RIB-Out."""

Resolve = Callable[[Any], PathAttributes | None]


class FamilyTable(Protocol):
    """One family's desired routes: {NLRI key: value} and how many keys have each value.
    Values are hashable and compared by identity first (interned)."""

    @property
    def routes(self) -> Mapping[Nlri, Hashable]: ...

    @property
    def counts(self) -> Mapping[Any, int]: ...


class PlainTable:
    """A `FamilyTable` whose values are `PathAttributes` themselves."""

    __slots__ = ("counts", "routes")

    def __init__(self, routes: dict[Nlri, PathAttributes]) -> None:
        self.routes = routes
        self.counts: Counter[PathAttributes] = Counter(routes.values())


def _as_is(value: PathAttributes) -> PathAttributes:
    return value


class Desired:
    """What one session should announce: per family the (shared) table and its `Resolve`
    (what each value means to this session; the values as they are when not given)."""

    __slots__ = ("resolvers", "tables")

    def __init__(
        self,
        tables: Mapping[Family, FamilyTable],
        resolvers: Mapping[Family, Resolve] | None = None,
    ) -> None:
        self.tables = tables
        self.resolvers: Mapping[Family, Resolve] = resolvers if resolvers is not None else {}

    def resolver(self, family: Family) -> Resolve:
        return self.resolvers.get(family, _as_is)

    @classmethod
    def of(cls, table: Table) -> Desired:
        """From a plain table (prefixes as keys, values `PathAttributes`)."""
        return cls({family: PlainTable(dict(routes)) for family, routes in table.items()})

    def families(self) -> Iterable[Family]:
        return self.tables.keys()

    def plain(self) -> dict[Family, dict[Prefix, PathAttributes]]:
        """The plain form: every route this session is to announce, with its attributes."""
        return {f: resolved_keys(t, self.resolver(f)) for f, t in self.tables.items()}


def resolved_keys(table: FamilyTable, resolve: Resolve) -> dict[Nlri, PathAttributes]:
    """{key: attributes} of every route of `table` that means something to the session."""
    meaning = {v: resolve(v) for v in table.counts}
    out: dict[Nlri, PathAttributes] = {}
    for key, value in table.routes.items():
        attrs = meaning[value]
        if attrs is not None:
            out[key] = attrs
    return out


EMPTY = Desired({})


@dataclass(slots=True)
class RibChange:
    """What to send: withdrawals per family, announcements per family grouped by attribute set;
    prefixes as NLRI keys."""

    withdrawn: dict[Family, list[Nlri]] = field(default_factory=dict)
    announced: dict[Family, dict[PathAttributes, list[Nlri]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.withdrawn.values()) or any(self.announced.values())

    @property
    def counts(self) -> tuple[int, int]:
        """(prefixes announced, prefixes withdrawn)."""
        ann = sum(len(p) for groups in self.announced.values() for p in groups.values())
        return ann, sum(len(p) for p in self.withdrawn.values())


def _announce_all(
    table: FamilyTable, meaning: Mapping[Any, PathAttributes | None]
) -> dict[PathAttributes, list[Nlri]]:
    """Every route of `table` grouped by what it means to the session."""
    meant = {attrs for attrs in meaning.values() if attrs is not None}
    if not meant:
        return {}
    if len(meaning) == 1:  # one attribute set: every key, at C speed
        (attrs,) = meant
        return {attrs: list(table.routes)}
    groups: dict[PathAttributes, list[Nlri]] = {a: [] for a in meant}
    for key, value in table.routes.items():
        meant_as = meaning[value]
        if meant_as is not None:
            groups[meant_as].append(key)
    return {a: keys for a, keys in groups.items() if keys}


class AdjRibOut:
    """Per-session Adj-RIB-Out: the tables as last sent (shared with the desired routes) and
    the resolver they were sent with. `update()` moves to new desired routes and returns only
    the difference; `changed()` takes the keys a shared table changed in place."""

    __slots__ = ("_owned", "resolvers", "sent")

    def __init__(self) -> None:
        self.sent: dict[Family, FamilyTable] = {}
        self.resolvers: dict[Family, Resolve] = {}
        self._owned: dict[Family, PlainTable] = {}  # tables this object made (`apply`)

    def __len__(self) -> int:
        return sum(self.count(f) for f in self.sent)

    def count(self, family: Family) -> int:
        """Prefixes held for `family` (what was announced, with or without a usable next hop)."""
        table = self.sent.get(family)
        if table is None:
            return 0
        resolve = self.resolvers.get(family, _as_is)
        return sum(n for value, n in table.counts.items() if resolve(value) is not None)

    @property
    def routes(self) -> dict[Family, dict[Prefix, PathAttributes]]:
        """What is held, in the plain form (built on demand: for inspection, not hot paths)."""
        return {f: resolved_keys(t, self.resolvers.get(f, _as_is)) for f, t in self.sent.items()}

    def update(self, desired: Desired, families: Iterable[Family]) -> RibChange:
        """Make the table for each of `families` the desired one; returns what changed."""
        change = RibChange()
        for family in families:
            new = desired.tables.get(family)
            old = self.sent.get(family)
            old_resolve = self.resolvers.get(family, _as_is)
            new_resolve = desired.resolver(family)
            same_meaning = old_resolve is new_resolve
            if new is old and same_meaning:
                continue
            new_meaning = {v: new_resolve(v) for v in new.counts} if new is not None else {}
            if old is None or not old.routes:
                if new is not None:
                    groups = _announce_all(new, new_meaning)
                    if groups:
                        change.announced[family] = groups
            else:
                old_meaning = {v: old_resolve(v) for v in old.counts}
                withdrawn, groups = _difference(old, old_meaning, new, new_meaning, same_meaning)
                if withdrawn:
                    change.withdrawn[family] = withdrawn
                if groups:
                    change.announced[family] = groups
            self._owned.pop(family, None)
            if new is None:
                self.sent.pop(family, None)
                self.resolvers.pop(family, None)
            else:
                self.sent[family] = new
                self.resolvers[family] = new_resolve
        return change

    def apply(
        self, family: Family, changes: Mapping[Nlri, PathAttributes | None], change: RibChange
    ) -> None:
        """Set (or with None remove) these keys of `family` in what was sent, adding to `change`
        what is different. A table shared with desired routes is copied first (copy on write,
        into a `PlainTable` of the values as this session reads them)."""
        table = self._owned.get(family)
        if table is None:
            shared = self.sent.get(family)
            routes = (
                {} if shared is None else resolved_keys(shared, self.resolvers.get(family, _as_is))
            )
            table = self._owned[family] = PlainTable(routes)
            self.sent[family] = table
            self.resolvers[family] = _as_is
        rows, counts = table.routes, table.counts
        withdrawn: list[Nlri] = []
        announced: list[tuple[Nlri, PathAttributes]] = []
        for key, attrs in changes.items():
            old = rows.get(key)
            if old is attrs or old == attrs:
                continue
            if old is not None:
                counts[old] -= 1
                if not counts[old]:
                    del counts[old]
            if attrs is None:
                del rows[key]
                withdrawn.append(key)
            else:
                rows[key] = attrs
                counts[attrs] += 1
                announced.append((key, attrs))
        if withdrawn:
            change.withdrawn.setdefault(family, []).extend(withdrawn)
        if announced:
            groups = change.announced.setdefault(family, {})
            for key, attrs in announced:
                groups.setdefault(attrs, []).append(key)

    def changed(self, family: Family, changes: Sequence[tuple[Nlri, Any, Any]]) -> RibChange:
        """The shared table of `family` has changed in place: (key, value before, value after)
        for each changed key, None where absent. Returns what to send."""
        change = RibChange()
        if family not in self.sent:
            return change
        resolve = self.resolvers.get(family, _as_is)
        withdrawn: list[Nlri] = []
        groups: dict[PathAttributes, list[Nlri]] = {}
        for key, old, new in changes:
            before = None if old is None else resolve(old)
            after = None if new is None else resolve(new)
            if after is before or after == before:
                continue
            if after is None:
                withdrawn.append(key)
            else:
                groups.setdefault(after, []).append(key)
        if withdrawn:
            change.withdrawn[family] = withdrawn
        if groups:
            change.announced[family] = groups
        return change

    def full(self, family: Family) -> RibChange:
        """Everything held for `family` as announcements (route refresh, RFC 2918)."""
        change = RibChange()
        table = self.sent.get(family)
        if table is not None and table.routes:
            resolve = self.resolvers.get(family, _as_is)
            groups = _announce_all(table, {v: resolve(v) for v in table.counts})
            if groups:
                change.announced[family] = groups
        return change

    def clear(self) -> None:
        self.sent.clear()
        self.resolvers.clear()
        self._owned.clear()


def _difference(
    old: FamilyTable,
    old_meaning: Mapping[Any, PathAttributes | None],
    new: FamilyTable | None,
    new_meaning: Mapping[Any, PathAttributes | None],
    same_meaning: bool,
) -> tuple[list[Nlri], dict[PathAttributes, list[Nlri]]]:
    old_routes = old.routes
    new_routes = new.routes if new is not None else {}
    withdrawn: list[Nlri] = []
    groups: dict[PathAttributes, list[Nlri]] = {}
    get = old_routes.get
    for key, value in new_routes.items():
        before_value = get(key)
        if before_value is value and same_meaning:
            continue
        after = new_meaning[value]
        before = None if before_value is None else old_meaning[before_value]
        if after is before or after == before:
            continue
        if after is None:
            withdrawn.append(key)
        else:
            bucket = groups.get(after)
            if bucket is None:
                groups[after] = [key]
            else:
                bucket.append(key)
    for key, value in old_routes.items():
        if key not in new_routes and old_meaning[value] is not None:
            withdrawn.append(key)
    return withdrawn, groups


def _v4_mapped(address: bytes) -> bytes:
    return bytes(10) + b"\xff\xff" + address


def resolve_next_hop(family: Family, attrs: PathAttributes, local: bytes) -> bytes | None:
    """The next hop to send: the configured one, or the session's local address (`local`, 4 or
    16 octets) in the family's form; an IPv6 route over an IPv4 session gets the IPv4-mapped
    address. None when the family cannot be served from this address (IPv4 over IPv6)."""
    if attrs.next_hop is not None:
        return attrs.next_hop
    if family[0] == AFI_IPV4:
        return local if len(local) == 4 else None
    return local if len(local) == 16 else _v4_mapped(local)


def encode_change(
    change: RibChange, builder: UpdateBuilder, local: bytes
) -> tuple[list[bytes], int]:
    """UPDATE messages for a change (withdrawals first), and how many announced prefixes had
    no usable next hop and were left out."""
    out: list[bytes] = []
    skipped = 0
    add_path = builder.ctx.add_path
    for family, keys in change.withdrawn.items():
        out += builder.withdraw_nlri(family, _entries(keys, family in add_path))
    for family, groups in change.announced.items():
        for attrs, keys in groups.items():
            next_hop = resolve_next_hop(family, attrs, local)
            if next_hop is None:
                skipped += len(keys)
                continue
            entries = _entries(keys, family in add_path)
            out += builder.announce_nlri(family, attrs.attributes, entries, next_hop=next_hop)
    return out, skipped


_PATH_ID_ZERO = bytes(4)


def _entries(keys: list[Nlri], add_path: bool) -> list[bytes]:
    """NLRI entries to send: the keys, each after path identifier 0 under ADD-PATH (RFC 7911:
    we send one path per prefix)."""
    return [_PATH_ID_ZERO + k for k in keys] if add_path else keys


__all__ = [
    "EMPTY",
    "IPV4_UNICAST",
    "AdjRibOut",
    "AttributeInterner",
    "Desired",
    "FamilyTable",
    "Nlri",
    "PathAttributes",
    "PlainTable",
    "Resolve",
    "RibChange",
    "Table",
    "encode_change",
    "resolve_next_hop",
    "resolved_keys",
]
