"""What a BFD session's state means for its BGP session (RFC 5882), sans-IO.

    gate = BgpGate()
    action = gate.on_state(changed, now)     # TearDown, Release or None
    action = gate.handle_timer(now)          # Release or None, at gate.next_deadline()
    gate.holding                             # True: keep BGP down (refuse, do not connect)

The rules, and why (docs/bfd.md has the longer version):

1. BFD that has never been Up does not hold BGP back. BIRD and FRR both do this by default:
   BIRD acts only on an Up -> Down change of the BFD request (`req->down`), FRR only when
   the BFD status goes from Up to Down. A ToR without BFD configured (or with BFD blocked)
   then still gets its BGP session, unprotected, instead of none.
2. Up -> Down (detection time expired, or the remote said Down): the BGP session is torn
   down at once (the caller sends Cease/BFD Down, RFC 9384, as FRR does) and held down until
   BFD is Up again. This is stricter than BIRD and FRR's default, which let BGP reconnect on
   its own timers whatever BFD says: with a path that loses BFD's UDP but still carries a TCP
   handshake now and then (a flapping or congested link, a filter on UDP 3784), that would
   make BGP flap each time BFD notices; holding until BFD is Up again makes BFD the judge of
   the path, as the draft on BGP BFD strict mode (and FRR's `bfd strict`) does.
3. Down because the remote signalled AdminDown (it removed BFD, or shut down gracefully): no
   teardown, and rule 1 again (RFC 5882 §3.2: AdminDown is not a path failure). The same
   when AdminDown arrives while we already hold BGP (`on_remote_admin_down`).
4. The hold has a limit (`hold_limit`, default 60 s): a peer whose BFD stopped answering for
   good but whose BGP still answers gets its BGP session back after that long, unprotected
   (rule 1 again), rather than never. While the path is really down BGP cannot connect
   anyway; on a flapping path the limit also spaces BGP's attempts out to one a minute.
5. Our own AdminDown (BFD removed from the peer's config): rule 1 again.
"""

from __future__ import annotations

import enum
from typing import Final

from speaker.bfd.packet import State
from speaker.bfd.session import StateChanged

DEFAULT_HOLD_LIMIT: Final = 60.0


class GateAction(enum.Enum):
    TearDown = "tear-down"  # stop the BGP session now, and keep it down
    Release = "release"  # BGP may run again: start it


class BgpGate:
    """One peer's BFD -> BGP coupling state."""

    def __init__(self, *, hold_limit: float = DEFAULT_HOLD_LIMIT) -> None:
        self.hold_limit = hold_limit
        self.has_been_up = False
        self._holding_since: float | None = None

    @property
    def holding(self) -> bool:
        return self._holding_since is not None

    def next_deadline(self) -> float | None:
        return None if self._holding_since is None else self._holding_since + self.hold_limit

    def on_state(self, changed: StateChanged, now: float) -> GateAction | None:
        if changed.new is State.Up:
            self.has_been_up = True
            return self._release()
        if changed.new is State.AdminDown or (
            changed.new is State.Down and changed.remote_admin_down
        ):
            self.has_been_up = False
            return self._release()
        if changed.old is State.Up and changed.new is State.Down:
            self._holding_since = now
            return GateAction.TearDown
        return None

    def on_remote_admin_down(self) -> GateAction | None:
        """A packet said AdminDown while our session was already Down (so no state changed):
        the remote turned BFD off; rule 3."""
        self.has_been_up = False
        return self._release()

    def handle_timer(self, now: float) -> GateAction | None:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        self.has_been_up = False
        return self._release()

    def _release(self) -> GateAction | None:
        if self._holding_since is None:
            return None
        self._holding_since = None
        return GateAction.Release


__all__ = ["DEFAULT_HOLD_LIMIT", "BgpGate", "GateAction"]
