"""An RBAC checker: does the chart grant every API call a program made?

It reads the emulated API server's request log (`kube_api.requests`, see docs/kube-emulator.md),
turns each request into the (verb, API group, resource, namespace, name) the Kubernetes RBAC
authorizer sees, and checks it against the Roles and ClusterRoles the chart binds to a
component's ServiceAccount, rendered by the real Helm SDK. Discovery (/api, /apis, /version,
/openapi) is a non-resource URL every authenticated user may read (system:discovery), so it is
not checked. Use it from any test that runs a kubgp program against the emulator:

    from tests.packaging.rbac import assert_granted
    assert_granted(kube_api.requests, component="node")          # or "controller", "viewer"
    assert_granted(kube_api.requests, component="node",
                   values={"rbac": {"peerSecrets": [{"namespace": "default", "name": "pw"}]}})

Filter `requests` to the program under test when the test also talked to the API over HTTP:
`sent_by(requests, "kubgp-node-agent/", "kopf/")` keeps what a program's `kubernetes` client
(controller.kube.user_agent) and its kopf sent; a test's own clients say "OpenAPI-...".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from testing.kube.emulator import parse_api_path
from tests.packaging.chart import NAMESPACE, Manifest, component_name, render


class LoggedRequest(Protocol):
    """What the checker needs of a kmock.Request."""

    @property
    def method(self) -> Any: ...
    @property
    def url(self) -> Any: ...
    @property
    def params(self) -> Any: ...
    @property
    def headers(self) -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiCall:
    """One request as the RBAC authorizer sees it."""

    verb: str
    group: str
    resource: str  # plural, or plural/subresource
    namespace: str | None  # None: cluster-scoped, or across all namespaces
    name: str | None
    request: str  # "METHOD /path?query", for messages

    def __str__(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        named = f" {self.name!r}" if self.name else ""
        return f"{self.verb} {what}{named}{where} ({self.request})"


def api_call(method: str, path: str, params: Mapping[str, str]) -> ApiCall | None:
    """The authorizer's view of one request; None for non-resource (discovery) URLs."""
    parsed = parse_api_path(path)
    if parsed is None:
        return None
    method = method.upper()
    name = parsed.name
    if method == "GET" and params.get("watch") in ("true", "1"):
        verb = "watch"
    elif method == "GET":
        verb = "get" if name is not None else "list"
    elif method == "DELETE":
        verb = "delete" if name is not None else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    if name is None and verb in ("list", "watch"):
        # A list or watch narrowed to one name is authorized as that name (as kube does).
        for term in params.get("fieldSelector", "").split(","):
            key, sep, value = term.partition("=")
            if sep and key.strip() == "metadata.name" and not value.startswith("="):
                name = value.strip()
    resource = parsed.plural + (f"/{parsed.subresource}" if parsed.subresource else "")
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return ApiCall(
        verb=verb,
        group=parsed.group,
        resource=resource,
        namespace=parsed.namespace,
        name=name,
        request=f"{method} {path}" + (f"?{query}" if query else ""),
    )


def sent_by(requests: Iterable[LoggedRequest], *user_agents: str) -> list[LoggedRequest]:
    """The requests whose User-Agent starts with one of `user_agents`."""
    return [r for r in requests if str(r.headers.get("User-Agent", "")).startswith(user_agents)]


def calls(requests: Iterable[LoggedRequest]) -> list[ApiCall]:
    """The resource requests of a kmock request log, in order."""
    found = []
    for r in requests:
        call = api_call(str(r.method.value), r.url.path, dict(r.params))
        if call is not None:
            found.append(call)
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    api_groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    resource_names: frozenset[str]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Rule:
        if raw.get("nonResourceURLs"):
            raise ValueError("nonResourceURLs rules are not expected in the chart")
        return cls(
            api_groups=frozenset(raw.get("apiGroups", ())),
            resources=frozenset(raw.get("resources", ())),
            verbs=frozenset(raw.get("verbs", ())),
            resource_names=frozenset(raw.get("resourceNames", ())),
        )

    def allows(self, call: ApiCall) -> bool:
        plural, _, sub = call.resource.partition("/")
        resource_ok = (
            "*" in self.resources
            or call.resource in self.resources
            or (bool(sub) and (f"{plural}/*" in self.resources or f"*/{sub}" in self.resources))
        )
        return (
            ("*" in self.api_groups or call.group in self.api_groups)
            and resource_ok
            and ("*" in self.verbs or call.verb in self.verbs)
            and (not self.resource_names or call.name in self.resource_names)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Grants:
    """What one subject may do: cluster-wide rules, and rules per namespace."""

    subject: str
    cluster: tuple[Rule, ...]
    namespaced: Mapping[str, tuple[Rule, ...]]

    def allows(self, call: ApiCall) -> bool:
        if any(rule.allows(call) for rule in self.cluster):
            return True
        if call.namespace is None:
            return False  # namespaced grants never cover cluster-scoped or all-namespace calls
        return any(rule.allows(call) for rule in self.namespaced.get(call.namespace, ()))

    def denied(self, found: Iterable[ApiCall]) -> list[ApiCall]:
        """Each distinct call the grants do not allow, in first-seen order."""
        out: dict[tuple[str, str, str, str | None, str | None], ApiCall] = {}
        for call in found:
            key = (call.verb, call.group, call.resource, call.namespace, call.name)
            if key not in out and not self.allows(call):
                out[key] = call
        return list(out.values())


def _rules(doc: Manifest) -> tuple[Rule, ...]:
    return tuple(Rule.parse(r) for r in doc.get("rules") or ())


def grants_of_cluster_role(docs: Sequence[Manifest], name: str) -> Grants:
    """A ClusterRole's rules as if bound cluster-wide (how the viewer role is meant to be used)."""
    roles = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name]
    if len(roles) != 1:
        raise LookupError(f"the chart renders {len(roles)} ClusterRoles named {name}")
    return Grants(subject=f"ClusterRole {name}", cluster=_rules(roles[0]), namespaced={})


def grants_of_service_account(docs: Sequence[Manifest], namespace: str, name: str) -> Grants:
    """What the chart's bindings give ServiceAccount namespace/name."""
    cluster_roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    roles = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Role"
    }

    def bound(binding: Manifest) -> bool:
        return any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == name
            and s.get("namespace", binding["metadata"].get("namespace")) == namespace
            for s in binding.get("subjects") or ()
        )

    def role_rules(binding: Manifest) -> tuple[Rule, ...]:
        ref = binding["roleRef"]
        if ref["kind"] == "ClusterRole":
            return _rules(cluster_roles[ref["name"]])
        return _rules(roles[(binding["metadata"]["namespace"], ref["name"])])

    cluster: list[Rule] = []
    namespaced: dict[str, list[Rule]] = {}
    for doc in docs:
        if doc["kind"] == "ClusterRoleBinding" and bound(doc):
            cluster.extend(role_rules(doc))
        elif doc["kind"] == "RoleBinding" and bound(doc):
            namespaced.setdefault(doc["metadata"]["namespace"], []).extend(role_rules(doc))
    return Grants(
        subject=f"ServiceAccount {namespace}/{name}",
        cluster=tuple(cluster),
        namespaced={ns: tuple(rules) for ns, rules in namespaced.items()},
    )


COMPONENTS = ("node", "controller", "viewer")


def chart_grants(
    component: str, *, values: Mapping[str, Any] | None = None, namespace: str = NAMESPACE
) -> Grants:
    """The grants of a component of the chart rendered with `values` into `namespace`:
    "node" (the DaemonSet's ServiceAccount: agent and speaker), "controller" (the cluster
    controller's), "viewer" (the read-only ClusterRole for kubectl-kubgp)."""
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}")
    docs = render(values, namespace=namespace)
    name = component_name(component)
    if component == "viewer":
        return grants_of_cluster_role(docs, name)
    return grants_of_service_account(docs, namespace, name)


def assert_granted(
    requests: Iterable[LoggedRequest],
    *,
    component: str,
    values: Mapping[str, Any] | None = None,
    namespace: str = NAMESPACE,
) -> list[ApiCall]:
    """Fail, naming each call, when the chart does not grant `component` a request in the log.
    Returns the checked calls (so a test can also assert that something was checked)."""
    grants = chart_grants(component, values=values, namespace=namespace)
    found = calls(requests)
    denied = grants.denied(found)
    assert not denied, (
        f"the chart does not grant {grants.subject} ({component}):\n  "
        + "\n  ".join(str(c) for c in denied)
    )
    return found
