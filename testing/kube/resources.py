"""The kinds the emulator serves: the built-in ones kubgp watches or writes, and CRDs registered
from their manifests (ours in crds/*.yaml), with the CRD's schema applied on admission.

Admission uses the schema checks of crd_schema.py (`default` and `validate`, which also
evaluate the CEL rules with cel-python); this module adds only what an API server does around
them: pruning unknown fields (or rejecting them with `fieldValidation=Strict`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testing.kube.crd_schema import default, validate

CRDS = Path(__file__).resolve().parents[2] / "crds"
Schema = dict[str, Any]
VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, kw_only=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    schema: Schema | None = field(default=None, compare=False, repr=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        return (self.group, self.version)

    def admit(self, obj: dict[str, Any], *, strict: bool = False) -> list[str]:
        """Default, prune and validate `obj` in place as the API server does for a CRD with a
        structural schema. Returns the validation errors (empty = admitted)."""
        if self.schema is None:
            return []
        pruned = list(prune(self.schema, obj))
        if strict and pruned:
            return [f"{path}: unknown field" for path in pruned]
        default(self.schema, obj)
        return [error for error in validate(self.schema, obj) if "unknown field" not in error]


def prune(schema: Schema, value: Any, path: str = "") -> Iterator[str]:
    """Drop fields the structural schema does not declare (metadata is the server's own)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields") or path == ".metadata":
            return
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(value):
            if key in props:
                yield from prune(props[key], value[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from prune(extra, value[key], f"{path}.{key}")
            else:
                del value[key]
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from prune(schema["items"], item, f"{path}[{i}]")


def _builtin(group: str, version: str, plural: str, kind: str, **kw: Any) -> ResourceType:
    return ResourceType(
        group=group, version=version, plural=plural, kind=kind, singular=kind.lower(), **kw
    )


BUILTIN: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True),
    _builtin("", "v1", "nodes", "Node", namespaced=False, status_subresource=True),
    _builtin("", "v1", "services", "Service", namespaced=True, status_subresource=True),
    _builtin("", "v1", "secrets", "Secret", namespaced=True),
    _builtin("", "v1", "events", "Event", namespaced=True),
    _builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced=True),
    _builtin("events.k8s.io", "v1", "events", "Event", namespaced=True),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status_subresource=True,
    ),
)


def from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of an apiextensions.k8s.io/v1 CRD."""
    spec, names = crd["spec"], crd["spec"]["names"]
    return [
        ResourceType(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec["scope"] == "Namespaced",
            singular=names.get("singular", names["kind"].lower()),
            short_names=tuple(names.get("shortNames", ())),
            categories=tuple(names.get("categories", ())),
            status_subresource="status" in version.get("subresources", {}),
            schema=copy.deepcopy(version.get("schema", {}).get("openAPIV3Schema")),
        )
        for version in spec["versions"]
        if version.get("served", True)
    ]


def load_crds(directory: Path = CRDS) -> list[dict[str, Any]]:
    crds = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds
