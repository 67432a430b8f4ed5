"""End-to-end fixtures: the emulated API server (tests/kube), the lab's BGP daemons
(tests/conftest.py), and our processes (procs.py)."""

from tests.e2e.procs import procs
from tests.kube.conftest import kube_api

__all__ = ["kube_api", "procs"]
