"""speaker.api.fields: the one reader of camelCase documents. The desired state, a control
message and a Kubernetes object say the same thing about the same bad value, each with its own
key path; containers are named in each document's own words."""

from __future__ import annotations

import json

import pytest

from controller.domain.objects import InvalidObjectError, parse_object
from speaker.api.fields import JSON, FieldError, Fields, prefix, sequence, type_name
from speaker.api.ipc import IpcError, parse_request
from speaker.api.schema import SchemaError, parse_desired_state

STATE = {"routerId": "192.0.2.1", "asn": 64512}


def _schema_detail(adv: dict[str, object]) -> str:
    with pytest.raises(SchemaError) as caught:
        parse_desired_state({**STATE, "advertisements": [adv]})
    assert caught.value.path.startswith("advertisements[0].")
    return caught.value.detail


def _delta_reason(adv: dict[str, object]) -> str:
    line = {"type": "delta", "epoch": 1, "generation": 2, "base": 1, "add": [adv], "remove": []}
    with pytest.raises(IpcError) as caught:
        parse_request(json.dumps(line).encode() + b"\n")
    return caught.value.reason


def _bgp_advertisement_detail(spec: dict[str, object]) -> str:
    raw = {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPAdvertisement",
        "metadata": {"name": "a"},
        "spec": {"podCIDRs": True, **spec},
    }
    with pytest.raises(InvalidObjectError) as caught:
        parse_object(raw)
    return caught.value.detail


@pytest.mark.parametrize(
    ("key", "value", "detail"),
    [
        ("communities", ["65536:1"], "must be 'a:b' (0..65535 each) or a well-known community"),
        ("communities", [7], "must be a string, not integer"),
        ("largeCommunities", ["1:2"], "must be 'a:b:c' (0..4294967295 each), not '1:2'"),
        ("med", "low", "must be an integer, not string"),
        ("localPreference", -1, "must be between 0 and 4294967295"),
        ("communities", "no-export", "must be a list, not string"),
    ],
)
def test_one_value_one_message_in_every_document(key: str, value: object, detail: str) -> None:
    schema = _schema_detail({"prefix": "10.0.0.0/8", key: value})
    delta = _delta_reason({"prefix": "10.0.0.0/8", key: value})
    crd = _bgp_advertisement_detail({key: value})
    assert schema.startswith(detail)
    assert delta.startswith(f"add[0].{key}") and delta.endswith(f": {schema}")
    assert crd.startswith(f"spec.{key}") and crd.endswith(f": {schema}")


def test_words_of_each_document() -> None:
    assert type_name({}) == "mapping" and type_name({}, JSON) == "object"
    assert type_name([]) == "list" and type_name([], JSON) == "array"
    assert [type_name(v) for v in (None, True, 1, 1.5, "x")] == [
        "null",
        "boolean",
        "integer",
        "number",
        "string",
    ]
    with pytest.raises(FieldError, match=r"^peers: must be an array, not object$"):
        sequence({}, "peers", JSON)
    with pytest.raises(FieldError, match=r"^x\.y: must be a mapping, not list$"):
        Fields([], "x.y")


def test_fields_refuse_unknown_and_missing_keys() -> None:
    with pytest.raises(FieldError, match=r"^a\.b: unknown key$"):
        Fields({"b": 1}, "a", keys=("c",))
    with pytest.raises(FieldError, match=r"^a: keys must be strings, not 1$"):
        Fields({1: 1}, "a", keys=("c",))
    with pytest.raises(FieldError, match=r"^a\.c: required$"):
        Fields({}, "a", keys=("c",), required=("c",))
    f = Fields({"c": None}, "a", keys=("c", "d"))
    assert f.optional("c", prefix) is None and f.get("d", prefix, "x") == "x"


def test_prefixes_are_canonical_and_host_bits_named() -> None:
    assert prefix("2001:DB8::/32", "p") == "2001:db8::/32"
    with pytest.raises(FieldError, match=r"^p: '10\.0\.0\.1/8' has host bits set; the prefix is "):
        prefix("10.0.0.1/8", "p")
    with pytest.raises(FieldError, match=r"^p: must be a CIDR prefix, not '10\.0\.0\.0/33'$"):
        prefix("10.0.0.0/33", "p")
    with pytest.raises(FieldError, match=r"^p: must be a CIDR prefix \(address/length\)"):
        prefix("10.0.0.0", "p")
