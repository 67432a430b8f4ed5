"""Run the cluster controller (real kopf, real client) against the emulator in a thread, and
read back what it wrote (addresses, Events, status); tests wait with testing.wait."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import kubernetes

from controller.cluster.probes import ClusterHealth
from controller.controller_metrics import ClusterMetrics
from controller.health_endpoint import HealthServer
from controller.kube.cluster_watch import ClusterOptions, run_cluster
from controller.kube.leader import LeaseConfig
from controller.kube.user_agent import CLUSTER_CONTROLLER, user_agent
from testing.kube.emulator import KubeAPI

# Short but sane: a standby takes over ~2 s after the leader goes silent.
FAST_LEASE = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.2}


def lease(identity: str) -> LeaseConfig:
    return LeaseConfig(
        namespace="kube-system", name="kubgp-cluster-controller", identity=identity, **FAST_LEASE
    )


def controller_client(api: KubeAPI) -> kubernetes.client.ApiClient:
    """A client that says it is the cluster controller (as `run_cluster` marks its own), for
    tests that drive its parts directly: the RBAC check (conftest.py) covers their requests."""
    client = api.api_client()
    client.user_agent = user_agent(CLUSTER_CONTROLLER)
    return client


class Controller:
    """One controller process's worth: `run_cluster` on its own loop in a thread; with
    `health`, its /readyz and /livez on 127.0.0.1:`health_port` (served on that loop, as
    `kubgp-controller cluster --health-address` does)."""

    def __init__(
        self,
        api: KubeAPI,
        *,
        identity: str | None = "c1",
        elect: bool = True,
        health: bool = False,
        stall_after: float = 30.0,
        kopf_stop_timeout: float = 20.0,
    ) -> None:
        self.api = api
        self.client = controller_client(api)
        self.metrics = ClusterMetrics()
        self.options = ClusterOptions(
            login=lambda: kopf.ConnectionInfo(server=api.url, token="emulator"),
            lease=lease(identity or "c1") if elect else None,
            metrics=self.metrics,
            server_timeout=5,
            retry_delay=0.2,
            health=ClusterHealth(stall_after=stall_after) if health else None,
            kopf_stop_timeout=kopf_stop_timeout,
        )
        self.health_port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.started = threading.Event()
        self.result: int | BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> int:
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            health = self.options.health
            server = None
            if health is not None:
                server = HealthServer(ready=health.ready, live=health.live)
                _, self.health_port = await server.start("127.0.0.1:0")
            self.started.set()
            try:
                return await run_cluster(self.client, self.options, self.stop_event)
            finally:
                if server is not None:
                    await server.close()

        try:
            self.result = asyncio.run(main())
        except BaseException as err:  # noqa: BLE001
            self.result = err

    def start(self) -> Controller:
        self.thread.start()
        assert self.started.wait(5)
        return self

    def stop(self, *, expect: int = 0) -> None:
        """As SIGTERM does; the controller must end within 30 s with `expect`."""
        if self.loop is not None and self.stop_event is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        self.client.close()  # type: ignore[no-untyped-call]
        if self.thread.is_alive():
            raise AssertionError("the controller did not stop within 30 s")
        if self.result != expect:
            raise AssertionError(f"the controller ended with {self.result!r}")

    def probe(self, path: str) -> tuple[int, str]:
        """GET /readyz or /livez as the kubelet would: (status, text)."""
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as rsp:
                return int(rsp.status), rsp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()


@contextlib.contextmanager
def running(api: KubeAPI, **kwargs: Any) -> Iterator[Controller]:
    controller = Controller(api, **kwargs).start()
    try:
        yield controller
    finally:
        controller.stop()


def ingress(api: KubeAPI, name: str, namespace: str = "default") -> tuple[str, ...]:
    obj = api.get("Service", name, namespace)
    if obj is None:
        return ()
    items = (obj.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return tuple(i["ip"] for i in items if "ip" in i)


def events(api: KubeAPI, name: str, namespace: str = "default") -> list[tuple[str, str, str]]:
    """(type, reason, message) of the core/v1 Events about an object, oldest first."""
    found = [
        e
        for e in api.objects("Event", namespace)
        if e.get("involvedObject", {}).get("name") == name and "reason" in e
    ]
    found.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(e["type"], e["reason"], e["message"]) for e in found]


def reasons(api: KubeAPI, name: str, namespace: str = "default") -> list[str]:
    return [reason for _, reason, _ in events(api, name, namespace)]


def status_writes(api: KubeAPI, path_suffix: str) -> int:
    return sum(
        1 for method, path, _ in api.writes() if method == "PATCH" and path.endswith(path_suffix)
    )


def status_of(api: KubeAPI, kind: str, name: str) -> dict[str, Any]:
    obj = api.get(kind, name)
    return dict((obj or {}).get("status") or {})


def condition(api: KubeAPI, kind: str, name: str, type_: str) -> dict[str, Any]:
    for c in status_of(api, kind, name).get("conditions") or ():
        if c["type"] == type_:
            return dict(c)
    return {}


class ServiceRecorder:
    """Every Service event, in order, from a real watch (resumed by resourceVersion): the whole
    history of who held which address, not a sample of it."""

    def __init__(self, api: KubeAPI) -> None:
        self.client = api.api_client()
        self.history: list[tuple[str, tuple[str, str], tuple[str, ...]]] = []
        self.last_event = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServiceRecorder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()  # type: ignore[no-untyped-call]
        assert not self._thread.is_alive()

    def _run(self) -> None:
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.client)
        rv = "0"
        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            for event in watch.stream(  # type: ignore[no-untyped-call]
                core.list_service_for_all_namespaces,
                resource_version=rv,
                timeout_seconds=1,
            ):
                obj = event["raw_object"]
                rv = obj["metadata"]["resourceVersion"]
                meta = obj["metadata"]
                items = (obj.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
                ips = tuple(i["ip"] for i in items if "ip" in i)
                key = (meta["namespace"], meta["name"])
                self.history.append((event["type"], key, ips))
                self.last_event = time.monotonic()
                if self._stop.is_set():
                    watch.stop()  # type: ignore[no-untyped-call]

    def quiet_for(self, seconds: float) -> bool:
        """No Service changed for `seconds` (the controllers have nothing left to do)."""
        return time.monotonic() - self.last_event >= seconds

    def double_holdings(
        self, *, sharing: Callable[[tuple[str, str], tuple[str, str]], bool]
    ) -> list[str]:
        """Every moment two Services held one address without `sharing` allowing it."""
        holding: dict[tuple[str, str], tuple[str, ...]] = {}
        found = []
        for kind, key, ips in self.history:
            if kind == "DELETED":
                holding.pop(key, None)
            else:
                holding[key] = ips
            owners: dict[str, list[tuple[str, str]]] = {}
            for k, addresses in holding.items():
                for ip in addresses:
                    owners.setdefault(ip, []).append(k)
            for ip, keys in owners.items():
                for i, a in enumerate(keys):
                    for b in keys[i + 1 :]:
                        if not sharing(a, b):
                            found.append(f"{ip}: {a} and {b}")
        return found
