"""kubectl-kubgp's reads of the Kubernetes API: the only part of the plugin that imports
`kubernetes` (import-linter keeps it in controller.kube). Raw JSON in, raw dicts out, exactly as
the API server spells them, so the planner sees what the node agents see.

Only reads: get and paged list. Which objects to read is decided by the caller
(controller.cli.kubectl_kubgp); this module knows URLs, kubeconfig and errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import kubernetes

Raw = dict[str, Any]
PAGE = 500


class ApiAccessError(Exception):
    """A read failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def connect(kubeconfig: str | None = None, context: str | None = None) -> KubeReader:
    """A reader from `kubeconfig` (default $KUBECONFIG or ~/.kube/config, `context` or its
    current one); inside a pod with neither, the pod's service account."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except (kubernetes.config.ConfigException, OSError) as err:
        if kubeconfig is not None or context is not None:
            raise ApiAccessError(0, f"cannot load kubeconfig: {err}") from None
        try:
            kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except kubernetes.config.ConfigException:
            raise ApiAccessError(0, f"no kubeconfig and not in a cluster: {err}") from None
    return KubeReader(kubernetes.client.ApiClient(configuration))


def path_for(api_version: str, plural: str, namespace: str | None = None, name: str = "") -> str:
    """/api/v1/... or /apis/GROUP/VERSION/..., namespaced when `namespace` is given."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace is not None:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name, safe='')}"
    return base


class KubeReader:
    def __init__(self, api_client: Any) -> None:
        self._client = api_client

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, query: Mapping[str, str]) -> Raw:
        try:
            method, url, headers, body, post = self._client.param_serialize(
                method="GET",
                resource_path=path,
                query_params=list(query.items()),
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            response = self._client.call_api(
                method, url, header_params=headers, body=body, post_params=post,
                _request_timeout=30,
            )  # fmt: skip
            data = response.read()
        except kubernetes.client.ApiException as err:
            raise ApiAccessError(int(err.status or 0), _message(err.status, err.body)) from None
        except Exception as err:  # urllib3's connection errors (MaxRetryError, ...)
            if isinstance(err, OSError) or type(err).__module__.startswith("urllib3"):
                raise ApiAccessError(0, f"cannot reach the API server: {err}") from None
            raise
        if not 200 <= response.status < 300:
            raise ApiAccessError(response.status, _message(response.status, data))
        doc: Raw = json.loads(data)
        return doc

    def get(self, api_version: str, plural: str, name: str, namespace: str | None = None) -> Raw:
        """One object; ApiAccessError(404) when it does not exist."""
        return self._get(path_for(api_version, plural, namespace, name), {})

    def list(
        self,
        api_version: str,
        plural: str,
        *,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[Raw]:
        """Every object (all namespaces when `namespace` is None), paged; each item gets the
        apiVersion and kind that List responses leave out."""
        path = path_for(api_version, plural, namespace)
        items: list[Raw] = []
        token = ""
        while True:
            query = {"limit": str(PAGE)}
            if label_selector:
                query["labelSelector"] = label_selector
            if token:
                query["continue"] = token
            page = self._get(path, query)
            kind = str(page.get("kind", "")).removesuffix("List")
            for item in page.get("items") or ():
                item.setdefault("apiVersion", page.get("apiVersion", api_version))
                item.setdefault("kind", kind)
                items.append(item)
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return items


def _message(status: int | None, body: Any) -> str:
    """ "403 Forbidden: secrets ... is forbidden" from a Status body, else the bare status."""
    try:
        doc = json.loads(body)
        return f"{status} {doc.get('reason', '')}: {doc.get('message', '')}".strip()
    except (TypeError, ValueError, AttributeError):
        return f"{status} (no Status body)"
