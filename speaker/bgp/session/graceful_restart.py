"""Graceful restart (RFC 4724): what one session does for a restarting peer, and for our restart.

Helper (§4.2), `GracefulRestartHelper`: when both sides sent the capability and the peer's TCP
connection is lost (or its hold timer expires) without a NOTIFICATION, the peer's routes of the
families in its capability stay in the Adj-RIB-In, marked stale (`AdjRibIn.stale`); the other
families are removed. Stale routes go:
- per family at the peer's End-of-RIB: what was not sent again is removed;
- all at once when the peer's restart time runs out before it is back;
- per family at once when the new OPEN has no capability or no forwarding bit for it;
- otherwise, once back, after `STALE_PATH_TIME` without End-of-RIB.
A new connection whose OPEN has the capability while the old one is still Established means
the peer restarted and the old connection is dead (the FSM closes it and calls `keep`).

Restarting speaker (§4.1), `RestartingSpeaker`: the R bit in our OPEN until the first session
is Established after a restart (`Session(restarting=True)`), and End-of-RIB held back while
`hold_end_of_rib` is set (the runtime holds it until the complete desired state is in), so that
the peer keeps its stale copy of our routes until then.

Every change to the Adj-RIB-In is returned as a `RibInChanged`/`RibInStale` event, each note for
the log as a `GracefulRestartNote`.
"""

from __future__ import annotations

from dataclasses import dataclass

from speaker.bgp.rib.adj_rib_in import AdjRibIn, RibInChanged, RibInEvent
from speaker.bgp.wire.capabilities import GracefulRestartCapability
from speaker.bgp.wire.context import Family, family_name

STALE_PATH_TIME = 360  # helper: stale routes wait this long for End-of-RIB (FRR's default)


@dataclass(frozen=True, slots=True)
class GracefulRestartNote:
    """Something the helper did with a peer's stale routes (for the log)."""

    text: str


HelperEvent = RibInEvent | GracefulRestartNote


def _removed(changes: list[RibInChanged]) -> int:
    return sum(len(c.prefixes) for c in changes)


class GracefulRestartHelper:
    """The helper role of one session over its Adj-RIB-In; `deadline` is when stale routes
    that are still stale are removed."""

    __slots__ = ("_at", "families", "rib_in")

    def __init__(self, rib_in: AdjRibIn, families: frozenset[Family]) -> None:
        self.rib_in = rib_in
        self.families = families  # the configured ones: never keep what we do not take
        self._at: float | None = None

    @property
    def deadline(self) -> float | None:
        return self._at if self.rib_in.stale else None

    def keep(self, now: float, cap: GracefulRestartCapability) -> list[HelperEvent]:
        """The peer is restarting (connection lost): keep its routes of `cap`'s families stale
        for its restart time; remove the rest."""
        kept = {(a, s) for a, s, _ in cap.families} & self.families
        out: list[HelperEvent] = list(self.rib_in.mark_stale(kept))
        count = self.rib_in.stale_count()
        if cap.restart_time == 0 or not count:
            out += self.rib_in.flush_stale()
            self._at = None
            return out
        self._at = now + cap.restart_time
        out.append(GracefulRestartNote(
            f"graceful restart: keeping {count} routes as stale for up to {cap.restart_time}s"
        ))  # fmt: skip
        return out

    def on_established(
        self, now: float, cap: GracefulRestartCapability | None
    ) -> list[HelperEvent]:
        """The peer is back: remove at once the stale families it kept no forwarding state for;
        wait at most `STALE_PATH_TIME` for End-of-RIB for the others."""
        out: list[HelperEvent] = []
        if not self.rib_in.stale:
            return out
        flushed: list[RibInChanged] = []
        for family in list(self.rib_in.stale):
            if cap is None or not cap.forwarding_preserved(family):
                flushed += self.rib_in.flush_stale(family)
        out += flushed
        if flushed:
            out.append(GracefulRestartNote(
                f"graceful restart: removed {_removed(flushed)} stale routes"
                " (forwarding state not kept)"
            ))  # fmt: skip
        if self.rib_in.stale:
            self._at = now + STALE_PATH_TIME
        return out

    def on_end_of_rib(self, family: Family) -> list[HelperEvent]:
        """End-of-RIB from the peer: its stale routes of `family` that it did not send again go."""
        if family not in self.rib_in.stale:
            return []
        flushed = self.rib_in.flush_stale(family)
        note = GracefulRestartNote(
            f"graceful restart: End-of-RIB {family_name(family)}, removed {_removed(flushed)}"
            " stale routes not re-sent"
        )
        return [*flushed, note]

    def on_timer(self, now: float) -> list[HelperEvent]:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        flushed = self.rib_in.flush_stale()
        self._at = None
        note = GracefulRestartNote(
            f"graceful restart: timed out, removed {_removed(flushed)} stale routes"
        )
        return [*flushed, note]


@dataclass(slots=True)
class RestartingSpeaker:
    """Our own restart as one session sees it: the R bit until first Established, and
    End-of-RIB held while `hold_end_of_rib` (owed once Established: `eor_owed`)."""

    restarting: bool = False
    hold_end_of_rib: bool = False
    eor_owed: bool = False

    def defer_end_of_rib(self) -> bool:
        """Established: True if End-of-RIB must wait for `release`."""
        if self.hold_end_of_rib:
            self.eor_owed = True
        return self.hold_end_of_rib

    def release(self) -> bool:
        """Stop holding; True if End-of-RIB is owed now."""
        owed = self.eor_owed
        self.hold_end_of_rib = False
        self.eor_owed = False
        return owed


__all__ = [
    "STALE_PATH_TIME",
    "GracefulRestartHelper",
    "GracefulRestartNote",
    "HelperEvent",
    "RestartingSpeaker",
]
