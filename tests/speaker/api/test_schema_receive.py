"""The receiving half of the schema: `fib` at the top, `import` rules per peer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from speaker.api.schema import (
    Fib,
    ImportRule,
    ImportSet,
    SchemaError,
    parse_desired_state,
)

BASE: dict[str, Any] = {
    "routerId": "192.0.2.11",
    "asn": 64512,
    "peers": [{"name": "tor-a", "address": "192.0.2.1", "asn": 65000}],
}

DESIGN_EXAMPLE: dict[str, Any] = {
    **BASE,
    "fib": {"table": 254, "protocol": 179, "metric": 20, "maxPaths": 8},
    "peers": [
        {
            "name": "tor-a",
            "address": "192.0.2.1",
            "asn": 65000,
            "import": [
                {"prefix": "0.0.0.0/0", "le": 0, "action": "accept"},
                {
                    "prefix": "10.0.0.0/8",
                    "ge": 16,
                    "le": 24,
                    "communities": ["65000:10"],
                    "action": "accept",
                    "set": {"localPreference": 200},
                },
            ],
        }
    ],
}


def with_rule(rule: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["peers"][0]["import"] = [rule]
    return doc


def test_design_example() -> None:
    state = parse_desired_state(DESIGN_EXAMPLE)
    assert state.fib == Fib(table=254, protocol=179, metric=20, max_paths=8)
    assert state.peers[0].import_rules == (
        ImportRule(action="accept", prefix="0.0.0.0/0", le=0),
        ImportRule(
            action="accept",
            prefix="10.0.0.0/8",
            ge=16,
            le=24,
            communities=("65000:10",),
            set=ImportSet(local_preference=200),
        ),
    )
    assert parse_desired_state(state.to_dict()) == state


def test_absent_means_off_and_nothing_accepted_and_old_documents_are_unchanged() -> None:
    state = parse_desired_state(BASE)
    assert state.fib is None and state.peers[0].import_rules == ()
    doc = state.to_dict()
    assert "fib" not in doc and "import" not in doc["peers"][0]  # type: ignore[index]
    assert parse_desired_state({**BASE, "fib": {}}).fib == Fib()
    assert Fib() == Fib(table=254, protocol=179, metric=20, max_paths=8)


def test_every_rule_field_round_trips() -> None:
    rule = {
        "prefix": "2001:db8::/32",
        "ge": 48,
        "le": 64,
        "communities": ["65000:1", "no-export"],
        "largeCommunities": ["65000:1:2"],
        "asPathContains": [65001, 4200000000],
        "originAsn": 65009,
        "action": "accept",
        "set": {
            "localPreference": 50,
            "addCommunities": ["64512:7"],
            "addLargeCommunities": ["64512:0:7"],
        },
    }
    state = parse_desired_state(with_rule(rule))
    assert state.to_dict()["peers"][0]["import"] == [rule]  # type: ignore[index]
    reject = parse_desired_state(with_rule({"action": "reject", "originAsn": 1}))
    assert reject.peers[0].import_rules == (ImportRule(action="reject", origin_asn=1),)


def test_prefix_is_canonical() -> None:
    state = parse_desired_state(with_rule({"prefix": "2001:DB8::/32", "action": "accept"}))
    assert state.peers[0].import_rules[0].prefix == "2001:db8::/32"


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        ({}, "peers[0].import[0].action", "required"),
        ({"action": "allow"}, "peers[0].import[0].action", "must be one of"),
        ({"action": "accept", "colour": 1}, "peers[0].import[0].colour", "unknown key"),
        ({"action": "accept", "prefix": "10.0.0.1/8"}, "peers[0].import[0].prefix", "host bits"),
        ({"action": "accept", "prefix": "10.0.0.0"}, "peers[0].import[0].prefix", "CIDR"),
        ({"action": "accept", "ge": 8}, "peers[0].import[0].ge", "needs a prefix"),
        ({"action": "accept", "le": 8}, "peers[0].import[0].le", "needs a prefix"),
        (
            {"action": "accept", "prefix": "10.0.0.0/8", "ge": 7},
            "peers[0].import[0].ge",
            "between 8 and 32",
        ),
        (
            {"action": "accept", "prefix": "10.0.0.0/8", "ge": 24, "le": 16},
            "peers[0].import[0].le",
            "between 24 and 32",
        ),
        (
            {"action": "accept", "prefix": "2001:db8::/32", "le": 129},
            "peers[0].import[0].le",
            "between 32 and 128",
        ),
        (
            {"action": "accept", "communities": ["65536:1"]},
            "peers[0].import[0].communities[0]",
            "a:b",
        ),
        (
            {"action": "accept", "largeCommunities": ["1:2"]},
            "peers[0].import[0].largeCommunities[0]",
            "a:b:c",
        ),
        (
            {"action": "accept", "asPathContains": [65001, 0]},
            "peers[0].import[0].asPathContains[1]",
            "between 1",
        ),
        (
            {"action": "accept", "asPathContains": [65001, 65001]},
            "peers[0].import[0].asPathContains[1]",
            "duplicate",
        ),
        ({"action": "accept", "originAsn": "65001"}, "peers[0].import[0].originAsn", "integer"),
        (
            {"action": "reject", "set": {"localPreference": 1}},
            "peers[0].import[0].set",
            "only an accepting rule",
        ),
        (
            {"action": "accept", "set": {"med": 1}},
            "peers[0].import[0].set.med",
            "unknown key",
        ),
        (
            {"action": "accept", "set": {"localPreference": -1}},
            "peers[0].import[0].set.localPreference",
            "between 0",
        ),
        (
            {"action": "accept", "set": {"addCommunities": "65000:1"}},
            "peers[0].import[0].set.addCommunities",
            "must be a list",
        ),
    ],
)
def test_bad_rules_name_their_key_path(rule: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_desired_state(with_rule(rule))
    assert info.value.path == path
    assert message in info.value.detail


def test_import_must_be_a_list_of_mappings() -> None:
    doc = copy.deepcopy(BASE)
    doc["peers"][0]["import"] = {"action": "accept"}
    with pytest.raises(SchemaError, match=r"^peers\[0\]\.import: must be a list"):
        parse_desired_state(doc)
    doc["peers"][0]["import"] = ["accept"]
    with pytest.raises(SchemaError, match=r"^peers\[0\]\.import\[0\]: must be a mapping"):
        parse_desired_state(doc)


@pytest.mark.parametrize(
    ("fib", "path", "message"),
    [
        ({"table": 0}, "fib.table", "between 1"),
        ({"table": 255}, "fib.table", "local table"),
        ({"table": 253}, "fib.table", "default table"),
        ({"protocol": 4}, "fib.protocol", "between 5 and 255"),
        ({"protocol": 256}, "fib.protocol", "between 5 and 255"),
        ({"metric": 0}, "fib.metric", "between 1"),
        ({"maxPaths": 0}, "fib.maxPaths", "between 1 and 64"),
        ({"maxPaths": True}, "fib.maxPaths", "integer"),
        ({"tables": 1}, "fib.tables", "unknown key"),
        ("main", "fib", "must be a mapping"),
    ],
)
def test_bad_fib_names_its_key_path(fib: object, path: str, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_desired_state({**BASE, "fib": fib})
    assert info.value.path == path
    assert message in info.value.detail


def test_fib_accepts_tables_over_255() -> None:
    state = parse_desired_state({**BASE, "fib": {"table": 1000, "maxPaths": 1}})
    assert state.fib == Fib(table=1000, max_paths=1)
    assert state.to_dict()["fib"] == {"table": 1000, "protocol": 179, "metric": 20, "maxPaths": 1}


def test_always_compare_med_is_a_boolean_written_only_when_set() -> None:
    state = parse_desired_state({**BASE, "alwaysCompareMed": True})
    assert state.always_compare_med
    assert state.to_dict()["alwaysCompareMed"] is True
    assert parse_desired_state(state.to_dict()) == state
    plain = parse_desired_state(BASE)
    assert not plain.always_compare_med and "alwaysCompareMed" not in plain.to_dict()
    with pytest.raises(SchemaError) as info:
        parse_desired_state({**BASE, "alwaysCompareMed": "yes"})
    assert info.value.path == "alwaysCompareMed"


# --- route reflection (RFC 4456): clusterId, routeReflectorClient --------------------------


def test_cluster_id_and_client_round_trip_and_are_written_only_when_set() -> None:
    doc = copy.deepcopy(BASE)
    doc["clusterId"] = "192.0.2.100"
    doc["peers"].append(
        {"name": "n2", "address": "192.0.2.12", "asn": 64512, "routeReflectorClient": True}
    )
    state = parse_desired_state(doc)
    assert state.cluster_id == "192.0.2.100"
    by_name = {p.name: p for p in state.peers}
    assert by_name["n2"].route_reflector_client and not by_name["tor-a"].route_reflector_client
    out = state.to_dict()
    assert out["clusterId"] == "192.0.2.100"
    peers = {p["name"]: p for p in out["peers"]}  # type: ignore[attr-defined]
    assert peers["n2"]["routeReflectorClient"] is True
    assert "routeReflectorClient" not in peers["tor-a"]
    assert parse_desired_state(out) == state
    plain = parse_desired_state(BASE)
    assert plain.cluster_id is None and "clusterId" not in plain.to_dict()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"clusterId": "2001:db8::1"}, "clusterId: "),
        ({"clusterId": 5}, "clusterId: "),
        (
            {"peers": [{"name": "t", "address": "192.0.2.1", "asn": 65000,
                        "routeReflectorClient": True}]},
            "peers[0].routeReflectorClient: only an iBGP peer",
        ),
        (
            {"peers": [{"name": "t", "address": "192.0.2.1", "asn": 64512, "localAsn": 64999,
                        "routeReflectorClient": True}]},
            "peers[0].routeReflectorClient: only an iBGP peer",
        ),
        (
            {"peers": [{"name": "t", "address": "192.0.2.1", "asn": 64512,
                        "routeReflectorClient": "yes"}]},
            "peers[0].routeReflectorClient: ",
        ),
    ],
)  # fmt: skip
def test_route_reflection_keys_are_checked(change: dict[str, Any], error: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_desired_state({**BASE, **change})
    assert str(info.value).startswith(error), str(info.value)
