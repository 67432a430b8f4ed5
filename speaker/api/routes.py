"""A desired state's advertisements in compact form: one parse of each prefix into its wire form,
shared by the schema's result, the speaker's per-peer tables and every Adj-RIB-Out.

A prefix is kept as its NLRI encoding (RFC 4271 §4.3): one octet of length, then the
ceil(length / 8) octets of the address, host bits zero: `b"\\x20\\x0a\\x80\\x00\\x01"` is
10.128.0.1/32: the speaker's `Prefix` (speaker/bgp/wire/nlri.py). One small `bytes` per
route, where `ipaddress` objects cost several; the UPDATE builder packs these keys into messages
as they are.

Everything an advertisement says besides its prefix is a `RouteAttributes`, interned: 100k
routes sharing communities and next hop hold one. `Routes` maps each family's keys to them, and
counts how many keys each one has (so a peer's advertised count is a sum over attribute sets,
not a walk over the routes). Pure, standard library only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

FAMILY_IPV4: Final = "ipv4-unicast"
FAMILY_IPV6: Final = "ipv6-unicast"
FAMILIES: Final = frozenset({FAMILY_IPV4, FAMILY_IPV6})

_LEN: Final = [bytes((n,)) for n in range(256)]
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_pton = socket.inet_pton
_HOST32 = b"\x20"
_HOST128 = b"\x80"
_ZERO = b"\0"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RouteAttributes:
    """What an advertisement says besides its prefix (canonical values, as the schema reads
    them): `peers` None means every peer whose families carry the prefix. The hash is kept:
    tables look these up once per route."""

    peers: tuple[str, ...] | None = None
    next_hop: str = "self"
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    local_preference: int | None = None
    med: int | None = None
    as_path_prepend: int = 0
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash(self._key()))

    def _key(self) -> tuple[object, ...]:
        return (self.peers, self.next_hop, self.communities, self.large_communities,
                self.local_preference, self.med, self.as_path_prepend)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, RouteAttributes):
            return NotImplemented
        return self._hash == other._hash and self._key() == other._key()

    def __hash__(self) -> int:
        return self._hash


DEFAULT_ATTRIBUTES: Final = RouteAttributes()


def fast_nlri(text: str) -> tuple[str, bytes] | None:
    """(family, NLRI key) of a prefix in canonical spelling, or None when `text` is not one
    this fast path can vouch for (the caller then reads it with `speaker.api.fields.prefix`,
    which gives the canonical text or the exact error). What it returns is exactly what
    `ipaddress.ip_network(text)` (strict) would say, for every text it accepts."""
    address, slash, length_text = text.partition("/")
    if not slash or not length_text.isdigit() or not length_text.isascii():
        return None
    if len(length_text) > 1 and length_text[0] == "0":
        return None  # '/08' reads, but is not the canonical spelling
    length = int(length_text)
    try:
        if ":" in address:
            if length > 128:
                return None
            packed = _pton(_AF_INET6, address)
            if length == 128:
                return FAMILY_IPV6, _HOST128 + packed
            family = FAMILY_IPV6
            bits = 128
        else:
            if length > 32:
                return None
            packed = _pton(_AF_INET, address)
            if length == 32:
                return FAMILY_IPV4, _HOST32 + packed
            family = FAMILY_IPV4
            bits = 32
    except (OSError, ValueError, UnicodeError):
        return None
    if int.from_bytes(packed, "big") & ((1 << (bits - length)) - 1):
        return None  # host bits set: the exact reader says so
    return family, _LEN[length] + packed[: (length + 7) >> 3]


def nlri_text(family: str, key: bytes) -> str:
    """A key back as canonical prefix text ('10.0.0.0/24', '2001:db8::/32')."""
    length = key[0]
    if family == FAMILY_IPV4:
        return socket.inet_ntop(_AF_INET, key[1:].ljust(4, _ZERO)) + f"/{length}"
    return f"{ipaddress.IPv6Address(key[1:].ljust(16, _ZERO))}/{length}"


def nlri_sort_key(key: bytes) -> tuple[bytes, int]:
    """Numeric order within a family: by address, then by length (as `prefix_sort_key`)."""
    return key[1:].ljust(16, _ZERO), key[0]


class FamilyRoutes:
    """One family's routes: `routes` {NLRI key: RouteAttributes} and `counts`, how many keys
    each attribute set has. Changed only through `set` and `remove` (or built whole), so the
    two always agree."""

    __slots__ = ("counts", "routes")

    def __init__(
        self,
        routes: dict[bytes, RouteAttributes] | None = None,
        counts: Counter[RouteAttributes] | None = None,
    ) -> None:
        """`counts`, when given, must be those of `routes` (a parser counts as it goes)."""
        self.routes: dict[bytes, RouteAttributes] = {} if routes is None else routes
        self.counts: Counter[RouteAttributes] = (
            Counter(self.routes.values()) if counts is None else counts
        )

    def __len__(self) -> int:
        return len(self.routes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FamilyRoutes) and self.routes == other.routes

    __hash__ = None  # type: ignore[assignment]

    def set(self, key: bytes, attrs: RouteAttributes) -> RouteAttributes | None:
        """Put `key` with `attrs`; returns what it had (None: it was not there). An equal set
        already there stays (the interned object)."""
        old = self.routes.get(key)
        if old is attrs or old == attrs:
            return old
        self.routes[key] = attrs
        counts = self.counts
        counts[attrs] += 1
        if old is not None:
            _discount(counts, old)
        return old

    def remove(self, key: bytes) -> RouteAttributes | None:
        old = self.routes.pop(key, None)
        if old is not None:
            _discount(self.counts, old)
        return old


def _discount(counts: Counter[RouteAttributes], attrs: RouteAttributes) -> None:
    left = counts[attrs] - 1
    if left:
        counts[attrs] = left
    else:
        del counts[attrs]


class Routes:
    """The advertisements of one state: `FamilyRoutes` per family name."""

    __slots__ = ("families",)

    def __init__(self, families: Mapping[str, FamilyRoutes] | None = None) -> None:
        self.families: dict[str, FamilyRoutes] = {
            FAMILY_IPV4: FamilyRoutes(),
            FAMILY_IPV6: FamilyRoutes(),
        }
        if families:
            self.families.update(families)

    @classmethod
    def of(
        cls,
        tables: Mapping[str, dict[bytes, RouteAttributes]],
        counts: Mapping[str, Counter[RouteAttributes]] | None = None,
    ) -> Routes:
        """From built dicts (taken, not copied), with their counts if known."""
        return cls(
            {
                family: FamilyRoutes(table, None if counts is None else counts.get(family))
                for family, table in tables.items()
            }
        )

    def __len__(self) -> int:
        return sum(len(t) for t in self.families.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Routes):
            return NotImplemented
        return all(self.table(f) == other.table(f) for f in FAMILIES)

    __hash__ = None  # type: ignore[assignment]

    def table(self, family: str) -> dict[bytes, RouteAttributes]:
        return self.families[family].routes

    def get(self, family: str, key: bytes) -> RouteAttributes | None:
        return self.families[family].routes.get(key)

    def attribute_sets(self) -> set[RouteAttributes]:
        out: set[RouteAttributes] = set()
        for table in self.families.values():
            out.update(table.counts)
        return out

    def items(self) -> Iterator[tuple[str, bytes, RouteAttributes]]:
        """(family, key, attributes) in canonical order: IPv4 first, by address, by length."""
        for family in (FAMILY_IPV4, FAMILY_IPV6):
            table = self.families[family].routes
            for key in sorted(table, key=nlri_sort_key):
                yield family, key, table[key]

    def groups(self) -> list[tuple[RouteAttributes, list[tuple[str, bytes]]]]:
        """The routes grouped by attribute set (each group's prefixes in canonical order),
        groups in the order their first prefix comes."""
        grouped: dict[int, tuple[RouteAttributes, list[tuple[str, bytes]]]] = {}
        for family, key, attrs in self.items():
            bucket = grouped.get(id(attrs))
            if bucket is None:
                grouped[id(attrs)] = (attrs, [(family, key)])
            else:
                bucket[1].append((family, key))
        merged: dict[RouteAttributes, list[tuple[str, bytes]]] = {}
        for attrs, members in grouped.values():  # equal sets that are not one object
            merged.setdefault(attrs, []).extend(members)
        return list(merged.items())

    def copy(self) -> Routes:
        return Routes(
            {f: FamilyRoutes(dict(t.routes), Counter(t.counts)) for f, t in self.families.items()}
        )


class AttributeInterner:
    """One shared `RouteAttributes` per distinct value among those it was given; `keep` drops
    the ones no longer used, so it never grows beyond the states it serves."""

    __slots__ = ("_table",)

    def __init__(self) -> None:
        self._table: dict[RouteAttributes, RouteAttributes] = {}

    def intern(self, value: RouteAttributes) -> RouteAttributes:
        return self._table.setdefault(value, value)

    def keep(self, used: Iterable[RouteAttributes]) -> None:
        self._table = {a: a for a in used}

    def __len__(self) -> int:
        return len(self._table)


__all__ = [
    "DEFAULT_ATTRIBUTES",
    "FAMILIES",
    "FAMILY_IPV4",
    "FAMILY_IPV6",
    "AttributeInterner",
    "FamilyRoutes",
    "RouteAttributes",
    "Routes",
    "fast_nlri",
    "nlri_sort_key",
    "nlri_text",
]
