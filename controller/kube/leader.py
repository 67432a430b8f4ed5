"""Leader election with a coordination.k8s.io/v1 Lease through the official client.

client-go's algorithm, small: read the Lease; take it when it is free, ours, or its record has
not changed for `lease_duration` by *our* clock (no trust in other machines' clocks); write it
back with the resourceVersion we read, so of two candidates only one write wins (409 for the
other). The leader renews every `retry_period` and stops acting when it could not renew for
`renew_deadline` (< lease_duration): so a leader cut off from the API server stops writing
before anyone else may take over, except for a process frozen past its own deadline — the
dual-active window that allocation must survive by itself (see docs/cluster-controller.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import kubernetes

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")


class LeaseElector:
    """Acquire, hold and release one Lease. The blocking client calls run in threads."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        config: LeaseConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = kubernetes.client.CoordinationV1Api(api_client)
        self.config = config
        self.clock = clock
        self._renewed_at: float | None = None  # when we last wrote the Lease as its holder
        self._observed: tuple[str | None, str | None] | None = None  # (holder, renewTime)
        self._observed_at = 0.0
        self._lock = threading.Lock()  # the renew loop and fenced writes run in two threads
        # Called (in the renewing thread) when a renewal succeeds after our leadership had
        # lapsed: writes skipped meanwhile are waiting for exactly this.
        self._on_confirmed: list[Callable[[], None]] = []
        # What the health probes read (controller.cluster.probes.LeaseProgress).
        self.attempted_at: float | None = None  # when the last attempt ended (clock)
        self.readable = False  # whether it read the Lease
        self.holder: str | None = None  # who held it then

    def add_confirmed_listener(self, callback: Callable[[], None]) -> None:
        self._on_confirmed.append(callback)

    def remove_confirmed_listener(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._on_confirmed.remove(callback)

    def _renewed(self) -> None:
        lapsed = not self.is_leader()
        self._renewed_at = self.clock()
        if lapsed:
            for callback in list(self._on_confirmed):
                callback()

    def is_leader(self) -> bool:
        """True while our last successful renewal is within the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self.clock() - renewed < self.config.renew_deadline

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until we hold the Lease (True) or `stop` is set (False)."""
        while not stop.is_set():
            if await asyncio.to_thread(self.try_acquire_or_renew):
                logger.info("became leader (Lease %s/%s)", self.config.namespace, self.config.name)
                return True
            await _wait(stop, self.config.retry_period)
        return False

    async def hold(self, stop: asyncio.Event) -> bool:
        """Renew until `stop` is set (True) or leadership is lost (False)."""
        while not stop.is_set():
            await _wait(stop, self.config.retry_period)
            if stop.is_set():
                break
            ok = await asyncio.to_thread(self.try_acquire_or_renew)
            if not ok and not self.is_leader():
                logger.warning("lost the Lease %s/%s", self.config.namespace, self.config.name)
                self._renewed_at = None
                return False
        return True

    def confirm(self) -> bool:
        """Renew now and say whether we still hold the Lease: a fence before a write that must
        not come from a deposed leader (blocking; call it from a thread)."""
        return self.is_leader() and self.try_acquire_or_renew()

    async def release(self) -> None:
        """Give the Lease up (holder cleared) so a standby need not wait for it to expire."""
        await asyncio.to_thread(self._release)

    # --- the blocking part ---------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        with self._lock:
            try:
                return self._try_acquire_or_renew()
            finally:
                self.attempted_at = self.clock()

    def _try_acquire_or_renew(self) -> bool:
        cfg = self.config
        now = datetime.now(UTC)
        ApiException = kubernetes.client.ApiException
        self.readable = False
        try:
            lease = self.api.read_namespaced_lease(cfg.name, cfg.namespace)
        except ApiException as err:
            if err.status != 404:
                logger.warning("reading the Lease failed: %s", err.reason)
                return False
            self.readable, self.holder = True, None
            body = kubernetes.client.V1Lease(
                metadata=kubernetes.client.V1ObjectMeta(name=cfg.name, namespace=cfg.namespace),
                spec=self._spec(now, acquired=now, transitions=0),
            )
            try:
                self.api.create_namespaced_lease(cfg.namespace, body)
            except ApiException as create_err:
                logger.info("creating the Lease failed: %s", create_err.reason)
                return False
            self._renewed()
            return True
        except Exception as err:  # network errors: not leader this round  # noqa: BLE001
            logger.warning("reading the Lease failed: %s", err)
            return False

        spec = lease.spec or kubernetes.client.V1LeaseSpec()
        holder = spec.holder_identity or None
        self.readable, self.holder = True, holder
        record = (holder, None if spec.renew_time is None else str(spec.renew_time))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        duration = spec.lease_duration_seconds or cfg.lease_duration
        if (
            holder is not None
            and holder != cfg.identity
            and self.clock() - self._observed_at < duration
        ):
            return False  # someone else holds it and renews it
        ours = holder == cfg.identity
        transitions = (spec.lease_transitions or 0) + (0 if ours else 1)
        acquired = spec.acquire_time if ours and spec.acquire_time else now
        lease.spec = self._spec(now, acquired=acquired, transitions=transitions)
        try:
            # The resourceVersion we read rides along: a concurrent writer makes this 409.
            self.api.replace_namespaced_lease(cfg.name, cfg.namespace, lease)
        except ApiException as err:
            logger.info("writing the Lease failed: %s", err.reason)
            return False
        except Exception as err:  # noqa: BLE001
            logger.warning("writing the Lease failed: %s", err)
            return False
        self._renewed()
        return True

    def _spec(
        self, now: datetime, *, acquired: datetime, transitions: int
    ) -> kubernetes.client.V1LeaseSpec:
        return kubernetes.client.V1LeaseSpec(
            holder_identity=self.config.identity,
            lease_duration_seconds=max(1, round(self.config.lease_duration)),
            acquire_time=acquired,
            renew_time=now,
            lease_transitions=transitions,
        )

    def _release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        cfg = self.config
        self._renewed_at = None
        try:
            lease = self.api.read_namespaced_lease(cfg.name, cfg.namespace)
            if lease.spec is None or lease.spec.holder_identity != cfg.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            self.api.replace_namespaced_lease(cfg.name, cfg.namespace, lease)
        except Exception as err:  # best effort: the Lease expires anyway  # noqa: BLE001
            logger.info("releasing the Lease failed: %s", err)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
