"""kubectl-kubgp's reads of the Kubernetes API: the only part of the plugin that imports
`kubernetes` (import-linter keeps it in controller.kube). Raw JSON in, raw dicts out, exactly as
the API server spells them, so the planner sees what the node agents see.

Only reads: get and paged list (controller.kube.client). Which objects to read is decided by
the caller (controller.cli.kubectl_kubgp); this module turns the client's failures into
`ApiAccessError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import kubernetes

from controller.kube.client import KubeConfigError, api_client, get_json, list_pages, path_for
from controller.kube.user_agent import KUBECTL_PLUGIN

Raw = dict[str, Any]
T = TypeVar("T")
REQUEST_TIMEOUT = 30


class ApiAccessError(Exception):
    """A read failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def connect(kubeconfig: str | None = None, context: str | None = None) -> KubeReader:
    """A reader from `kubeconfig` (default $KUBECONFIG or ~/.kube/config, `context` or its
    current one); inside a pod with neither, the pod's service account."""
    try:
        client = api_client(
            KUBECTL_PLUGIN, kubeconfig=kubeconfig, context=context, in_cluster_first=False
        )
    except KubeConfigError as err:
        raise ApiAccessError(0, str(err)) from None
    return KubeReader(client)


class KubeReader:
    def __init__(self, api_client: Any) -> None:
        self._client = api_client

    def close(self) -> None:
        self._client.close()

    def get(self, api_version: str, plural: str, name: str, namespace: str | None = None) -> Raw:
        """One object; ApiAccessError(404) when it does not exist."""
        path = path_for(api_version, plural, namespace, name)
        return _reading(lambda: get_json(self._client, path, timeout=REQUEST_TIMEOUT))

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
        query: Mapping[str, str] = {"labelSelector": label_selector} if label_selector else {}

        def read() -> list[Raw]:
            items: list[Raw] = []
            for page in list_pages(self._client, path, query, timeout=REQUEST_TIMEOUT):
                kind = str(page.get("kind", "")).removesuffix("List")
                for item in page.get("items") or ():
                    item.setdefault("apiVersion", page.get("apiVersion", api_version))
                    item.setdefault("kind", kind)
                    items.append(item)
            return items

        return _reading(read)


def _reading(read: Callable[[], T]) -> T:
    try:
        return read()
    except kubernetes.client.ApiException as err:
        raise ApiAccessError(int(err.status or 0), _message(err.status, err.body)) from None
    except Exception as err:  # urllib3's connection errors (MaxRetryError, ...)
        if isinstance(err, OSError) or type(err).__module__.startswith("urllib3"):
            raise ApiAccessError(0, f"cannot reach the API server: {err}") from None
        raise


def _message(status: int | None, body: Any) -> str:
    """ "403 Forbidden: secrets ... is forbidden" from a Status body, else the bare status."""
    try:
        doc = json.loads(body)
        return f"{status} {doc.get('reason', '')}: {doc.get('message', '')}".strip()
    except (TypeError, ValueError, AttributeError):
        return f"{status} (no Status body)"
