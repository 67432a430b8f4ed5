"""What `/readyz` and `/livez` of `kubgp-controller cluster` answer (served by
controller.health_endpoint on the loop that renews the Lease).

Live: the process does what it is there for. A replica has two loops: the one that acquires or
renews the Lease (the health server runs on it, so a wedged one times the probe out) and, while
it leads, kopf's, in its own thread. kopf's loop stamps a heartbeat every second; `/livez`
fails when that heartbeat is older than `stall_after` (kopf stuck: a blocking call on its loop)
or kopf's thread has ended, and when no Lease attempt has completed for `stall_after` (an API
call hung in the Lease loop). A failing `/livez` gets the container restarted, which releases
the Lease if this replica holds it: a hung kopf would otherwise keep renewing the Lease while
allocating nothing, and the standby would never take over.

Ready: a leader whose kopf has started (its initial listing done), or a standby that reads the
Lease (it can take over). Both kinds are ready: the text says which.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Final, Protocol

from controller.health_endpoint import Health

DEFAULT_STALL_AFTER: Final = 30.0
HEARTBEAT_INTERVAL: Final = 1.0


class ReadyReason(enum.StrEnum):
    Leader = "Leader"  # holds the Lease, kopf running
    Starting = "Starting"  # elected, kopf not started yet
    Standby = "Standby"  # reads the Lease, another replica leads (or nobody yet)
    LeaseUnreadable = "LeaseUnreadable"  # the last attempt could not read the Lease


class LiveReason(enum.StrEnum):
    Running = "Running"
    KopfStalled = "KopfStalled"  # kopf's event loop missed its heartbeats
    KopfStopped = "KopfStopped"  # kopf's thread ended while leading
    LeaseLoopStalled = "LeaseLoopStalled"  # no Lease attempt completed for too long


class LeaseProgress(Protocol):
    """controller.kube.leader.LeaseElector as the probes see it."""

    @property
    def attempted_at(self) -> float | None:
        """When (monotonic) the last acquire/renew attempt ended, None before the first."""

    @property
    def readable(self) -> bool:
        """Whether the last attempt read the Lease."""

    @property
    def holder(self) -> str | None:
        """Who holds the Lease as last read."""


class KopfProgress(Protocol):
    """controller.kube.cluster_watch.KopfThread as the probes see it."""

    @property
    def beat_at(self) -> float | None:
        """When (monotonic) kopf's loop last stamped its heartbeat."""

    def is_alive(self) -> bool: ...

    def is_ready(self) -> bool: ...


class ClusterHealth:
    """The probes' answers from what run_cluster reports: the Lease elector (if any), and the
    kopf thread of the current term (None while standing by)."""

    def __init__(
        self,
        *,
        stall_after: float = DEFAULT_STALL_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_after = stall_after
        self.clock = clock
        self._since = clock()
        self._lease: LeaseProgress | None = None
        self._kopf: KopfProgress | None = None
        self._kopf_since = 0.0

    @property
    def kopf(self) -> KopfProgress | None:
        """The kopf of the current term (None while standing by)."""
        return self._kopf

    def electing(self, lease: LeaseProgress) -> None:
        self._lease = lease

    def acting(self, kopf: KopfProgress) -> None:
        self._kopf, self._kopf_since = kopf, self.clock()

    def standing_by(self) -> None:
        self._kopf = None

    def live(self) -> Health:
        now = self.clock()
        kopf = self._kopf
        if kopf is not None:
            if not kopf.is_alive():
                return Health(False, LiveReason.KopfStopped, "kopf's thread ended")
            age = now - (kopf.beat_at or self._kopf_since)
            if age > self.stall_after:
                return Health(
                    False, LiveReason.KopfStalled, f"kopf's event loop silent for {age:.0f} s"
                )
        lease = self._lease
        if lease is not None:
            age = now - (lease.attempted_at or self._since)
            # A term whose kopf does not stop holds up the Lease loop too: one cause, one reason.
            if age > self.stall_after:
                return Health(
                    False, LiveReason.LeaseLoopStalled, f"no Lease attempt ended for {age:.0f} s"
                )
        return Health(True, LiveReason.Running)

    def ready(self) -> Health:
        kopf = self._kopf
        if kopf is not None:
            if kopf.is_ready():
                return Health(True, ReadyReason.Leader, "leading: kopf is running")
            return Health(False, ReadyReason.Starting, "elected: kopf is starting")
        lease = self._lease
        if lease is None or lease.attempted_at is None:
            return Health(False, ReadyReason.Starting, "no Lease attempt yet")
        if not lease.readable:
            return Health(False, ReadyReason.LeaseUnreadable, "cannot read the Lease")
        holder = lease.holder
        return Health(
            True, ReadyReason.Standby, f"standing by for {holder}" if holder else "standing by"
        )
