"""The Helm chart, rendered offline by the real Helm SDK (PyPI helm-python-sdk: Helm's Go SDK
behind a C ABI, no helm binary), and its manifests parsed strictly (duplicate keys fail)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "deploy" / "helm" / "kubgp"
RELEASE = "kubgp"
NAMESPACE = "kubgp-system"
KUBERNETES_VERSION = "1.37.0"  # the newest schemas kubernetes-validate ships

Manifest = dict[str, Any]


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate mapping keys, as the API server's decoder does."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_documents(text: str) -> list[Manifest]:
    return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d]


@functools.lru_cache(maxsize=64)
def _render(values_json: str, namespace: str) -> tuple[tuple[str, str], ...]:
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(
            json.loads(values_json), name=RELEASE, namespace=namespace, is_install=True
        )
    return tuple(sorted(rendered.items()))


def render_files(
    values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included), cached per values."""
    return dict(_render(json.dumps(values or {}, sort_keys=True), namespace))


def render(
    values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE
) -> list[Manifest]:
    """Every manifest the chart renders for `values` (templates only, not crds/)."""
    docs: list[Manifest] = []
    for path, text in render_files(values, namespace=namespace).items():
        if path.endswith(".yaml"):
            docs.extend(load_documents(text))
    return docs


def find(docs: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} rendered"
    return found[0]


def container(pod_owner: Manifest, name: str) -> Manifest:
    for c in pod_owner["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return dict(c)
    raise KeyError(name)


def pod_spec(pod_owner: Manifest) -> Manifest:
    spec: Manifest = pod_owner["spec"]["template"]["spec"]
    return spec


def kubelet_args(c: Manifest, fields: Mapping[str, str]) -> list[str]:
    """A container's args as the kubelet runs them: each $(VAR) replaced by the value of the
    container's env VAR (a literal `value`, or `fields[fieldPath]` for a downward-API fieldRef).
    A $(VAR) the container does not define fails, where the kubelet would pass it on as is."""
    env: dict[str, str] = {}
    for var in c.get("env") or ():
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in env, f"$({name}) in {c['name']}'s args, not in its env"
        return env[name]

    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, a) for a in c["args"]]


def helm_versions() -> str:
    return f"Helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__})"


def component_name(component: str) -> str:
    """A component's object name with the test release name (templates: kubgp.component)."""
    return f"{RELEASE}-{component}"
