"""How every kubgp program reaches the Kubernetes API: one `kubernetes` client configuration,
kopf's login taken from it, and a paged GET/LIST of raw JSON.

Where the credentials come from, in one of two orders:
- in-cluster programs (`kubgp-controller node`, `kubgp-controller cluster`): the pod's service
  account, else $KUBECONFIG or ~/.kube/config (a developer's machine);
- kubectl's order (`kubectl-kubgp`): --kubeconfig/--context, $KUBECONFIG or ~/.kube/config,
  else the pod's service account.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote

import kopf
import kubernetes

from controller.kube.user_agent import user_agent

PAGE: Final = 500


class KubeConfigError(Exception):
    """No usable credentials (the message says which source failed and why)."""


def configuration(
    *, kubeconfig: str | None = None, context: str | None = None, in_cluster_first: bool = True
) -> kubernetes.client.Configuration:
    """The client configuration, in the order the module docstring gives. An explicit
    `kubeconfig` or `context` is used alone. Raises KubeConfigError."""
    config = kubernetes.client.Configuration()

    def from_kubeconfig() -> None:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=config
        )

    def in_cluster() -> None:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=config
        )

    if kubeconfig is not None or context is not None:
        try:
            from_kubeconfig()
        except (kubernetes.config.ConfigException, OSError) as err:
            raise KubeConfigError(f"cannot load kubeconfig: {err}") from None
        return config
    first, then = (in_cluster, from_kubeconfig)
    if not in_cluster_first:
        first, then = then, first
    try:
        first()
    except (kubernetes.config.ConfigException, OSError) as first_err:
        try:
            then()
        except (kubernetes.config.ConfigException, OSError) as err:
            reason = err if in_cluster_first else first_err
            raise KubeConfigError(f"no kubeconfig and not in a cluster: {reason}") from None
    return config


def api_client(
    program: str,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    in_cluster_first: bool = True,
) -> kubernetes.client.ApiClient:
    """A client that says which kubgp `program` it is (controller.kube.user_agent)."""
    client = kubernetes.client.ApiClient(
        configuration(kubeconfig=kubeconfig, context=context, in_cluster_first=in_cluster_first)
    )
    client.user_agent = user_agent(program)
    return client


def kopf_login(client: kubernetes.client.ApiClient) -> Callable[[], kopf.ConnectionInfo]:
    """kopf's credentials from `client`'s configuration, for an `@kopf.on.login` handler."""
    config = client.configuration

    def login() -> kopf.ConnectionInfo:
        # Through the refresh hook: in-cluster tokens rotate, and kopf logs in again on a 401.
        token = config.get_api_key_with_prefix("BearerToken", alias="authorization")
        scheme, _, value = (token or "").partition(" ")
        return kopf.ConnectionInfo(
            server=config.host,
            ca_path=config.ssl_ca_cert,
            insecure=not config.verify_ssl,
            scheme=(scheme or None) if value else None,
            token=value or token or None,
            certificate_path=config.cert_file,
            private_key_path=config.key_file,
        )

    return login


def log_in_with(registry: kopf.OperatorRegistry, login: Callable[[], kopf.ConnectionInfo]) -> None:
    """Have the operator of `registry` log in with `login` (`kopf_login(client)`, or a test's)."""

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return login()


def get_json(
    client: kubernetes.client.ApiClient,
    path: str,
    query: Mapping[str, str] | None = None,
    *,
    timeout: float | None = None,
) -> dict[str, Any]:
    """GET `path` as JSON. Raises kubernetes.client.ApiException on a status other than 2xx,
    urllib3's errors when the server is not reached."""
    method, url, headers, body, post = client.param_serialize(
        method="GET",
        resource_path=path,
        query_params=list((query or {}).items()),
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response: Any = client.call_api(
        method, url, header_params=headers, body=body, post_params=post, _request_timeout=timeout
    )
    response.read()
    if not 200 <= response.status < 300:
        raise kubernetes.client.ApiException(http_resp=response)
    doc: dict[str, Any] = json.loads(response.data)
    return doc


def list_pages(
    client: kubernetes.client.ApiClient,
    path: str,
    query: Mapping[str, str] | None = None,
    *,
    timeout: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Every page of a LIST (`limit` per page, following `continue`), as decoded Lists."""
    token = ""
    while True:
        params = {**(query or {}), "limit": str(PAGE)}
        if token:
            params["continue"] = token
        page = get_json(client, path, params, timeout=timeout)
        yield page
        token = str((page.get("metadata") or {}).get("continue") or "")
        if not token:
            return


def path_for(api_version: str, plural: str, namespace: str | None = None, name: str = "") -> str:
    """/api/v1/... or /apis/GROUP/VERSION/..., namespaced when `namespace` is given."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace is not None:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name, safe='')}"
    return base
