"""A small kopf operator for proving the emulator against the real kopf: event handlers and an
index (what the node agent uses), change handlers with finalizers (what kopf relies the server
for), and a server-side field selector for one Node. It records what it saw in a Recorder.

Run it with `running(...)`: kopf.operator in a thread with its own event loop, standalone (no
peering), stopped through its stop flag and joined — before the emulator is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import kopf

from testing.wait import DEFAULT_TIMEOUT, WaitTimeout, describe, wait_for


@dataclass
class Recorder:
    events: list[tuple[str, str | None, str]] = field(default_factory=list)  # plural, type, name
    changes: list[tuple[str, str]] = field(default_factory=list)  # cause, name
    peer_index: dict[int, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(
        self, condition: Callable[[Recorder], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Until `condition(recorder)` holds (checked under the lock)."""

        def holds() -> bool:
            with self.lock:
                return condition(self)

        try:
            wait_for(holds, describe(condition), timeout, interval=0.02)
        except WaitTimeout as exc:
            with self.lock:
                raise WaitTimeout(f"{exc}: kopf saw {self.events}, {self.changes}") from None


def build_registry(recorder: Recorder, url: str) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, token="emulator")

    @kopf.index("kubgp.io", "bgppeers", id="peers_by_asn", registry=registry)
    def peers_by_asn(name: str, spec: kopf.Spec, **_: Any) -> dict[int, str]:
        return {int(spec["peerASN"]): name}

    @kopf.on.event("kubgp.io", "bgppeers", registry=registry)
    def peer_event(event: kopf.RawEvent, **kwargs: Any) -> None:
        peers_by_asn: kopf.Index[int, str] = kwargs["peers_by_asn"]
        with recorder.lock:
            recorder.events.append(("bgppeers", event["type"], event["object"]["metadata"]["name"]))
            recorder.peer_index = {asn: sorted(names) for asn, names in peers_by_asn.items()}

    @kopf.on.event("nodes", registry=registry)
    def node_event(event: kopf.RawEvent, **_: Any) -> None:
        with recorder.lock:
            recorder.events.append(("nodes", event["type"], event["object"]["metadata"]["name"]))

    @kopf.on.create("kubgp.io", "bgpadvertisements", registry=registry)
    def adv_created(name: str, **_: Any) -> None:
        with recorder.lock:
            recorder.changes.append(("create", name))

    @kopf.on.update("kubgp.io", "bgpadvertisements", registry=registry)
    def adv_updated(name: str, **_: Any) -> None:
        with recorder.lock:
            recorder.changes.append(("update", name))

    @kopf.on.delete("kubgp.io", "bgpadvertisements", registry=registry)
    def adv_deleted(name: str, **_: Any) -> None:
        with recorder.lock:
            recorder.changes.append(("delete", name))

    return registry


def settings(*, node_name: str, server_timeout: int = 2) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.watching.field_selectors["nodes"] = f"metadata.name={node_name}"
    settings.watching.server_timeout = server_timeout  # reconnects resume from resourceVersion
    settings.posting.enabled = False
    return settings


@contextlib.contextmanager
def running(registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings) -> Iterator[None]:
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    settings=settings,
                    standalone=True,
                    clusterwide=True,
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as e:
            errors.append(e)
            raise

    thread = threading.Thread(target=run, name="kopf", daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout=10):
            raise AssertionError(f"kopf did not become ready: {errors}")
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
        if thread.is_alive():
            raise AssertionError("kopf did not stop within 15 s")
    if errors:
        raise AssertionError(f"kopf failed: {errors}")
