"""End-to-end fixtures: the emulated API server (tests/kube), the lab's BGP daemons
(tests/conftest.py), and our processes (procs.py)."""

from testing.kube.fixtures import kube_api
from testing.procs import procs

__all__ = ["kube_api", "procs"]
