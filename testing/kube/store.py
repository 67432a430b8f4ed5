"""The emulated API server's storage and object semantics, with no HTTP in it.

What it does as kube-apiserver does:
- a global, monotonically increasing resourceVersion; every write bumps it; a write that changes
  nothing is a no-op (no new resourceVersion, no event);
- metadata the server owns: uid, creationTimestamp, generation (bumped only when something other
  than metadata and status changes), deletionTimestamp; generateName;
- optimistic concurrency: a PUT or PATCH carrying metadata.resourceVersion that is not current
  is a 409 Conflict;
- finalizers: deleting an object with finalizers sets deletionTimestamp (MODIFIED); the write
  that removes the last finalizer deletes it (DELETED); no new finalizers while deleting;
- the `status` subresource, for kinds that have one: writes to the object ignore status, writes
  to /status change only status (and status given on create is dropped for custom resources);
- CRD schemas: defaulting, pruning, validation (422) — see resources.py;
- watch: a bounded history of events; resuming from a resourceVersion replays what came after
  it, and one older than the history is 410 Gone; selectors turn a MODIFIED into ADDED/DELETED
  when an object starts/stops matching.

Thread-safe: the HTTP server runs on its own event loop (often in another thread) while tests
seed and inspect objects directly; every operation holds one lock and watchers are notified
through a callback that must not block (the HTTP layer hops to its loop).
"""

from __future__ import annotations

import copy
import datetime
import secrets
import string
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch  # a kmock dependency

from testing.kube.resources import ResourceType

Obj = dict[str, Any]
ObjectKey = tuple[str, str, str, str]  # (group, plural, namespace or "", name)
Predicate = Callable[[Obj], bool]


class ApiError(Exception):
    """An error the API server answers with a Status body."""

    def __init__(
        self, code: int, reason: str, message: str, *, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def status(self) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: ResourceType
    object: Obj
    old: Obj | None  # the object before a MODIFIED or DELETED

    def as_seen_by(self, predicate: Predicate) -> tuple[str, Obj] | None:
        """The event as a watcher with this selector sees it, or None if it sees nothing."""
        now = predicate(self.object)
        before = self.old is not None and predicate(self.old)
        if self.type == "MODIFIED" and now != before:
            return ("ADDED" if now else "DELETED"), self.object
        if now:
            return self.type, self.object
        return None


@dataclass(eq=False, kw_only=True)
class Watcher:
    resource: ResourceType
    namespace: str | None
    predicate: Predicate
    # None: the server is closing the stream; an ApiError: end it with that ERROR event.
    deliver: Callable[[WatchEvent | ApiError | None], None]


@dataclass(kw_only=True)
class Store:
    history_limit: int = 1000
    resources: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    objects: dict[ObjectKey, Obj] = field(default_factory=dict)
    rv: int = 0
    compacted_rv: int = 0  # events at or below this resourceVersion are no longer replayable
    history: deque[WatchEvent] = field(default_factory=deque)
    watchers: set[Watcher] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)
    closed: bool = False  # the server is stopping: no new watches

    # --- resources ---------------------------------------------------------------------

    def register(self, resource: ResourceType) -> None:
        with self.lock:
            self.resources[(resource.group, resource.version, resource.plural)] = resource

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.resources.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType:
        for resource in self.resources.values():
            if resource.api_version == api_version and resource.kind == kind:
                return resource
        raise ApiError(404, "NotFound", f"no resource for {api_version} {kind}")

    # --- reads -------------------------------------------------------------------------

    def _key(self, resource: ResourceType, namespace: str | None, name: str) -> ObjectKey:
        return (resource.group, resource.plural, namespace or "", name)

    def _not_found(self, resource: ResourceType, name: str) -> ApiError:
        what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
        return ApiError(
            404,
            "NotFound",
            f'{what} "{name}" not found',
            details={"name": name, "group": resource.group, "kind": resource.plural},
        )

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.lock:
            obj = self.objects.get(self._key(resource, namespace, name))
            if obj is None:
                raise self._not_found(resource, name)
            return self._render(resource, obj)

    def list_objects(
        self,
        resource: ResourceType,
        namespace: str | None,
        predicate: Predicate = lambda _: True,
    ) -> tuple[list[Obj], int]:
        """Matching objects, ordered by namespace and name, and the list's resourceVersion."""
        with self.lock:
            items = [
                self._render(resource, obj)
                for (group, plural, ns, _), obj in sorted(self.objects.items())
                if (group, plural) == (resource.group, resource.plural)
                and (namespace is None or ns == namespace)
                and predicate(obj)
            ]
            return items, self.rv

    def _render(self, resource: ResourceType, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        out["apiVersion"], out["kind"] = resource.api_version, resource.kind
        return out

    # --- writes ------------------------------------------------------------------------

    def _scope(self, resource: ResourceType, namespace: str | None) -> str | None:
        if not resource.namespaced:
            return None
        if not namespace:
            raise ApiError(400, "BadRequest", f"{resource.kind} is namespaced: no namespace given")
        return namespace

    def create(
        self,
        resource: ResourceType,
        namespace: str | None,
        body: Obj,
        *,
        strict: bool = False,
        keep_status: bool = False,
    ) -> Obj:
        with self.lock:
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            if resource.namespaced:
                ns = namespace or meta.get("namespace")
                if namespace and meta.get("namespace", namespace) != namespace:
                    raise ApiError(
                        400, "BadRequest", "the namespace of the object does not match the URL"
                    )
                namespace = self._scope(resource, ns)
                meta["namespace"] = namespace
                if not self._namespace_exists(namespace or ""):
                    raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
            else:
                namespace = None
                meta.pop("namespace", None)
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError(
                        422, "Invalid", "metadata.name or metadata.generateName is required"
                    )
                suffix = "".join(secrets.choice(string.ascii_lowercase) for _ in range(5))
                meta["name"] = meta["generateName"] + suffix
            key = self._key(resource, namespace, meta["name"])
            if key in self.objects:
                what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{what} "{meta["name"]}" already exists',
                    details={"name": meta["name"], "kind": resource.plural},
                )
            if resource.status_subresource and resource.schema is not None and not keep_status:
                obj.pop("status", None)
            for owned in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
                meta.pop(owned, None)
            self._admit(resource, obj, strict=strict)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            meta["generation"] = 1
            obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
            self._commit(resource, key, "ADDED", obj, None)
            return self._render(resource, obj)

    def _namespace_exists(self, namespace: str) -> bool:
        return ("", "namespaces", "", namespace) in self.objects

    def replace(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
        strict: bool = False,
    ) -> Obj:
        """PUT: the whole object (or its status, with subresource="status")."""
        with self.lock:
            meta = body.get("metadata", {})
            if meta.get("name", name) != name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
            return self._update(
                resource,
                namespace,
                name,
                lambda _: copy.deepcopy(body),
                subresource=subresource,
                strict=strict,
            )

    def patch(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        content_type: str = "application/merge-patch+json",
        subresource: str | None = None,
        strict: bool = False,
    ) -> Obj:
        """PATCH: JSON merge patch (strategic merge is treated as merge), or JSON patch."""
        if content_type.startswith("application/json-patch+json"):

            def apply(old: Obj) -> Obj:
                try:
                    result: Obj = jsonpatch.apply_patch(old, patch)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                    raise ApiError(422, "Invalid", f"the JSON patch does not apply: {e}") from e
                return result

        elif content_type.startswith(
            ("application/merge-patch+json", "application/strategic-merge-patch+json")
        ):
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")

            def apply(old: Obj) -> Obj:
                merged: Obj = merge_patch(old, patch)
                return merged

        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
        with self.lock:
            return self._update(
                resource, namespace, name, apply, subresource=subresource, strict=strict
            )

    def _update(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], Obj],
        *,
        subresource: str | None,
        strict: bool,
    ) -> Obj:
        namespace = self._scope(resource, namespace)
        key = self._key(resource, namespace, name)
        old = self.objects.get(key)
        if old is None:
            raise self._not_found(resource, name)
        if subresource not in (None, "status", "*") or (
            subresource == "status" and not resource.status_subresource
        ):
            raise ApiError(404, "NotFound", f"{resource.plural} has no subresource {subresource}")
        wanted = change(copy.deepcopy(old))
        if not isinstance(wanted, dict):
            raise ApiError(400, "BadRequest", "the object must be a JSON object")
        wanted_meta = wanted.get("metadata") or {}
        old_meta = old["metadata"]
        given_rv = wanted_meta.get("resourceVersion")
        if given_rv not in (None, "") and str(given_rv) != old_meta["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                details={"name": name, "group": resource.group, "kind": resource.plural},
            )
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in wanted:
                new["status"] = wanted["status"]
            else:
                new.pop("status", None)
        else:
            new = wanted
            if subresource is None and resource.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            for owned in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "name"):
                if owned in old_meta:
                    meta[owned] = old_meta[owned]
                else:
                    meta.pop(owned, None)
            if resource.namespaced:
                meta["namespace"] = namespace
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise ApiError(
                        422,
                        "Forbidden",
                        f"no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {sorted(added)}",
                    )
        new["apiVersion"], new["kind"] = resource.api_version, resource.kind
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        self._admit(resource, new, strict=strict)
        if new == old:
            return self._render(resource, old)  # a no-op write: no new version, no event
        if _spec_of(new) != _spec_of(old):
            new["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._commit(resource, key, "DELETED", new, old)
        else:
            self._commit(resource, key, "MODIFIED", new, old)
        return self._render(resource, new)

    def delete(self, resource: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.lock:
            namespace = self._scope(resource, namespace)
            key = self._key(resource, namespace, name)
            old = self.objects.get(key)
            if old is None:
                raise self._not_found(resource, name)
            if old["metadata"].get("deletionTimestamp"):
                return self._render(resource, old)  # already being deleted
            if old["metadata"].get("finalizers"):
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                self._commit(resource, key, "MODIFIED", new, old)
                return self._render(resource, new)
            gone = copy.deepcopy(old)
            self._commit(resource, key, "DELETED", gone, old)
            return self._render(resource, gone)

    def _admit(self, resource: ResourceType, obj: Obj, *, strict: bool) -> None:
        errors = resource.admit(obj, strict=strict)
        if errors:
            name = obj.get("metadata", {}).get("name", "")
            raise ApiError(
                422,
                "Invalid",
                f'{resource.kind}.{resource.group} "{name}" is invalid: ' + "; ".join(errors),
                details={
                    "name": name,
                    "group": resource.group,
                    "kind": resource.kind,
                    "causes": [
                        {
                            "reason": "FieldValueInvalid",
                            "message": error,
                            "field": error.split(":", 1)[0].lstrip("."),
                        }
                        for error in errors
                    ],
                },
            )

    def _commit(
        self, resource: ResourceType, key: ObjectKey, kind: str, new: Obj, old: Obj | None
    ) -> None:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = new
        event = WatchEvent(
            rv=self.rv,
            type=kind,
            resource=resource,
            object=self._render(resource, new),
            old=None if old is None else self._render(resource, old),
        )
        self.history.append(event)
        while len(self.history) > self.history_limit:
            self.compacted_rv = self.history.popleft().rv
        for watcher in list(self.watchers):
            if _same_kind(watcher.resource, resource) and (
                watcher.namespace is None or watcher.namespace == new["metadata"].get("namespace")
            ):
                watcher.deliver(event)

    # --- watch -------------------------------------------------------------------------

    def subscribe(self, watcher: Watcher, since: int | None) -> tuple[list[WatchEvent], int]:
        """Register a watcher. Returns what it must see first — synthetic ADDED events for the
        current objects (since=None), or the recorded events after `since` — and the current
        resourceVersion. Raises ApiError 410 when `since` is older than the history kept."""
        with self.lock:
            if self.closed:
                raise ApiError(503, "ServiceUnavailable", "the server is shutting down")
            if since is None:
                items, _ = self.list_objects(watcher.resource, watcher.namespace, watcher.predicate)
                backlog = [
                    WatchEvent(
                        rv=int(item["metadata"]["resourceVersion"]),
                        type="ADDED",
                        resource=watcher.resource,
                        object=item,
                        old=None,
                    )
                    for item in sorted(items, key=lambda o: int(o["metadata"]["resourceVersion"]))
                ]
            else:
                if since < self.compacted_rv:
                    raise ApiError(
                        410,
                        "Expired",
                        f"too old resource version: {since} ({self.compacted_rv + 1})",
                    )
                backlog = [
                    event
                    for event in self.history
                    if event.rv > since
                    and _same_kind(event.resource, watcher.resource)
                    and (
                        watcher.namespace is None
                        or watcher.namespace == event.object["metadata"].get("namespace")
                    )
                ]
            self.watchers.add(watcher)
            return backlog, self.rv

    def unsubscribe(self, watcher: Watcher) -> None:
        with self.lock:
            self.watchers.discard(watcher)

    def compact(self, *, expire_watches: bool = False) -> None:
        """Forget the event history, as etcd compaction does: resuming from an older version
        is 410 Gone. With expire_watches, open watches also end with a 410 ERROR event (as
        when the server's watch cache falls behind), so their clients must list again."""
        with self.lock:
            self.history.clear()
            self.compacted_rv = self.rv
            if expire_watches:
                gone = ApiError(410, "Expired", "the watch expired: the history was compacted")
                for watcher in list(self.watchers):
                    watcher.deliver(gone)
                self.watchers.clear()

    def close_watches(self) -> None:
        with self.lock:
            self.closed = True
            for watcher in list(self.watchers):
                watcher.deliver(None)
            self.watchers.clear()

    # --- for tests ---------------------------------------------------------------------

    def apply(self, body: Obj) -> Obj:
        """Create or replace a whole object, status included, bypassing status isolation: how
        tests seed state that controllers outside the test (kubelet, a CNI) would write."""
        resource = self.by_kind(body["apiVersion"], body["kind"])
        meta = body.get("metadata", {})
        with self.lock:
            key = self._key(resource, meta.get("namespace"), meta.get("name", ""))
            if key not in self.objects:
                return self.create(resource, meta.get("namespace"), body, keep_status=True)
            stripped = copy.deepcopy(body)
            stripped.get("metadata", {}).pop("resourceVersion", None)
            return self._update(
                resource,
                meta.get("namespace"),
                meta["name"],
                lambda _: stripped,
                subresource="*",
                strict=False,
            )

    def find_objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        with self.lock:
            return [
                self._render(self.by_kind(obj["apiVersion"], obj["kind"]), obj)
                for key, obj in sorted(self.objects.items())
                if obj["kind"] == kind and (namespace is None or key[2] == namespace)
            ]


def _same_kind(a: ResourceType, b: ResourceType) -> bool:
    return (a.group, a.plural) == (b.group, b.plural)


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
