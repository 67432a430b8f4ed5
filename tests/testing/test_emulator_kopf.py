"""The real kopf against the emulator: watches with a field selector, indexes, change handlers
with finalizers, and watches resumed or relisted after a 410, as the controllers use them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from testing.kube import kopf_operator
from testing.kube.emulator import KubeAPI

pytestmark = pytest.mark.slow  # the real kopf against the emulated API server


def peer(name: str, asn: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubgp.io/v1alpha1",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"peerAddress": "192.0.2.1", "peerASN": asn},
    }


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def count(recorder: kopf_operator.Recorder, event: tuple[str, str | None, str]) -> int:
    return recorder.events.count(event)


def test_kopf_watches_indexes_and_finalizes_through_the_emulator(kube_api: KubeAPI) -> None:
    kube_api.apply(node("node-a"))
    kube_api.apply(node("node-b"))
    recorder = kopf_operator.Recorder()
    registry = kopf_operator.build_registry(recorder, kube_api.url)
    settings = kopf_operator.settings(node_name="node-a", server_timeout=1)
    with kopf_operator.running(registry, settings):
        # The field selector reaches the server: kopf lists and watches only its own Node.
        recorder.wait_for(lambda r: ("nodes", None, "node-a") in r.events)
        kube_api.apply(node("node-b", touched="1"))
        kube_api.apply(node("node-a", touched="1"))
        recorder.wait_for(lambda r: ("nodes", "MODIFIED", "node-a") in r.events)

        # Event handlers and an index see BGPPeers come, change and go.
        kube_api.apply(peer("p1", 65000))
        kube_api.apply(peer("p2", 65001))
        recorder.wait_for(lambda r: r.peer_index == {65000: ["p1"], 65001: ["p2"]})
        kube_api.apply(peer("p1", 65002))
        recorder.wait_for(lambda r: ("bgppeers", "MODIFIED", "p1") in r.events)
        recorder.wait_for(lambda r: r.peer_index == {65001: ["p2"], 65002: ["p1"]})

        # Watches time out every second and resume from their resourceVersion; a 410 Gone on
        # the open watches makes kopf list again. Either way, nothing is replayed as new.
        time.sleep(1.5)
        kube_api.compact(expire_watches=True)
        time.sleep(0.5)
        kube_api.delete("BGPPeer", "p1")
        recorder.wait_for(lambda r: ("bgppeers", "DELETED", "p1") in r.events)
        recorder.wait_for(lambda r: r.peer_index == {65001: ["p2"]})

        # Change handlers: kopf adds its finalizer, so deletion waits for the delete handler.
        kube_api.apply(
            {
                "apiVersion": "kubgp.io/v1alpha1",
                "kind": "BGPAdvertisement",
                "metadata": {"name": "a1"},
                "spec": {"podCIDRs": True},
            }
        )
        recorder.wait_for(lambda r: ("create", "a1") in r.changes)
        recorder.wait_for(
            lambda r: bool(
                (obj := kube_api.get("BGPAdvertisement", "a1"))
                and obj["metadata"].get("finalizers")
            )
        )
        stored = kube_api.get("BGPAdvertisement", "a1")
        assert stored is not None
        kube_api.apply({**stored, "spec": {"podCIDRs": True, "localPreference": 200}})
        recorder.wait_for(lambda r: ("update", "a1") in r.changes)
        kube_api.delete("BGPAdvertisement", "a1")
        deleting = kube_api.get("BGPAdvertisement", "a1")
        assert deleting is not None and deleting["metadata"]["deletionTimestamp"]
        recorder.wait_for(lambda r: ("delete", "a1") in r.changes)
        recorder.wait_for(lambda r: kube_api.get("BGPAdvertisement", "a1") is None)

    assert count(recorder, ("bgppeers", "ADDED", "p1")) == 1
    assert count(recorder, ("bgppeers", "ADDED", "p2")) == 1
    assert count(recorder, ("bgppeers", "DELETED", "p1")) == 1
    assert not [e for e in recorder.events if e[0] == "nodes" and e[2] != "node-a"]
    assert recorder.changes == [("create", "a1"), ("update", "a1"), ("delete", "a1")]

    watches = [r for r in kube_api.requests if r.params.get("watch") == "true"]
    node_watches = [r for r in watches if r.url.path == "/api/v1/nodes"]
    assert node_watches and all(
        r.params.get("fieldSelector") == "metadata.name=node-a" for r in node_watches
    )
    peer_watches = [r for r in watches if r.url.path.endswith("/bgppeers")]
    assert len(peer_watches) >= 3 and all(
        int(r.params["resourceVersion"]) > 0 for r in peer_watches
    )
    # The 410 after compaction made kopf list BGPPeers again (the first list was at start-up).
    peer_lists = [
        r for r in kube_api.requests
        if r.url.path.endswith("/bgppeers") and r.params.get("watch") != "true"
    ]  # fmt: skip
    assert len(peer_lists) >= 2
    # kopf wrote only to the BGPAdvertisement (finalizer and its progress annotations).
    written = {path for _, path, _ in kube_api.writes()}
    assert written == {"/apis/kubgp.io/v1alpha1/bgpadvertisements/a1"}
