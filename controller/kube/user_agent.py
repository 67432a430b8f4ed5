"""The User-Agent each kubgp program sends with the `kubernetes` client, so that API server
audit logs (and the tests' request log) tell them apart from each other and from any other
client built on the same library (whose default is "OpenAPI-Generator/VERSION/python").
kopf's own requests say "kopf/VERSION"."""

from __future__ import annotations

import importlib.metadata
from typing import Final

NODE_AGENT: Final = "kubgp-node-agent"
CLUSTER_CONTROLLER: Final = "kubgp-cluster-controller"
KUBECTL_PLUGIN: Final = "kubectl-kubgp"


def user_agent(program: str) -> str:
    try:
        version = importlib.metadata.version("kubgp")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"{program}/{version}"
