"""Message, NOTIFICATION and flap counters kept by the sans-IO session (what metrics read)."""

from __future__ import annotations

from speaker.bgp.session.fsm import State
from speaker.bgp.wire.context import IPV4_UNICAST
from speaker.bgp.wire.errors import ErrorCode, OPENMessageErrorSubcode
from speaker.bgp.wire.framing import KEEPALIVE, NOTIFICATION, OPEN, UPDATE
from speaker.bgp.wire.messages import Update
from tests.speaker.session.test_fsm import ATTRS, hosts, pair, table


def test_counts_match_the_messages_on_the_wire() -> None:
    wire, a, b = pair()
    wire.feed(a, a.set_routes(table(hosts(2000), ATTRS)))
    wire.advance(30, a, b)
    assert b.rib_in.count(IPV4_UNICAST) == 2000
    sent_updates = [m for m in wire.messages(a) if isinstance(m, Update)]
    # Everything a sent, b received, and the counts agree with the decoded wire.
    assert a.counters.sent[UPDATE] == len(sent_updates) >= 2  # End-of-RIB + the 2000 /32s
    assert b.counters.received[UPDATE] == a.counters.sent[UPDATE]
    assert a.counters.sent[OPEN] == b.counters.received[OPEN] == 1
    assert a.counters.sent[KEEPALIVE] == b.counters.received[KEEPALIVE] >= 30 // 3
    assert a.counters.flaps == b.counters.flaps == 0


def test_hold_timer_expiry_counts_a_flap_and_the_notification_both_ways() -> None:
    wire, a, b = pair()
    wire.frozen.add(id(b))
    wire.advance(10, a, b)
    assert a.counters.flaps == 1
    assert a.counters.notifications_sent == {(ErrorCode.HoldTimerExpired, 0): 1}
    wire.thaw(b)
    assert b.counters.notifications_received == {(ErrorCode.HoldTimerExpired, 0): 1}
    assert b.counters.notifications_sent == {}
    wire.advance(5, a, b)
    assert a.state is State.Established and a.counters.sent[OPEN] == 2


def test_bad_peer_as_counts_the_open_error_and_no_flap() -> None:
    _wire, a, b = pair(b_kw={"peer_asn": 65099})
    bad_as = (ErrorCode.OPENMessageError, OPENMessageErrorSubcode.BadPeerAS)
    assert b.counters.notifications_sent[bad_as] == 1
    assert a.counters.notifications_received[bad_as] == 1
    assert a.counters.received[NOTIFICATION] == 1
    assert a.counters.flaps == b.counters.flaps == 0  # never Established
