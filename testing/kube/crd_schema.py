"""Our CRDs as the API server applies them: defaulting and validation of the structural schema,
and every CEL rule evaluated with cel-python.

cel-python has no Kubernetes CEL libraries, so the IP/CIDR library (Kubernetes >= 1.31) is
emulated here with `ipaddress`: `isIP(s)`, `isCIDR(s)`, `ip(s)` (canonical address string),
`cidr(s)` (canonical prefix string keeping host bits), `.family()` (4 or 6), `.masked()`
(host bits cleared) and `.prefixLength()`. Values are strings rather than Kubernetes' opaque
IP/CIDR types, which is enough for the equality, family and length checks of the rules.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel

CRDS = Path(__file__).resolve().parents[2] / "crds"
KINDS = {
    "bgppeers.yaml": "BGPPeer",
    "bgpadvertisements.yaml": "BGPAdvertisement",
    "bgpnodepeerings.yaml": "BGPNodePeering",
    "bgpnodestates.yaml": "BGPNodeState",
    "loadbalancerippools.yaml": "LoadBalancerIPPool",
}
Schema = dict[str, Any]


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CRDS / name).read_text())
    return doc


def root_schema(name: str) -> Schema:
    schema: Schema = load(name)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


# --- Kubernetes CEL IP/CIDR library, emulated --------------------------------------------


def _bool(fn: Callable[[str], object]) -> Callable[[object], celtypes.BoolType]:
    def check(value: object) -> celtypes.BoolType:
        try:
            fn(str(value))
        except ValueError:
            return celtypes.BoolType(False)
        return celtypes.BoolType(True)

    return check


def _cidr(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if "/" not in text:
        raise ValueError(text)
    return ipaddress.ip_interface(text)


CEL_FUNCTIONS: dict[str, Any] = {
    "isIP": _bool(ipaddress.ip_address),
    "isCIDR": _bool(_cidr),
    "ip": lambda s: celtypes.StringType(str(ipaddress.ip_address(str(s)))),
    "cidr": lambda s: celtypes.StringType(str(_cidr(str(s)))),
    "family": lambda x: celtypes.IntType(
        ipaddress.ip_interface(str(x)).version
        if "/" in str(x)
        else ipaddress.ip_address(str(x)).version
    ),
    "masked": lambda x: celtypes.StringType(str(_cidr(str(x)).network)),
    "prefixLength": lambda x: celtypes.IntType(_cidr(str(x)).network.prefixlen),
}
CEL = celpy.Environment()


def evaluate(rule: str, value: object) -> bool:
    program = CEL.program(CEL.compile(rule), functions=CEL_FUNCTIONS)
    result = program.evaluate({"self": json_to_cel(value)})  # type: ignore[arg-type]
    if isinstance(result, Exception):  # celpy returns evaluation errors as values
        raise AssertionError(f"rule {rule!r} failed to evaluate on {value!r}: {result}")
    return bool(result)


# --- a small API-server: defaulting, then OpenAPI + CEL validation -------------------------

TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
    "number": (int, float),
}


def default(schema: Schema, value: Any) -> Any:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = default(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        return [default(schema["items"], v) for v in value]
    return value


def validate(schema: Schema, value: Any, path: str = "") -> Iterator[str]:
    expected = schema.get("type")
    if expected is not None:
        ok = isinstance(value, TYPES[expected]) and not (
            expected in ("integer", "number") and isinstance(value, bool)
        )
        if not ok:
            yield f"{path}: must be {expected}"
            return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{path}: must be one of {schema['enum']}"
    if "minimum" in schema and value < schema["minimum"]:
        yield f"{path}: must be >= {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        yield f"{path}: must be <= {schema['maximum']}"
    if "minLength" in schema and len(value) < schema["minLength"]:
        yield f"{path}: shorter than {schema['minLength']}"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        yield f"{path}: longer than {schema['maxLength']}"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        yield f"{path}: more than {schema['maxItems']} items"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        yield f"{path}: does not match the pattern"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                yield f"{path}.{key}: required"
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                yield from validate(props[key], sub, f"{path}.{key}")
            elif "additionalProperties" in schema:
                yield from validate(schema["additionalProperties"], sub, f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and path != ".metadata":
                yield f"{path}.{key}: unknown field (pruned)"
    if isinstance(value, list):
        if schema.get("x-kubernetes-list-type") == "set" and len(set(map(repr, value))) != len(
            value
        ):
            yield f"{path}: duplicate items in a set"
        for i, item in enumerate(value):
            yield from validate(schema["items"], item, f"{path}[{i}]")
    for check in schema.get("x-kubernetes-validations", []):
        if not evaluate(check["rule"], value):
            yield f"{path}{check.get('fieldPath', '')}: {check['message']}"


def admit(name: str, obj: dict[str, Any]) -> list[str]:
    """The errors the API server would report creating `obj` (after defaulting)."""
    schema = root_schema(name)
    return list(validate(schema, default(schema, copy.deepcopy(obj))))


# --- structure ---------------------------------------------------------------------------


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")
