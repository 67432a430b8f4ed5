"""The emulator's API semantics, proven through the real `kubernetes` client over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import aiohttp
import kubernetes
import pytest
from kubernetes.client import ApiClient, ApiException
from kubernetes.dynamic import DynamicClient

from testing.kube.emulator import KubeAPI
from testing.kube.store import ApiError

GROUP, VERSION = "kubgp.io", "v1alpha1"


# The kubernetes client's pydantic-typed models are not what these tests are about: they drive
# it with plain dicts, as the controller does, so its API classes are used as Any.
def core_api(client: ApiClient) -> Any:
    return kubernetes.client.CoreV1Api(client)


def custom_api(client: ApiClient) -> Any:
    return kubernetes.client.CustomObjectsApi(client)


def leases_api(client: ApiClient) -> Any:
    return kubernetes.client.CoordinationV1Api(client)


def peer(name: str, asn: int = 65000, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"peerAddress": "192.0.2.1", "peerASN": asn},
        **extra,
    }


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def stream(func: Any, **kwargs: Any) -> list[tuple[str, str]]:
    """(type, name) of every event of a watch that ends by its timeoutSeconds."""
    watch: Any = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
    return [
        (event["type"], event["raw_object"]["metadata"].get("name", ""))
        for event in watch.stream(func, **kwargs)
    ]


def test_discovery_serves_our_crds_and_the_core_kinds(kube_client: ApiClient) -> None:
    dynamic = DynamicClient(kube_client)  # type: ignore[no-untyped-call]
    for api_version, kind, namespaced in [
        ("kubgp.io/v1alpha1", "BGPPeer", False),
        ("kubgp.io/v1alpha1", "BGPAdvertisement", False),
        ("kubgp.io/v1alpha1", "BGPNodeState", False),
        ("kubgp.io/v1alpha1", "LoadBalancerIPPool", False),
        ("v1", "Node", False),
        ("v1", "Namespace", False),
        ("v1", "Service", True),
        ("v1", "Secret", True),
        ("v1", "Event", True),
        ("discovery.k8s.io/v1", "EndpointSlice", True),
        ("events.k8s.io/v1", "Event", True),
        ("coordination.k8s.io/v1", "Lease", True),
    ]:
        resource = dynamic.resources.get(api_version=api_version, kind=kind)
        assert resource.namespaced == namespaced, kind
        assert {"create", "get", "list", "watch", "patch", "update", "delete"} <= set(
            resource.verbs
        )
    status = dynamic.resources.get(api_version="kubgp.io/v1alpha1", kind="BGPPeer").subresources
    assert "status" in status


def test_create_sets_server_owned_metadata(kube_client: ApiClient) -> None:
    core = core_api(kube_client)
    a = core.create_node(node("a")).metadata
    b = core.create_node(node("b")).metadata
    assert a.uid and b.uid and a.uid != b.uid
    assert a.generation == 1 and a.creation_timestamp is not None
    assert int(b.resource_version) > int(a.resource_version)
    with pytest.raises(ApiException) as error:
        core.create_node(node("a"))
    assert error.value.status == 409 and '"AlreadyExists"' in str(error.value.body)
    assert core.list_node().metadata.resource_version == b.resource_version
    with pytest.raises(ApiException) as error:
        core.read_node("c")
    assert error.value.status == 404
    with pytest.raises(ApiException) as error:
        core.create_namespaced_secret("nowhere", {"metadata": {"name": "s"}})
    assert error.value.status == 404  # the namespace does not exist
    secret = core.create_namespaced_secret("default", {"metadata": {"generateName": "s-"}})
    assert secret.metadata.name.startswith("s-") and len(secret.metadata.name) == 7


def test_generation_moves_on_spec_changes_only(kube_client: ApiClient) -> None:
    api = custom_api(kube_client)
    created = api.create_cluster_custom_object(GROUP, VERSION, "bgppeers", peer("p"))
    rv = int(created["metadata"]["resourceVersion"])

    def patch(body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = api.patch_cluster_custom_object(GROUP, VERSION, "bgppeers", "p", body)
        return out

    labelled = patch({"metadata": {"labels": {"x": "1"}}})
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > rv
    changed = patch({"spec": {"peerASN": 65001}})
    assert changed["metadata"]["generation"] == 2 and changed["spec"]["peerASN"] == 65001
    same = patch({"spec": {"peerASN": 65001}})  # a no-op: no new version
    assert same["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]
    assert same["metadata"]["uid"] == created["metadata"]["uid"]


def test_status_subresource_is_isolated(kube_client: ApiClient) -> None:
    api = custom_api(kube_client)
    created = api.create_cluster_custom_object(
        GROUP, VERSION, "bgppeers", peer("p", status={"selectedNodes": 3})
    )
    assert "status" not in created  # status on create is dropped
    ignored = api.patch_cluster_custom_object(
        GROUP, VERSION, "bgppeers", "p", {"status": {"selectedNodes": 3}}
    )
    assert "status" not in ignored
    written = api.patch_cluster_custom_object_status(
        GROUP,
        VERSION,
        "bgppeers",
        "p",
        {"spec": {"peerASN": 1}, "status": {"selectedNodes": 2, "establishedNodes": 1}},
    )
    assert written["status"] == {"selectedNodes": 2, "establishedNodes": 1}
    assert written["spec"]["peerASN"] == 65000  # spec is not written through /status
    assert written["metadata"]["generation"] == 1
    # A write to the main resource keeps the status it does not mention.
    replaced = api.replace_cluster_custom_object(
        GROUP, VERSION, "bgppeers", "p", {**written, "spec": {**written["spec"], "port": 1179}}
    )
    assert replaced["spec"]["port"] == 1179 and replaced["status"] == written["status"]
    assert replaced["metadata"]["generation"] == 2


def test_put_with_a_stale_resource_version_conflicts(kube_client: ApiClient) -> None:
    core = core_api(kube_client)
    lease = {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}}
    first = core.api_client.sanitize_for_serialization(
        leases_api(kube_client).create_namespaced_lease("default", lease)
    )
    leases = leases_api(kube_client)
    first["spec"]["holderIdentity"] = "b"
    second = leases.replace_namespaced_lease("leader", "default", first)
    assert second.spec.holder_identity == "b"
    first["spec"]["holderIdentity"] = "c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as error:
        leases.replace_namespaced_lease("leader", "default", first)
    assert error.value.status == 409
    # JSON patch (RFC 6902) works too.
    patched = leases.patch_namespaced_lease(
        "leader", "default", [{"op": "replace", "path": "/spec/holderIdentity", "value": "d"}]
    )
    assert patched.spec.holder_identity == "d"


def test_schema_admission_defaults_prunes_and_rejects(kube_client: ApiClient) -> None:
    api = custom_api(kube_client)
    created = api.create_cluster_custom_object(
        GROUP,
        VERSION,
        "bgppeers",
        peer("p", spec={"peerAddress": "192.0.2.1", "peerASN": 1, "x": 1}),
    )
    assert created["spec"]["port"] == 179 and created["spec"]["holdTimeSeconds"] == 90  # defaults
    assert "x" not in created["spec"]  # pruned, as the server does without fieldValidation=Strict
    for spec, fragment in [
        ({"peerAddress": "192.0.2.1"}, ".spec.peerASN: required"),
        ({"peerAddress": "192.0.2.1", "peerASN": "65000"}, ".spec.peerASN: must be integer"),
        ({"peerAddress": "tor1", "peerASN": 65000}, "must be an IPv4 or IPv6 address"),
        ({"peerAddress": "192.0.2.1", "peerASN": 1, "families": ["l2vpn"]}, "must be one of"),
    ]:
        with pytest.raises(ApiException) as error:
            api.create_cluster_custom_object(GROUP, VERSION, "bgppeers", peer("q", spec=spec))
        assert error.value.status == 422 and '"Invalid"' in str(error.value.body)
        assert fragment in str(error.value.body)
    with pytest.raises(ApiException) as error:
        api.create_cluster_custom_object(
            GROUP,
            VERSION,
            "bgppeers",
            peer("q", spec={"peerAddress": "192.0.2.1", "peerASN": 1, "x": 1}),
            field_validation="Strict",
        )
    assert error.value.status == 422 and ".spec.x: unknown field" in str(error.value.body)
    with pytest.raises(ApiException) as error:  # updates are validated too
        api.patch_cluster_custom_object(GROUP, VERSION, "bgppeers", "p", {"spec": {"peerASN": 0}})
    assert error.value.status == 422


def test_label_and_field_selectors(kube_client: ApiClient) -> None:
    core = core_api(kube_client)
    core.create_node(node("a", role="tor", zone="1"))
    core.create_node(node("b", role="worker", zone="2"))
    core.create_node(node("c", zone="3"))

    def names(**kwargs: str) -> list[str]:
        return [n.metadata.name for n in core.list_node(**kwargs).items]

    assert names(label_selector="role=tor") == ["a"]
    assert names(label_selector="role==worker") == ["b"]
    assert names(label_selector="role!=tor") == ["b", "c"]  # also those without the label
    assert names(label_selector="zone in (1, 3)") == ["a", "c"]
    assert names(label_selector="zone notin (1)") == ["b", "c"]
    assert names(label_selector="role") == ["a", "b"]
    assert names(label_selector="!role") == ["c"]
    assert names(label_selector="role,zone in (2,3)") == ["b"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b,metadata.name!=c") == ["a"]
    with pytest.raises(ApiException) as error:
        names(label_selector="role in tor")
    assert error.value.status == 400

    for ns in ("default", "kube-system"):
        core.create_namespaced_service(ns, {"metadata": {"name": "svc"}})
    services = core.list_service_for_all_namespaces(field_selector="metadata.namespace=kube-system")
    assert [(s.metadata.namespace, s.metadata.name) for s in services.items] == [
        ("kube-system", "svc")
    ]
    assert len(core.list_namespaced_service("default").items) == 1


@pytest.mark.slow  # watch timeouts and bookmarks: seconds of waiting
def test_watch_resumes_after_a_resource_version(kube_client: ApiClient) -> None:
    core = core_api(kube_client)
    core.create_node(node("a"))
    core.create_node(node("b"))
    rv = core.list_node().metadata.resource_version
    core.patch_node("a", {"metadata": {"labels": {"x": "1"}}})
    core.delete_node("b")
    core.create_node(node("c"))
    since = stream(core.list_node, resource_version=rv, timeout_seconds=1)
    assert since == [("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
    # Without a resourceVersion: the current objects as ADDED, no history.
    assert stream(core.list_node, timeout_seconds=1) == [("ADDED", "a"), ("ADDED", "c")]


def test_watch_from_a_compacted_version_is_410_gone(
    kube_api: KubeAPI, kube_client: ApiClient
) -> None:
    core = core_api(kube_client)
    core.create_node(node("a"))
    rv = core.list_node().metadata.resource_version
    core.create_node(node("b"))
    kube_api.compact()
    with pytest.raises(ApiException) as error:
        stream(core.list_node, resource_version=rv, timeout_seconds=1)
    assert error.value.status == 410
    # Raw, the server answers 200 and streams an ERROR event carrying a 410 Status.
    response = core.list_node(
        watch=True, resource_version=rv, timeout_seconds=1, _preload_content=False
    )
    assert response.status == 200
    event = json.loads(response.data.decode().splitlines()[0])
    assert event["type"] == "ERROR" and event["object"]["code"] == 410
    # The history is bounded: with history_limit events kept, older versions expire by themselves.
    kube_api.store.history_limit = 2
    now = int(core.list_node().metadata.resource_version)
    for name in ("c", "d", "e"):
        core.create_node(node(name))
    assert stream(core.list_node, resource_version=str(now + 1), timeout_seconds=1) == [
        ("ADDED", "d"),
        ("ADDED", "e"),
    ]
    with pytest.raises(ApiException) as error:
        stream(core.list_node, resource_version=str(now), timeout_seconds=1)
    assert error.value.status == 410


@pytest.mark.slow  # watch timeouts and bookmarks: seconds of waiting
def test_watch_with_selectors_sees_objects_enter_and_leave(kube_client: ApiClient) -> None:
    core = core_api(kube_client)
    core.create_node(node("a"))
    core.create_node(node("b"))
    rv = core.list_node().metadata.resource_version
    core.patch_node("a", {"metadata": {"labels": {"role": "tor"}}})  # enters the selection
    core.patch_node("b", {"metadata": {"labels": {"other": "1"}}})  # never selected
    core.patch_node("a", {"metadata": {"labels": {"zone": "1"}}})  # stays
    core.patch_node("a", {"metadata": {"labels": {"role": None}}})  # leaves
    events = stream(
        core.list_node, resource_version=rv, label_selector="role=tor", timeout_seconds=1
    )
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    by_name = stream(
        core.list_node, resource_version=rv, field_selector="metadata.name=b", timeout_seconds=1
    )
    assert by_name == [("MODIFIED", "b")]


@pytest.mark.slow  # watch timeouts and bookmarks: seconds of waiting
def test_watch_bookmarks_and_server_timeout(kube_client: ApiClient) -> None:
    core = core_api(kube_client)
    core.create_node(node("a"))
    started = time.monotonic()
    events = stream(core.list_node, allow_watch_bookmarks=True, timeout_seconds=2)
    elapsed = time.monotonic() - started
    assert events[0] == ("ADDED", "a")
    assert ("BOOKMARK", "") in events[1:]  # every 0.5 s in the fixture
    assert 1.5 < elapsed < 5, elapsed


def test_finalizers_hold_deletion_until_removed(kube_client: ApiClient) -> None:
    core = core_api(kube_client)
    body = {"metadata": {"name": "s", "finalizers": ["example.com/hold"]}}
    created = core.create_namespaced_secret("default", body)
    rv = created.metadata.resource_version
    core.delete_namespaced_secret("s", "default")
    held = core.read_namespaced_secret("s", "default")
    assert held.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as error:
        core.patch_namespaced_secret(
            "s", "default", {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}}
        )
    assert error.value.status == 422
    core.patch_namespaced_secret("s", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as error:
        core.read_namespaced_secret("s", "default")
    assert error.value.status == 404
    events = stream(core.list_namespaced_secret, namespace="default", resource_version=rv,
                    timeout_seconds=1)  # fmt: skip
    assert events == [("MODIFIED", "s"), ("DELETED", "s")]


def test_seeding_and_the_request_log(kube_api: KubeAPI, kube_client: ApiClient) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}},
    }
    kube_api.apply(service)  # status included: seeding is not an API write
    core = core_api(kube_client)
    read = core.read_namespaced_service("web", "default")
    assert read.status.load_balancer.ingress[0].ip == "203.0.113.10"
    core.patch_namespaced_service("web", "default", {"metadata": {"labels": {"a": "b"}}})
    assert kube_api.writes() == [
        ("PATCH", "/api/v1/namespaces/default/services/web", {"metadata": {"labels": {"a": "b"}}})
    ]
    stored = kube_api.get("Service", "web", "default")
    assert stored is not None and stored["metadata"]["labels"] == {"a": "b"}
    assert [o["metadata"]["name"] for o in kube_api.objects("Service")] == ["web"]
    with pytest.raises(ApiError) as invalid:
        kube_api.apply(peer("bad", spec={"peerASN": 1}))  # seeding is admitted too
    assert invalid.value.code == 422 and ".spec.peerAddress: required" in invalid.value.message


def test_stopping_with_a_watch_open_does_not_hang() -> None:
    """The server ends open watch streams (EOF) when it stops, instead of waiting on them."""
    with KubeAPI.running() as api:
        client = api.api_client()
        seen: list[str] = []
        ended = threading.Event()
        response = core_api(client).list_namespace(watch=True, _preload_content=False)

        def read() -> None:
            for line in response:  # no timeoutSeconds: only the server can end it
                seen.append(json.loads(line)["object"]["metadata"]["name"])
            ended.set()

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        time.sleep(0.3)
        assert not ended.is_set()
        started = time.monotonic()
    assert time.monotonic() - started < 3
    assert ended.wait(timeout=3)
    assert "default" in seen
    client.close()  # type: ignore[no-untyped-call]


def test_serving_on_the_running_event_loop() -> None:
    async def main() -> dict[str, Any]:
        async with (
            KubeAPI.serving() as api,
            aiohttp.ClientSession() as session,
            session.get(f"{api.url}/apis/kubgp.io/v1alpha1") as response,
        ):
            body: dict[str, Any] = await response.json()
            return body

    body = asyncio.run(main())
    assert {"bgppeers", "bgppeers/status", "bgpnodestates"} <= {
        r["name"] for r in body["resources"]
    }
