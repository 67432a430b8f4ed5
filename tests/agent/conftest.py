"""The emulator's fixture (kube_api) for the tests of the agent with its kopf glue."""

from testing.kube.fixtures import kube_api

__all__ = ["kube_api"]
