"""What happens to a received UPDATE before and as it enters the Adj-RIB-In.

`Inbound.receive(update, body, families, rib_in)` takes one decoded UPDATE (End-of-RIB is
graceful restart's and never comes here) through, in order:

1. RFC 7606 outcomes, already applied by the decoder (`speaker/bgp/wire/messages.py`): a
   treat-as-withdraw UPDATE arrives with its NLRI moved to the withdrawals, a discarded
   attribute is absent. Each is reported (RFC 7606 §6: the error, the NLRI and the UPDATE must
   be logged).
2. Families: NLRI, announced or withdrawn, of a family the session did not negotiate are
   ignored (RFC 4760 §8, RFC 5492 §3: a family is exchanged only when both sides advertised
   it).
3. From an external peer, the leftmost AS must be the peer's (RFC 4271 §6.3); a path that
   fails is treat-as-withdraw (RFC 7606 §7.2), reported as one.
4. AS loop (RFC 4271 §9.1.2): a path that holds the session's local ASN (`SessionConfig.
   local_asn`, the localAsn override included) anywhere in AS_PATH (AS4_PATH merged). Its
   routes are not stored; since the peer's new route replaces its old one, a prefix it had
   sent before is removed.
5. What is left goes into the Adj-RIB-In, per family: withdrawals first, then announcements.

Nothing ignored is stored, so nothing ignored counts in the Adj-RIB-In's size (prefixes
received, max-prefixes). Nothing here resets the session; max-prefixes, which does, is the
FSM's (`speaker/bgp/session/fsm.py`), checked after.

Returned as events, in order: one `UpdateOutcome` per UPDATE and outcome that was not taken
as sent, then the `RibInChanged` changes. `counts` adds them up per outcome (UPDATEs and
prefixes) for the metrics.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from speaker.bgp.rib.adj_rib_in import AdjRibIn, ReceivedPath, RibInChanged
from speaker.bgp.session.config import SessionConfig
from speaker.bgp.wire.attributes import (
    AS_SEQUENCE,
    AS_SET,
    Attribute,
    MpReachNlriAttribute,
    MpUnreachNlriAttribute,
    NextHopAttribute,
    Segment,
)
from speaker.bgp.wire.context import IPV4_UNICAST, Family, family_name
from speaker.bgp.wire.errors import ErrorAction, Problem, code_name, subcode_name
from speaker.bgp.wire.messages import Update
from speaker.bgp.wire.nlri import Prefix

Nlri = tuple[tuple[Family, tuple[Prefix, ...]], ...]


class Outcome(enum.Enum):
    """Why (part of) a received UPDATE was not taken as sent."""

    TreatAsWithdraw = "treat-as-withdraw"  # RFC 7606 §2 (decoder errors, eBGP first AS)
    AttributeDiscard = "attribute-discard"  # RFC 7606 §2
    AsLoop = "as-loop"  # RFC 4271 §9.1.2: our own ASN in the AS path
    FamilyNotNegotiated = "family-not-negotiated"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateOutcome:
    """One UPDATE not taken as sent: the outcome, the error, the NLRI it hit, the UPDATE body."""

    outcome: Outcome
    error: str
    nlri: Nlri
    update: bytes

    @property
    def prefixes(self) -> int:
        return sum(len(p) for _, p in self.nlri)


@dataclass(slots=True)
class OutcomeCounts:
    """UPDATEs and prefixes per outcome since the session was created."""

    updates: Counter[Outcome]
    prefixes: Counter[Outcome]


def problem_text(problem: Problem) -> str:
    text = f"{code_name(problem.code)}/{subcode_name(problem.code, problem.subcode)}"
    if problem.reason:
        text += f": {problem.reason}"
    if problem.data:
        text += f" (data {problem.data.hex()})"
    return text


def _nonempty(runs: list[tuple[Family, tuple[Prefix, ...]]]) -> Nlri:
    return tuple((f, p) for f, p in runs if p)


class Inbound:
    """The inbound checks of one session (its `SessionConfig`), and what they counted."""

    __slots__ = ("_ebgp", "_local", "_peer", "config", "counts")

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.counts = OutcomeCounts(Counter(), Counter())
        self._ebgp = config.ebgp
        self._local = config.local_asn
        self._peer = config.peer_asn

    def receive(
        self, update: Update, body: bytes, families: frozenset[Family], rib_in: AdjRibIn
    ) -> list[UpdateOutcome | RibInChanged]:
        """Take one UPDATE into `rib_in`; `families` are those negotiated on the session."""
        out: list[UpdateOutcome | RibInChanged] = []
        withdrawn: list[tuple[Family, tuple[Prefix, ...]]] = []
        announced: list[tuple[Family, tuple[Prefix, ...]]] = []
        ignored: list[tuple[Family, tuple[Prefix, ...]]] = []
        attrs: list[Attribute] = []  # what the routes keep: all but MP_*
        reach: MpReachNlriAttribute | None = None
        if update.withdrawn:
            withdrawn.append((IPV4_UNICAST, update.withdrawn))
        for attr in update.attributes:
            if isinstance(attr, MpReachNlriAttribute):
                reach = attr
            elif isinstance(attr, MpUnreachNlriAttribute):
                if attr.withdrawn:
                    withdrawn.append((attr.family, attr.withdrawn))
            else:
                attrs.append(attr)
        if update.nlri:
            announced.append((IPV4_UNICAST, update.nlri))
        if reach is not None and reach.nlri:
            announced.append((reach.family, reach.nlri))

        if update.problems:
            self._decoder_outcomes(out, update, body, withdrawn, announced)
        for runs in (withdrawn, announced):
            for run in runs:
                if run[0] not in families:
                    ignored.append(run)
        if ignored:
            withdrawn = [r for r in withdrawn if r[0] in families]
            announced = [r for r in announced if r[0] in families]
            names = ", ".join(family_name(f) for f in sorted({f for f, _ in ignored}))
            why = f"{names} not negotiated on this session"
            self._report(out, Outcome.FamilyNotNegotiated, body, tuple(ignored), why)
        if announced:
            refused = self._path_error(update.as_path())
            if refused is not None:
                self._report(out, refused[0], body, tuple(announced), refused[1])
                withdrawn += announced
                announced = []

        for family, prefixes in withdrawn:
            out.append(rib_in.set(family, prefixes, None))
        if announced:
            kept = tuple(attrs)
            for family, prefixes in announced:
                if reach is not None and family == reach.family:
                    next_hop: bytes | None = reach.next_hop_global
                else:
                    nh = update.attribute(NextHopAttribute.TYPE)
                    next_hop = nh.address if isinstance(nh, NextHopAttribute) else None
                out.append(rib_in.set(family, prefixes, ReceivedPath(kept, next_hop)))
        return out

    def _path_error(self, path: tuple[Segment, ...]) -> tuple[Outcome, str] | None:
        """Why the routes of an AS path are not taken, if they are not: from an external peer
        the leftmost AS must be the peer's (RFC 4271 §6.3; treat-as-withdraw, RFC 7606 §7.2);
        a path through our own AS is a loop (RFC 4271 §9.1.2)."""
        if self._ebgp:
            peer = self._peer
            if not path or path[0][0] != AS_SEQUENCE or not path[0][1]:
                why = f"AS path does not start with the peer's AS {peer} (RFC 4271 §6.3)"
                return Outcome.TreatAsWithdraw, why
            first = path[0][1][0]
            if first != peer:
                why = f"AS path starts with AS {first}, not the peer's AS {peer} (RFC 4271 §6.3)"
                return Outcome.TreatAsWithdraw, why
        local = self._local
        for kind, asns in path:
            if local in asns and kind in (AS_SEQUENCE, AS_SET):
                return Outcome.AsLoop, f"AS path holds our own AS {local} (loop, RFC 4271 §9.1.2)"
        return None

    def _report(
        self,
        out: list[UpdateOutcome | RibInChanged],
        outcome: Outcome,
        body: bytes,
        nlri: Nlri,
        error: str,
    ) -> None:
        event = UpdateOutcome(outcome=outcome, error=error, nlri=nlri, update=body)
        self.counts.updates[outcome] += 1
        self.counts.prefixes[outcome] += event.prefixes
        out.append(event)

    def _decoder_outcomes(
        self,
        out: list[UpdateOutcome | RibInChanged],
        update: Update,
        body: bytes,
        withdrawn: list[tuple[Family, tuple[Prefix, ...]]],
        announced: list[tuple[Family, tuple[Prefix, ...]]],
    ) -> None:
        """RFC 7606 §6: what the decoder did, with the NLRI it applies to."""
        for action, outcome, nlri in (
            (ErrorAction.TREAT_AS_WITHDRAW, Outcome.TreatAsWithdraw, withdrawn),
            (ErrorAction.ATTRIBUTE_DISCARD, Outcome.AttributeDiscard, announced),
        ):
            errors = [problem_text(p) for p in update.problems if p.action is action]
            if errors:
                self._report(out, outcome, body, _nonempty(nlri), "; ".join(errors))


__all__ = ["Inbound", "Outcome", "OutcomeCounts", "UpdateOutcome", "problem_text"]
