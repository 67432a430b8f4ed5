"""Fixtures for tests against the emulated Kubernetes API server (see emulator.py)."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest

from testing.kube.emulator import KubeAPI


@pytest.fixture
def kube_api() -> Iterator[KubeAPI]:
    """A running emulator with our CRDs and the default namespaces. `kube_api.url`,
    `kube_api.kubeconfig` (a file path, for KUBECONFIG=), `kube_api.apply(obj)` to seed,
    `kube_api.get/objects` to inspect, `kube_api.requests`/`writes()` for what clients sent."""
    with KubeAPI.running(bookmark_interval=0.5) as api:
        yield api


@pytest.fixture
def kube_client(kube_api: KubeAPI) -> Iterator[kubernetes.client.ApiClient]:
    """The real `kubernetes` client, configured from the emulator's kubeconfig file."""
    client = kube_api.api_client()
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]
