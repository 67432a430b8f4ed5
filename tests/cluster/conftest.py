"""The emulator's fixtures (kube_api, kube_client) for the cluster controller's tests, and an
RBAC check after every test that ran the controller against it: each API request the
controller made (its `kubernetes` client's User-Agent, and kopf's) must be granted by the
chart's ClusterRole and Role for the controller's ServiceAccount (tests/packaging/rbac.py). The
tests' own clients say "OpenAPI-..." and are not checked. The harness keeps its Lease in
kube-system, so the chart is rendered into that namespace (where its leader-election Role
goes)."""

from collections.abc import Iterator

import pytest

from testing.kube.fixtures import kube_api, kube_client
from tests.packaging.rbac import assert_granted, sent_by

__all__ = ["kube_api", "kube_client"]

CONTROLLER_AGENTS = ("kubgp-cluster-controller/", "kopf/")
LEASE_NAMESPACE = "kube-system"


@pytest.fixture(autouse=True)
def controller_requests_are_granted(request: pytest.FixtureRequest) -> Iterator[None]:
    if "kube_api" not in request.fixturenames:
        yield
        return
    api = request.getfixturevalue("kube_api")  # set up inside: torn down after this check
    yield
    theirs = sent_by(api.requests, *CONTROLLER_AGENTS)
    assert_granted(theirs, component="controller", namespace=LEASE_NAMESPACE)
