"""Adj-RIB-In: what one peer has sent us and we kept, as decoded values, and every change to it.

Routes are `{family: {prefix: ReceivedPath}}`; one `ReceivedPath` is shared by every prefix of
an UPDATE. What reaches this table has passed the session's inbound checks
(`speaker/bgp/session/inbound.py`: RFC 7606 outcomes, families, first AS, AS loop). A graceful
restart helper (RFC 4724 §4.2) keeps a restarting peer's routes as stale: `stale[family]` holds
those prefixes until they are sent again (fresh), withdrawn, or flushed.

The change log. Every method that changes the table returns the change as a value, and the
session hands these to the runtime among its events; they are the only way the Adj-RIB-In
changes:

- `RibInChanged(family, prefixes, path)`: each of `prefixes` now has `path` and is fresh (not
  stale); `path` None: each is removed (a removal may name prefixes that were not there).
- `RibInStale(family, prefixes)`: each of `prefixes` is kept with the path it has, now stale.

Applied in order to an empty table, the changes reproduce the table and its stale
marks exactly. An UPDATE costs one `RibInChanged` per family and kind (announced, withdrawn),
whose `prefixes` is the decoder's own tuple, shared, not copied; a session-down flush or a
stale mark costs one tuple of the family's prefixes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from speaker.bgp.wire.attributes import Attribute
from speaker.bgp.wire.context import Family
from speaker.bgp.wire.nlri import Prefix


@dataclass(frozen=True, slots=True)
class ReceivedPath:
    """The attributes of a received route (without MP_*), and its next hop."""

    attributes: tuple[Attribute, ...]
    next_hop: bytes | None


@dataclass(frozen=True, slots=True)
class RibInChanged:
    """`prefixes` of `family` now have `path`, fresh; `path` None: removed."""

    family: Family
    prefixes: tuple[Prefix, ...]
    path: ReceivedPath | None


@dataclass(frozen=True, slots=True)
class RibInStale:
    """`prefixes` of `family` are kept with their paths, stale (the peer is restarting)."""

    family: Family
    prefixes: tuple[Prefix, ...]


RibInEvent = RibInChanged | RibInStale


class AdjRibIn:
    __slots__ = ("routes", "stale")

    def __init__(self) -> None:
        self.routes: dict[Family, dict[Prefix, ReceivedPath]] = {}
        self.stale: dict[Family, set[Prefix]] = {}

    def __len__(self) -> int:
        return sum(len(t) for t in self.routes.values())

    def count(self, family: Family) -> int:
        return len(self.routes.get(family, ()))

    def stale_count(self) -> int:
        return sum(len(s) for s in self.stale.values())

    def set(
        self, family: Family, prefixes: tuple[Prefix, ...], path: ReceivedPath | None
    ) -> RibInChanged:
        """Store (or replace) `prefixes` with `path`, or remove them (None); they are fresh."""
        table = self.routes.get(family)
        if path is None:
            if table:
                pop = table.pop
                for prefix in prefixes:
                    pop(prefix, None)
        else:
            if table is None:
                table = self.routes[family] = {}
            for prefix in prefixes:
                table[prefix] = path
        if self.stale:
            stale = self.stale.get(family)
            if stale:
                stale.difference_update(prefixes)
                if not stale:
                    del self.stale[family]
        return RibInChanged(family, prefixes, path)

    def mark_stale(self, kept: Collection[Family]) -> list[RibInEvent]:
        """The peer is restarting: remove every family not in `kept`, mark the rest stale."""
        out: list[RibInEvent] = []
        for family in list(self.routes):
            if family not in kept:
                table = self.routes.pop(family)
                self.stale.pop(family, None)
                if table:
                    out.append(RibInChanged(family, tuple(table), None))
        for family, table in self.routes.items():
            if table:
                self.stale.setdefault(family, set()).update(table)
                out.append(RibInStale(family, tuple(table)))
        return out

    def flush_stale(self, family: Family | None = None) -> list[RibInChanged]:
        """Remove the stale routes (of `family`, or of all families)."""
        out: list[RibInChanged] = []
        for fam in [family] if family is not None else list(self.stale):
            prefixes = self.stale.pop(fam, None)
            if not prefixes:
                continue
            table = self.routes.get(fam, {})
            for prefix in prefixes:
                table.pop(prefix, None)
            out.append(RibInChanged(fam, tuple(prefixes), None))
        return out

    def clear(self) -> list[RibInChanged]:
        """Remove everything (session down without graceful restart)."""
        out = [RibInChanged(f, tuple(t), None) for f, t in self.routes.items() if t]
        self.routes.clear()
        self.stale.clear()
        return out


__all__ = ["AdjRibIn", "ReceivedPath", "RibInChanged", "RibInEvent", "RibInStale"]
