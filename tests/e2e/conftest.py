"""End-to-end fixtures: the emulated API server (testing/kube); the lab's BGP daemons and our
processes (`procs`) come from the plugins tests/conftest.py loads."""

from testing.kube.fixtures import kube_api

__all__ = ["kube_api"]
