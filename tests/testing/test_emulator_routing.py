"""The emulator's request routing: its cost does not grow with the requests it has served, the
request log stays complete, and the kmock reactions a test adds (faults) still win."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import kmock
import pytest

from testing.kube.emulator import Handler, KubeAPI

LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/l"
MERGE = "application/merge-patch+json"


class Client:
    """One keep-alive HTTP connection: the cheapest client, so the emulator's work dominates."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def __call__(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers={"Content-Type": content_type})
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def client(kube_api: KubeAPI) -> Iterator[Client]:
    c = Client(kube_api.url)
    try:
        yield c
    finally:
        c.close()


def mixed(client: Client, i: int) -> None:
    """One of the requests controllers make, in turn: a GET, a write (merge patch), a LIST, a
    GET that is 404, and discovery (answered by kmock's own reactions, not the store)."""
    match i % 5:
        case 0:
            status, _ = client("GET", LEASE)
        case 1:
            status, _ = client("PATCH", LEASE, {"spec": {"holderIdentity": f"h{i}"}}, MERGE)
        case 2:
            status, _ = client("GET", "/api/v1/namespaces/default/services")
        case 3:
            status, _ = client("GET", "/api/v1/nodes/missing")
            status = 200 if status == 404 else status
        case _:
            status, _ = client("GET", "/apis/coordination.k8s.io/v1")
    assert status == 200, (i, status)


def seed_lease(client: Client) -> None:
    status, _ = client(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        {"metadata": {"name": "l"}, "spec": {}},
    )
    assert status == 201


@pytest.mark.slow  # 10,000 requests
def test_routing_cost_does_not_grow_with_the_request_log(kube_api: KubeAPI, client: Client) -> None:
    # kmock routes a request by asking each reaction whether its view selects it, and a view
    # answers by replaying the whole request log: with kmock's own routing the second 1,000
    # requests cost three times the first (94 s and 31 s of CPU), and it grows from there.
    # The measure is the CPU time of the emulator's thread, which waiting on a busy machine
    # does not inflate (0.4-0.9 s per 1,000 here, loaded or not); every 1,000 must cost at
    # most twice the first plus a second, so a regression fails within the first 2,000.
    seed_lease(client)
    windows: list[float] = []
    for window in range(10):
        start = kube_api.cpu_seconds()
        for i in range(1000):
            mixed(client, window * 1000 + i)
        windows.append(kube_api.cpu_seconds() - start)
        shown = ", ".join(f"{w:.2f}" for w in windows)
        assert windows[-1] <= 2 * windows[0] + 1.0, f"CPU seconds per 1,000 requests: {shown}"
    print(f"\nthe emulator's CPU seconds per 1,000 requests: {shown}")
    # The log every test reads (kube_api.requests, writes()) is still complete.
    assert len(kube_api.requests) == 10_001
    assert len(kube_api.writes()) == 1 + 2_000


def test_serving_a_request_does_not_replay_the_request_log(
    kube_api: KubeAPI, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_lease(client)
    for i in range(50):
        mixed(client, i)
    replays = 0
    replay = Handler.__iter__

    def counted(self: Handler) -> Iterator[kmock.Request]:
        nonlocal replays
        replays += 1
        return replay(self)

    monkeypatch.setattr(Handler, "__iter__", counted)
    for i in range(50, 100):
        mixed(client, i)
    assert replays == 0
    monkeypatch.undo()
    assert len(kube_api.requests) == 101


def test_reactions_a_test_adds_still_win(kube_api: KubeAPI, client: Client) -> None:
    # Faults as tests inject them: a slice counts the matching requests (others between do
    # not count), a plain reaction answers every time, and both go before the emulator.
    kube_api.handler["get /api/v1/nodes"][:2] << 500
    kube_api.handler["get /api/v1/namespaces/kube-system/secrets/s"] << 403
    statuses = []
    for _ in range(3):
        statuses.append(client("GET", "/api/v1/nodes")[0])
        assert client("GET", "/api/v1/namespaces")[0] == 200
    assert statuses == [500, 500, 200]
    assert [client("GET", "/api/v1/namespaces/kube-system/secrets/s")[0] for _ in "ab"] == [
        403,
        403,
    ]
    assert client("GET", "/api/v1/namespaces/kube-system/secrets/t")[0] == 404
    # An `override` beats a plain reaction; kmock's discovery and its 404 for unknown URLs
    # still answer.
    kube_api.handler["get /api/v1/namespaces/default"] << 418
    kube_api.handler.override["get /api/v1/namespaces/default"] << 409
    assert client("GET", "/api/v1/namespaces/default")[0] == 409
    status, body = client("GET", "/api")
    assert (status, body["kind"]) == (200, "APIVersions")
    assert client("GET", "/no/such/thing")[0] == 404
