"""Reading a received route's attributes the way import policy and route selection need them.

Each function takes the attribute tuple of a `ReceivedPath` (MP_* already removed) and returns
plain values. They run once per distinct attribute set (callers cache per path object), never
once per prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

from speaker.bgp.wire.attributes import (
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_SEQUENCE,
    As4PathAttribute,
    AsPathAttribute,
    Attribute,
    ClusterListAttribute,
    CommunitiesAttribute,
    LargeCommunitiesAttribute,
    LargeCommunity,
    LocalPrefAttribute,
    MultiExitDiscAttribute,
    Origin,
    OriginatorIdAttribute,
    OriginAttribute,
    Segment,
    merge_as4_path,
)

DEFAULT_LOCAL_PREF = 100  # RFC 4271 §5.1.5 leaves it to the operator; every implementation uses 100


def as_path(attributes: Sequence[Attribute]) -> tuple[Segment, ...]:
    """The AS path, with AS4_PATH merged in when present (RFC 6793 §4.2.3)."""
    path: tuple[Segment, ...] = ()
    as4: tuple[Segment, ...] | None = None
    for attr in attributes:
        if isinstance(attr, AsPathAttribute):
            path = attr.segments
        elif isinstance(attr, As4PathAttribute):
            as4 = attr.segments
    return path if as4 is None else merge_as4_path(path, as4)


def path_asns(segments: tuple[Segment, ...]) -> frozenset[int]:
    """Every ASN that appears anywhere in the path (sequences, sets, confederation segments)."""
    return frozenset(asn for _, asns in segments for asn in asns)


def neighbor_as(segments: tuple[Segment, ...]) -> int | None:
    """The neighbouring AS for the MED comparison (RFC 4271 §9.1.2.2 c): the first AS of the
    first AS_SEQUENCE after any confederation segments (RFC 5065 §5.3); None for a route from
    our own AS (empty path) or one whose path starts with an AS_SET."""
    for seg_type, asns in segments:
        if seg_type in (AS_CONFED_SEQUENCE, AS_CONFED_SET):
            continue
        return asns[0] if seg_type == AS_SEQUENCE else None
    return None


def origin_as(segments: tuple[Segment, ...]) -> int | None:
    """The AS that originated the route: the last AS of a path ending in an AS_SEQUENCE; None
    when the path is empty (our own AS) or ends in an AS_SET (an aggregate: no single origin)."""
    for seg_type, asns in reversed(segments):
        if seg_type in (AS_CONFED_SEQUENCE, AS_CONFED_SET):
            continue
        return asns[-1] if seg_type == AS_SEQUENCE else None
    return None


def communities(attributes: Sequence[Attribute]) -> tuple[int, ...]:
    for attr in attributes:
        if isinstance(attr, CommunitiesAttribute):
            return attr.values
    return ()


def large_communities(attributes: Sequence[Attribute]) -> tuple[LargeCommunity, ...]:
    for attr in attributes:
        if isinstance(attr, LargeCommunitiesAttribute):
            return attr.values
    return ()


def local_pref(attributes: Sequence[Attribute]) -> int:
    """LOCAL_PREF, or 100 when absent (always absent from an eBGP peer: the decoder discards it,
    RFC 7606 §7.5, unless import policy set it)."""
    for attr in attributes:
        if isinstance(attr, LocalPrefAttribute):
            return attr.value
    return DEFAULT_LOCAL_PREF


def med(attributes: Sequence[Attribute]) -> int:
    """MULTI_EXIT_DISC; a missing MED is the lowest possible value, 0 (RFC 4271 §9.1.2.2 c)."""
    for attr in attributes:
        if isinstance(attr, MultiExitDiscAttribute):
            return attr.value
    return 0


def origin(attributes: Sequence[Attribute]) -> int:
    for attr in attributes:
        if isinstance(attr, OriginAttribute):
            return attr.value
    return Origin.INCOMPLETE


def originator_id(attributes: Sequence[Attribute]) -> int | None:
    for attr in attributes:
        if isinstance(attr, OriginatorIdAttribute):
            return attr.value
    return None


def cluster_list(attributes: Sequence[Attribute]) -> tuple[int, ...]:
    for attr in attributes:
        if isinstance(attr, ClusterListAttribute):
            return attr.ids
    return ()
