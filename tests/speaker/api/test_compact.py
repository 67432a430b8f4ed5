"""Advertisements grouped by attribute set (`prefixes`, proto 2) and the fast reader: the same
state as one entry per prefix, every error with its exact key path, and the fast path never
accepting what the field-by-field reader refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speaker.api.schema import (
    AdvertisementReader,
    DesiredState,
    SchemaError,
    parse_advertisement,
    parse_desired_state,
)

PEERS: list[dict[str, Any]] = [{"name": "tor-a", "address": "127.0.0.2", "asn": 65000},
         {"name": "tor-b", "address": "2001:db8::2", "asn": 65000,
          "families": ["ipv4-unicast", "ipv6-unicast"]}]  # fmt: skip


def doc(advertisements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"routerId": "192.0.2.11", "asn": 64512, "peers": PEERS,
            "advertisements": advertisements}  # fmt: skip


ONE_BY_ONE: list[dict[str, Any]] = [
    {"prefix": "10.0.0.1/32", "communities": ["64512:100"]},
    {"prefix": "10.0.0.2/32", "communities": ["64512:100"]},
    {"prefix": "2001:db8:1::/48", "communities": ["64512:100"]},
    {"prefix": "10.1.0.0/24", "peers": ["tor-b", "tor-a"], "nextHop": "192.0.2.9", "med": 5},
    {"prefix": "10.2.0.0/24"},
]
GROUPED: list[dict[str, Any]] = [
    {"prefixes": ["2001:DB8:1::/48", "10.0.0.2/32", "10.0.0.1/32"],
     "communities": ["64512:100"]},
    {"prefixes": ["10.1.0.0/24"], "peers": ["tor-a", "tor-b"], "nextHop": "192.0.2.9",
     "med": 5},
    {"prefixes": ["10.2.0.0/24"]},
]  # fmt: skip


def test_grouped_and_one_by_one_are_the_same_state() -> None:
    one = parse_desired_state(doc(ONE_BY_ONE))
    grouped = parse_desired_state(doc(GROUPED))
    assert grouped == one
    assert grouped.advertisements == one.advertisements
    assert grouped.route_count == 5


def test_compact_document_round_trips_and_is_smaller() -> None:
    many = [{"prefix": f"10.9.{i // 250}.{i % 250}/32", "communities": ["64512:7"]}
            for i in range(1000)]  # fmt: skip
    state = parse_desired_state(doc(ONE_BY_ONE + many))
    compact = state.to_dict(compact=True)
    assert parse_desired_state(compact) == state
    assert parse_desired_state(state.to_dict()) == state
    full_size = len(json.dumps(state.to_dict()))
    compact_size = len(json.dumps(compact))
    assert compact_size * 4 < full_size
    groups = compact["advertisements"]
    assert isinstance(groups, list)
    # Defaults are left out: the plain group has its prefixes and nothing else.
    assert {"prefixes": ["10.2.0.0/24"]} in groups


def test_state_from_advertisements_equals_the_parsed_one() -> None:
    parsed = parse_desired_state(doc(ONE_BY_ONE))
    built = DesiredState(router_id=parsed.router_id, asn=parsed.asn, peers=parsed.peers,
                         advertisements=parsed.advertisements)  # fmt: skip
    assert built == parsed and parsed == built
    assert built.routes == parsed.routes


@pytest.mark.parametrize(
    ("advertisements", "message"),
    [
        ([{"prefixes": ["10.0.0.1/32", "10.0.0.x/32"]}],
         "advertisements[0].prefixes[1]: must be a CIDR prefix, not '10.0.0.x/32'"),
        ([{"prefixes": ["10.0.0.1/32", 7]}],
         "advertisements[0].prefixes[1]: must be a string, not integer"),
        ([{"prefixes": ["10.0.0.1/24"]}],
         "advertisements[0].prefixes[0]: '10.0.0.1/24' has host bits set; the prefix is "
         "10.0.0.0/24"),
        ([{"prefix": "10.0.0.1/32"}, {"prefixes": ["10.0.0.3/32", "10.0.0.1/32"]}],
         "advertisements[1].prefixes[1]: duplicate prefix 10.0.0.1/32"),
        ([{"prefixes": ["10.0.0.1/32", "10.0.0.1/32"]}],
         "advertisements[0].prefixes[1]: duplicate prefix 10.0.0.1/32"),
        ([{"prefixes": ["10.0.0.1/32"]}, {"prefix": "10.0.0.1/32"}],
         "advertisements[1].prefix: duplicate prefix 10.0.0.1/32"),
        ([{"prefixes": ["10.0.0.1/32", "2001:db8::/32"], "nextHop": "192.0.2.1"}],
         "advertisements[0].prefixes[1]: is not of the family of nextHop 192.0.2.1 "
         "(ipv4-unicast)"),
        ([{"prefixes": [], "med": 1}], "advertisements[0].prefixes: must name at least one prefix"),
        ([{"prefixes": "10.0.0.1/32"}],
         "advertisements[0].prefixes: must be a list, not string"),
        ([{"prefixes": ["10.0.0.1/32"], "prefix": "10.0.0.2/32"}],
         "advertisements[0]: has both prefix and prefixes; give one"),
        ([{"prefixes": ["10.0.0.1/32"], "colour": "red"}],
         "advertisements[0].colour: unknown key"),
        ([{"prefixes": ["10.0.0.1/32"], "peers": ["tor-c"]}],
         "advertisements[0].peers[0]: no peer named 'tor-c'"),
        ([{"prefixes": ["10.0.0.1/32"], "med": True}],
         "advertisements[0].med: must be an integer, not boolean"),
    ],
)  # fmt: skip
def test_grouped_errors_name_the_key_path(
    advertisements: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(SchemaError) as err:
        parse_desired_state(doc(advertisements))
    assert str(err.value) == message


def test_a_list_or_object_where_a_value_belongs_is_a_schema_error() -> None:
    # The fast path looks attribute values up by their raw form, for one-prefix entries and for
    # groups alike; a list or an object cannot be a key and must reach the exact readers'
    # message, not a TypeError (found by the property test below).
    for key, value, message in (
        ("localPreference", [], "must be an integer, not list"),
        ("med", {}, "must be an integer, not mapping"),
        ("asPathPrepend", [1], "must be an integer, not list"),
        ("nextHop", [], "must be a string, not list"),
    ):
        one: dict[str, Any] = {"prefix": "10.0.0.0/24", key: value}
        group: dict[str, Any] = {"prefixes": ["10.0.0.0/24", "10.0.1.0/24"], key: value}
        for entry in (one, group):
            with pytest.raises(SchemaError, match=f"advertisements\\[0\\].{key}: {message}"):
                parse_desired_state(doc([entry]))


def test_a_value_seen_before_never_stands_for_another_type() -> None:
    # `1` and `true` (and `1.0`) are equal in Python: the fast path keys on the types too.
    first = {"prefix": "10.0.0.1/32", "med": 1, "localPreference": 1, "asPathPrepend": 1}
    for key, value, message in (
        ("med", True, "must be an integer, not boolean"),
        ("med", 1.0, "must be an integer, not number"),
        ("localPreference", True, "must be an integer, not boolean"),
        ("asPathPrepend", True, "must be an integer, not boolean"),
    ):
        second = {**first, "prefix": "10.0.0.2/32", key: value}
        with pytest.raises(SchemaError, match=f"advertisements\\[1\\].{key}: {message}"):
            parse_desired_state(doc([first, second]))


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 70000), st.floats(allow_nan=False, width=16),
    st.sampled_from(["self", "192.0.2.1", "2001:db8::1", "64512:100", "no-export", "1:2:3",
                     "tor-a", "tor-c", "", "10.0.0.0/24", "10.0.0.1/32", "2001:db8::/48"]),
    st.lists(st.sampled_from(["64512:100", "no-export", "1:2:3", "tor-a", "tor-b", "x", ""]),
             max_size=3),
    st.lists(st.integers(0, 3), max_size=2),
)  # fmt: skip
_KEYS = st.sampled_from(["prefix", "prefixes", "peers", "nextHop", "communities",
                         "largeCommunities", "localPreference", "med", "asPathPrepend",
                         "x"])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.dictionaries(_KEYS, _VALUES, max_size=5), min_size=1, max_size=4))
def test_fast_reader_says_what_the_exact_reader_says(entries: list[dict[str, Any]]) -> None:
    """Read entry by entry with the fast reader (which remembers attribute sets across
    entries) and with `parse_advertisement` alone: the same routes, or the same first error."""
    names = {str(p["name"]) for p in PEERS}
    reader = AdvertisementReader(names)
    for i, entry in enumerate(entries):
        path = f"advertisements[{i}]"
        if "prefixes" in entry:
            continue  # groups have no one-prefix counterpart; covered above
        try:
            exact = parse_advertisement(entry, path, names)
        except SchemaError as err:
            with pytest.raises(SchemaError) as fast_err:
                reader.entry(entry, path)
            assert str(fast_err.value) == str(err)
            return
        try:
            reader.entry(entry, path)
        except SchemaError as err:
            assert "duplicate prefix" in str(err)
            return
        read = DesiredState(router_id="192.0.2.1", asn=1, routes=reader.routes())
        found = [a for a in read.advertisements if a.prefix == exact.prefix]
        assert found == [exact]
