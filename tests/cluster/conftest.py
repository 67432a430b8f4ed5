"""The emulator's fixtures (kube_api, kube_client) for the cluster controller's tests."""

from tests.kube.conftest import kube_api, kube_client

__all__ = ["kube_api", "kube_client"]
