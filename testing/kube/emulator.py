"""An emulated Kubernetes API server for tests: kmock's KubernetesScaffold (HTTP server on
127.0.0.1, discovery, Status errors, request log, and kmock's DSL for injecting faults) with the
object semantics of store.Store behind it, good enough for the real kopf and the real
`kubernetes` client. See docs/kube-emulator.md.

    with KubeAPI.running() as api:              # a thread with its own event loop
        api.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        subprocess.run([...], env={"KUBECONFIG": str(api.kubeconfig)})

    async with KubeAPI.serving() as api:        # on the running event loop
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import kmock._internal.parsing as kmock_parsing
import kubernetes
import yaml
from kmock import ReactionMismatchError, Response  # type: ignore[attr-defined]  # not in __all__

from testing.kube.resources import BUILTIN, VERBS, ResourceType, from_crd, load_crds
from testing.kube.selectors import FieldSelector, LabelSelector, SelectorError
from testing.kube.store import ApiError, Obj, Predicate, Store, Watcher, WatchEvent

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


# --- kmock 0.8's path parser fails on Namespace objects ------------------------------------
# parse_path("/api/v1/namespaces") raises ValueError (every such request became a 500) and
# "/api/v1/namespaces/x" parses as namespace "x" with no resource. kmock parses every request
# with it before any handler runs, so it is fixed where kmock looks it up.

_kmock_parse_path = kmock_parsing.parse_path


def _parse_path_with_namespaces(path: str) -> kmock_parsing.ParsedPath:
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and parts[2:3] == ["namespaces"]:
        rest = parts[3:]
        if len(rest) <= 1 or (len(rest) == 2 and rest[1] in ("status", "finalize")):
            return kmock_parsing.ParsedPath(
                group="",
                version="v1",
                plural="namespaces",
                name=rest[0] if rest else None,
                subresource=rest[1] if len(rest) == 2 else None,
            )
    return _kmock_parse_path(path)


kmock_parsing.parse_path = _parse_path_with_namespaces


@dataclass(frozen=True, slots=True)
class ApiPath:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_api_path(path: str) -> ApiPath | None:
    """A resource URL (not discovery): /api/v1/..., /apis/GROUP/VERSION/..."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    return ApiPath(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


JSON = {"Content-Type": "application/json"}


def _selectors(params: dict[str, str]) -> Predicate:
    labels = LabelSelector.parse(params.get("labelSelector", ""))
    fields = FieldSelector.parse(params.get("fieldSelector", ""))
    return lambda obj: labels.matches(obj) and fields.matches(obj)


@attrs.define(kw_only=True)
class Handler(kmock.KubernetesScaffold):
    """The HTTP side: routes resource URLs to the store; everything else (discovery, the
    kmock DSL reactions a test adds, 404s) to kmock's reactions."""

    store: Store
    bookmark_interval: float = 60.0

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback[self._is_resource_request] << self._serve

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """kmock's routing (the first reaction, by priority, whose view selects the request),
        at a cost that does not grow with the request log; see `_selects`."""
        for reaction in self._by_priority():
            if reaction._disabled.is_set() or not self._selects(reaction._source, request):
                continue
            try:
                response: aiohttp.web.StreamResponse = await reaction(request)
            except ReactionMismatchError:  # it does not take this request, nor any later
                reaction._disabled.set()
            except NotImplementedError:  # it selects the request but has nothing to answer
                pass
            else:
                return response
        raise NotImplementedError(f"no reaction answers {request.method} {request.url.path}")

    def _by_priority(self) -> list[kmock.Reaction]:
        """The reactions in kmock's order: `override` ones, plain ones, `fallback` ones (a
        priority is a tuple, e.g. `fallback.fallback`); the first added first among equals."""
        reactions: list[kmock.Reaction] = list(self._payloads)
        width = max((len(r.priorities) for r in reactions), default=0)

        def rank(reaction: kmock.Reaction) -> tuple[float, ...]:
            descending = tuple(-p for p in reaction.priorities)
            return descending + (0.0,) * (width - len(descending))

        return sorted(reactions, key=rank)

    def _selects(self, view: kmock.View, request: kmock.Request) -> bool:
        """kmock's `request in view`. kmock answers it by replaying the whole request log
        through the view; for a chain of filters and priorities on this handler (our reactions,
        most faults), the request alone answers it. A view that counts earlier requests (a
        slice such as `[:4]`), a group, an exclusion or a stream is asked kmock's way, once
        the request has passed its source's filters."""
        if view is self:
            return True  # the request being served is the newest in this handler's log
        if type(view) is kmock.Filter:
            return bool(view.criteria(request)) and self._selects(view._source, request)
        if type(view) is kmock.Priority:
            return self._selects(view._source, request)
        if isinstance(view, kmock.Chained) and not self._selects(view._source, request):
            return False  # a slice, exclusion or stream only ever selects from its source
        return request in view

    def declare(self, resource: ResourceType) -> None:
        """Serve `resource` and show it in discovery."""
        self.store.register(resource)
        verbs = set(VERBS)
        self.resources[
            kmock.resource(group=resource.group, version=resource.version, plural=resource.plural)
        ] = kmock.ResourceInfo(
            namespaced=resource.namespaced,
            kind=resource.kind,
            singular=resource.singular or resource.kind.lower(),
            verbs=verbs,
            shortnames=set(resource.short_names),
            categories=set(resource.categories),
            subresources={"status"} if resource.status_subresource else set(),
        )

    def _is_resource_request(self, request: kmock.Request) -> bool:
        path = parse_api_path(request.url.path)
        return (
            path is not None and self.store.find(path.group, path.version, path.plural) is not None
        )

    async def _serve(self, request: kmock.Request) -> Response:
        # kmock keeps the status of the last Response a reaction returned for the next requests
        # of that reaction, so every answer states its status explicitly.
        try:
            status, payload = self._route(request)
        except SelectorError as e:
            status, payload = 400, ApiError(400, "BadRequest", str(e)).status()
        except ApiError as e:
            status, payload = e.code, e.status()
        return Response(status=status, payload=payload, headers=JSON)

    def _route(self, request: kmock.Request) -> tuple[int, Any]:
        path = parse_api_path(request.url.path)
        assert path is not None
        resource = self.store.find(path.group, path.version, path.plural)
        assert resource is not None
        params = dict(request.params)
        method = str(request.method.value).upper()
        strict = params.get("fieldValidation") == "Strict"
        ns = path.namespace if resource.namespaced else None
        if path.namespace is not None and not resource.namespaced:
            raise ApiError(404, "NotFound", f"{resource.kind} is not namespaced")
        if method == "GET" and params.get("watch") in ("true", "1"):
            return 200, self._watch(resource, ns, path.name, params)
        if path.subresource not in (None, "status"):
            raise ApiError(404, "NotFound", f"no subresource {path.subresource}")
        if method == "GET" and path.name is None:
            return 200, self._list(resource, ns, params)
        if method == "GET" and path.name is not None:
            return 200, self.store.get(resource, ns, path.name)
        if method == "POST" and path.name is None:
            created = self.store.create(resource, ns, request.data or {}, strict=strict)
            return 201, created
        if method == "PUT" and path.name is not None:
            return 200, self.store.replace(
                resource,
                ns,
                path.name,
                request.data or {},
                subresource=path.subresource,
                strict=strict,
            )
        if method == "PATCH" and path.name is not None:
            return 200, self.store.patch(
                resource,
                ns,
                path.name,
                request.data,
                content_type=request.headers.get("Content-Type", ""),
                subresource=path.subresource,
                strict=strict,
            )
        if method == "DELETE" and path.name is not None:
            return 200, self.store.delete(resource, ns, path.name)
        if method == "DELETE":
            items, _ = self.store.list_objects(resource, ns, _selectors(params))
            for item in items:
                meta = item["metadata"]
                self.store.delete(resource, meta.get("namespace"), meta["name"])
            return 200, self._list(resource, ns, {})
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _list(self, resource: ResourceType, namespace: str | None, params: dict[str, str]) -> Obj:
        items, rv = self.store.list_objects(resource, namespace, _selectors(params))
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = int(params.get("limit") or 0)
        if limit:
            start = int(params.get("continue") or 0)
            if start + limit < len(items):
                meta["continue"] = str(start + limit)
            items = items[start : start + limit]
        return {
            "apiVersion": resource.api_version,
            "kind": f"{resource.kind}List",
            "metadata": meta,
            "items": items,
        }

    def _watch(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str | None,
        params: dict[str, str],
    ) -> Any:
        """Validate and subscribe now (so a bad request is a plain HTTP error), then stream."""
        selected = _selectors(params)
        predicate = selected
        if name is not None:  # the legacy single-object watch: .../plural/NAME?watch=true
            predicate = lambda obj: obj["metadata"]["name"] == name and selected(obj)  # noqa: E731
        raw_rv = params.get("resourceVersion") or "0"
        if not raw_rv.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resourceVersion {raw_rv!r}")
        since = int(raw_rv) or None
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else math.inf
        bookmarks = params.get("allowWatchBookmarks") == "true"
        initial_end = since is None and params.get("sendInitialEvents") == "true"

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[WatchEvent | ApiError | None] = asyncio.Queue()

        def deliver(event: WatchEvent | ApiError | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, event)

        watcher = Watcher(
            resource=resource, namespace=namespace, predicate=predicate, deliver=deliver
        )
        try:
            backlog, seen_rv = self.store.subscribe(watcher, since)
        except ApiError as e:
            if e.code != 410:
                raise
            expired = e.status()

            async def gone() -> AsyncIterator[Any]:
                yield {"type": "ERROR", "object": expired}

            return gone()

        def bookmark(rv: int, *, initial_end: bool = False) -> Obj:
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            body = {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": meta}
            return {"type": "BOOKMARK", "object": body}

        async def stream() -> AsyncIterator[Any]:
            nonlocal seen_rv
            try:
                yield b""  # send the headers now: clients wait for them before reading events
                for old_event in backlog:
                    seen = old_event.as_seen_by(predicate)
                    if seen is not None:
                        yield {"type": seen[0], "object": seen[1]}
                if initial_end:
                    yield bookmark(seen_rv, initial_end=True)
                deadline = loop.time() + timeout
                next_bookmark = loop.time() + self.bookmark_interval
                while True:
                    now = loop.time()
                    if now >= deadline:
                        return
                    if bookmarks and now >= next_bookmark:
                        yield bookmark(seen_rv)
                        next_bookmark = now + self.bookmark_interval
                    wait = min(deadline, next_bookmark if bookmarks else math.inf) - now
                    try:
                        event = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.0))
                    except TimeoutError:
                        continue
                    if event is None:
                        return  # the server is stopping
                    if isinstance(event, ApiError):
                        yield {"type": "ERROR", "object": event.status()}
                        return
                    seen_rv = max(seen_rv, event.rv)
                    seen = event.as_seen_by(predicate)
                    if seen is not None:
                        yield {"type": seen[0], "object": seen[1]}
            finally:
                self.store.unsubscribe(watcher)

        return stream()


@dataclass(kw_only=True)
class KubeAPI:
    """The emulated API server, its objects, and how to reach it."""

    store: Store
    handler: Handler
    url: str = ""
    kubeconfig: Path = Path()
    thread: threading.Thread | None = None  # the thread serving it, under `running()`

    @classmethod
    def create(
        cls,
        *,
        crds: list[Obj] | None = None,
        history_limit: int = 1000,
        bookmark_interval: float = 60.0,
    ) -> KubeAPI:
        """Built-in kinds, the given CRDs (default: ours from crds/), default namespaces."""
        store = Store(history_limit=history_limit)
        handler = Handler(store=store, bookmark_interval=bookmark_interval)
        api = cls(store=store, handler=handler)
        for resource in BUILTIN:
            handler.declare(resource)
        for crd in load_crds() if crds is None else crds:
            api.register_crd(crd)
        for name in DEFAULT_NAMESPACES:
            api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return api

    def register_crd(self, crd: Obj) -> None:
        for resource in from_crd(crd):
            self.handler.declare(resource)
        self.store.apply(crd)

    # --- running -----------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def serving(cls, **options: Any) -> AsyncIterator[KubeAPI]:
        """Serve on the running event loop until the block exits."""
        api = cls.create(**options)
        async with api.serve():
            yield api

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[KubeAPI]:
        with tempfile.TemporaryDirectory(prefix="kube-emulator-") as tmp:
            async with self.handler, kmock.Server(self.handler, host="127.0.0.1") as server:
                self.url = f"http://127.0.0.1:{server.port}"
                self.kubeconfig = Path(tmp) / "kubeconfig"
                self.kubeconfig.write_text(yaml.safe_dump(kubeconfig(self.url)))
                try:
                    yield self
                finally:
                    # End open watch streams first: kmock's server waits for running handlers.
                    self.store.close_watches()
                    await asyncio.sleep(0)

    @classmethod
    @contextlib.contextmanager
    def running(cls, **options: Any) -> Iterator[KubeAPI]:
        """Serve from a background thread (its own event loop) until the block exits."""
        api = cls.create(**options)
        ready = threading.Event()
        stop: list[Callable[[], None]] = []
        failure: list[BaseException] = []

        async def main() -> None:
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            stop.append(lambda: (loop.call_soon_threadsafe(stopping.set), None)[1])
            async with api.serve():
                ready.set()
                await stopping.wait()

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as e:
                failure.append(e)
                raise
            finally:
                ready.set()

        thread = threading.Thread(target=run, name="kube-emulator", daemon=True)
        api.thread = thread
        thread.start()
        ready.wait(timeout=10)
        if failure or not stop:
            raise RuntimeError(f"the emulator did not start: {failure}")
        try:
            yield api
        finally:
            stop[0]()
            thread.join(timeout=10)
            if thread.is_alive():
                raise RuntimeError("the emulator did not stop within 10 s")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the thread serving the emulator (under `running()`): the
        cost of its own work, whatever else runs on the machine."""
        if self.thread is None or not self.thread.is_alive() or self.thread.ident is None:
            raise RuntimeError("cpu_seconds() needs an emulator serving under running()")
        return time.clock_gettime(time.pthread_getcpuclockid(self.thread.ident))

    # --- for tests: seed and inspect ---------------------------------------------------

    def apply(self, obj: Obj) -> Obj:
        """Create or replace an object, status included (no status isolation; schema checked)."""
        return self.store.apply(obj)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        for obj in self.store.find_objects(kind, namespace):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return self.store.find_objects(kind, namespace)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        obj = self.get(kind, name, namespace)
        if obj is None:
            raise KeyError((kind, namespace, name))
        resource = self.store.by_kind(obj["apiVersion"], kind)
        return self.store.delete(resource, namespace, name)

    def api_client(self) -> kubernetes.client.ApiClient:
        """A real `kubernetes` client configured from the kubeconfig file (close it after)."""
        client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return client

    def compact(self, *, expire_watches: bool = False) -> None:
        """Drop the watch history: clients resuming from an older resourceVersion get 410;
        with expire_watches, open watches end with a 410 ERROR event too."""
        self.store.compact(expire_watches=expire_watches)

    @property
    def requests(self) -> list[kmock.Request]:
        """Every request served so far, in order (kmock's request log)."""
        return list(self.handler)

    def writes(self) -> list[tuple[str, str, Any]]:
        """(method, path, body) of every request that could change something."""
        return [
            (str(r.method.value).upper(), r.url.path, r.data)
            for r in self.requests
            if str(r.method.value).upper() in ("POST", "PUT", "PATCH", "DELETE")
        ]


def kubeconfig(url: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": "emulator"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": "default"},
            }
        ],
        "current-context": "emulator",
    }
