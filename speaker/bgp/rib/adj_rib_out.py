"""Adj-RIB-Out: what one session has announced, and the difference to what it should announce.

Routes are `{family: {prefix: PathAttributes}}` with prefixes as `(length, octets)` and attribute
sets interned (`AttributeInterner`), so that a table of 100k host routes sharing attributes holds
one attribute object, and comparing an old and a new route is an identity check. A change is
grouped by attribute set and packed by `UpdateBuilder` into the fewest UPDATEs.

`PathAttributes.next_hop` None means "self": the session's local address, resolved when encoding
(the same desired table serves every session; only the bytes differ).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from speaker.bgp.rib.update_builder import UpdateBuilder
from speaker.bgp.wire.attributes import Attribute
from speaker.bgp.wire.context import AFI_IPV4, IPV4_UNICAST, Family
from speaker.bgp.wire.nlri import Prefix


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


@dataclass(slots=True)
class RibChange:
    """What to send: withdrawals per family, announcements per family grouped by attribute set."""

    withdrawn: dict[Family, list[Prefix]] = field(default_factory=dict)
    announced: dict[Family, dict[PathAttributes, list[Prefix]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.withdrawn.values()) or any(self.announced.values())

    @property
    def counts(self) -> tuple[int, int]:
        """(prefixes announced, prefixes withdrawn)."""
        ann = sum(len(p) for groups in self.announced.values() for p in groups.values())
        return ann, sum(len(p) for p in self.withdrawn.values())


def _group(items: Iterable[tuple[Prefix, PathAttributes]]) -> dict[PathAttributes, list[Prefix]]:
    groups: dict[PathAttributes, list[Prefix]] = {}
    for prefix, attrs in items:
        bucket = groups.get(attrs)
        if bucket is None:
            groups[attrs] = [prefix]
        else:
            bucket.append(prefix)
    return groups


class AdjRibOut:
    """Per-session Adj-RIB-Out. `update()` replaces the table and returns only the difference;
    `apply()` changes some prefixes of one family and returns what that changes."""

    __slots__ = ("_owned", "routes")

    def __init__(self) -> None:
        self.routes: dict[Family, dict[Prefix, PathAttributes]] = {}
        self._owned: set[Family] = set()  # tables this object made (the others are shared)

    def __len__(self) -> int:
        return sum(len(t) for t in self.routes.values())

    def count(self, family: Family) -> int:
        return len(self.routes.get(family, ()))

    def update(self, desired: Table, families: Iterable[Family]) -> RibChange:
        """Make the table for each of `families` equal to `desired`; returns what changed."""
        change = RibChange()
        for family in families:
            new = desired.get(family, {})
            old = self.routes.get(family, {})
            withdrawn = [p for p in old if p not in new]
            if old:
                get = old.get
                changed = [(p, a) for p, a in new.items() if get(p) is not a and get(p) != a]
            else:
                changed = list(new.items())
            if withdrawn:
                change.withdrawn[family] = withdrawn
            if changed:
                change.announced[family] = _group(changed)
            # Desired tables are built fresh per state and never mutated: share, do not copy.
            self.routes[family] = new if isinstance(new, dict) else dict(new)
            self._owned.discard(family)
        return change

    def apply(
        self, family: Family, changes: Mapping[Prefix, PathAttributes | None], change: RibChange
    ) -> None:
        """Set (or with None remove) these prefixes of `family`, adding to `change` what is
        different. A table shared with a desired table is copied first (copy on write)."""
        table = self.routes.get(family)
        if family not in self._owned:
            table = self.routes[family] = dict(table) if table else {}
            self._owned.add(family)
        assert table is not None
        withdrawn: list[Prefix] = []
        announced: list[tuple[Prefix, PathAttributes]] = []
        for prefix, attrs in changes.items():
            old = table.get(prefix)
            if attrs is None:
                if old is not None:
                    del table[prefix]
                    withdrawn.append(prefix)
            elif old is not attrs and old != attrs:
                table[prefix] = attrs
                announced.append((prefix, attrs))
        if withdrawn:
            change.withdrawn.setdefault(family, []).extend(withdrawn)
        if announced:
            groups = change.announced.setdefault(family, {})
            for prefix, attrs in announced:
                groups.setdefault(attrs, []).append(prefix)

    def full(self, family: Family) -> RibChange:
        """Everything held for `family` as announcements (route refresh, RFC 2918)."""
        change = RibChange()
        table = self.routes.get(family)
        if table:
            change.announced[family] = _group(table.items())
        return change

    def clear(self) -> None:
        self.routes.clear()
        self._owned.clear()


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
    for family, prefixes in change.withdrawn.items():
        out += builder.withdraw(family, prefixes)
    for family, groups in change.announced.items():
        for attrs, prefixes in groups.items():
            next_hop = resolve_next_hop(family, attrs, local)
            if next_hop is None:
                skipped += len(prefixes)
                continue
            out += builder.announce(family, attrs.attributes, prefixes, next_hop=next_hop)
    return out, skipped


__all__ = [
    "IPV4_UNICAST",
    "AdjRibOut",
    "AttributeInterner",
    "PathAttributes",
    "RibChange",
    "Table",
    "encode_change",
    "resolve_next_hop",
]
