"""What a session has sent and received, counted as plain ints (read by the metrics layer).

Counted in the sans-IO core, so that the counts mean the same in unit tests and in the daemon:
messages by type, NOTIFICATIONs by (code, subcode), and flaps (Established -> anything else).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from speaker.bgp.wire.framing import NOTIFICATION

HEADER_TYPE_OFFSET = 18


@dataclass(slots=True)
class MessageCounters:
    sent: Counter[int] = field(default_factory=Counter)
    received: Counter[int] = field(default_factory=Counter)
    notifications_sent: Counter[tuple[int, int]] = field(default_factory=Counter)
    notifications_received: Counter[tuple[int, int]] = field(default_factory=Counter)
    flaps: int = 0

    def on_sent(self, wire: bytes) -> None:
        """One encoded message (header included)."""
        msg_type = wire[HEADER_TYPE_OFFSET]
        self.sent[msg_type] += 1
        if msg_type == NOTIFICATION and len(wire) >= HEADER_TYPE_OFFSET + 3:
            self.notifications_sent[(wire[19], wire[20])] += 1

    def on_received(self, msg_type: int, body: bytes) -> None:
        self.received[msg_type] += 1
        if msg_type == NOTIFICATION and len(body) >= 2:
            self.notifications_received[(body[0], body[1])] += 1
