"""The emulator's fixtures for its own tests."""

from testing.kube.fixtures import kube_api, kube_client

__all__ = ["kube_api", "kube_client"]
