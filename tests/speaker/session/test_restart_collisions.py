"""Connection collisions around a graceful restart, each interleaving forced by hand (sans-IO).

When both sides connect at once, RFC 4271 §6.8 resolves the collision, but two interleavings
lose every route at a graceful-restart helper (RFC 4724), both seen with BIRD 2 in
tests/hardening/test_graceful_restart.py on a loaded machine (docs/hardening.md):
- the peer reaches Established on its own connection, then accepts ours from its accept queue
  and takes it for a second restart (BIRD: "Neighbor graceful restart detected - already
  pending"), flushing every stale route not re-sent yet. So we send no KEEPALIVE (which is what
  makes the peer Established) while a connection we opened may still be unseen by the peer;
- we close, for a collision, a connection on which we already sent our KEEPALIVE: the peer may
  be Established on it, and a NOTIFICATION ends a graceful restart (the peer flushes). So such
  a connection never loses a collision; the newer one does.
Also: ConnectRetry opens no new connection once one is past Connect (RFC 4271: the timer stops),
and a new connection from the peer while Established is taken as the peer's restart only when
the peer confirms it (its KEEPALIVE), not on its OPEN, which a colliding peer sends too.

Here `us` is the session under test, driven by hand; the peer is only the bytes it sends.
"""

from __future__ import annotations

from collections import defaultdict

from speaker.bgp.rib.update_builder import UpdateBuilder
from speaker.bgp.session.fsm import (
    Close,
    Connect,
    Event,
    Send,
    Session,
    State,
    StateChanged,
)
from speaker.bgp.session.open import build_open
from speaker.bgp.wire.attributes import AsPathAttribute, OriginAttribute
from speaker.bgp.wire.context import DEFAULT_CONTEXT, IPV4_UNICAST
from speaker.bgp.wire.errors import CeaseSubcode, ErrorCode
from speaker.bgp.wire.framing import Framer
from speaker.bgp.wire.messages import Keepalive, Message, Notification, Update, decode_message
from tests.speaker.session.test_fsm import A_ID, ATTRS, B_ID, config, hosts, table

GR: dict[str, object] = {"graceful_restart": True, "restart_time": 120}
LOCAL = b"\x7f\0\0\1"
COLLISION = (ErrorCode.Cease, CeaseSubcode.ConnectionCollisionResolution)


class Us:
    """Our session (AS 65001), restarting, with graceful restart; what it did, per connection."""

    def __init__(self, router_id: int = A_ID) -> None:
        self.s = Session(config(65001, 65002, router_id, **GR), name="us", rng=lambda: 0.0,
                         restarting=True)  # fmt: skip
        self.sent: dict[int, list[Message]] = defaultdict(list)
        self.closed: set[int] = set()
        self.connects: list[int] = []
        self.changes: list[StateChanged] = []
        self.now = 0.0
        self.run(self.s.set_routes(table(hosts(10), ATTRS)))

    def run(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Send):
                framer = Framer(max_size=65535)
                framer.feed(event.data)
                self.sent[event.conn] += [decode_message(t, b) for t, b in framer]
            elif isinstance(event, Close):
                self.closed.add(event.conn)
            elif isinstance(event, Connect):
                self.connects.append(event.conn)
            elif isinstance(event, StateChanged):
                self.changes.append(event)

    def start(self) -> int:
        """Starts; returns the id of our outgoing connection (in Connect)."""
        self.run(self.s.start(self.now))
        return self.connects[-1]

    def accept(self) -> int:
        conn, events = self.s.accept(self.now, local_address=LOCAL)
        assert conn is not None
        self.run(events)
        return conn

    def connected(self, conn: int) -> None:
        self.run(self.s.connection_made(conn, self.now, local_address=LOCAL))

    def receive(self, conn: int, *messages: Message, peer_id: int = B_ID) -> None:
        data = b"".join(
            build_open(config(65002, 65001, peer_id, **GR)).encode(DEFAULT_CONTEXT)
            if m is OPEN
            else m.encode(DEFAULT_CONTEXT)
            for m in messages
        )
        self.run(self.s.data_received(conn, data, self.now))

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while (due := self.s.next_deadline()) is not None and due <= end:
            self.now = max(self.now, due)
            self.run(self.s.handle_timer(self.now))
        self.now = end

    def state(self) -> State:
        return self.s.state

    def keepalives(self, conn: int) -> int:
        return sum(isinstance(m, Keepalive) for m in self.sent[conn])

    def notifications(self, conn: int) -> list[tuple[int, int]]:
        return [(m.code, m.subcode) for m in self.sent[conn] if isinstance(m, Notification)]

    def never_closed_a_confirmed_connection(self) -> bool:
        """No connection got our KEEPALIVE and then a NOTIFICATION from us."""
        return not any(self.keepalives(c) and self.notifications(c) for c in list(self.sent))


OPEN = Keepalive()  # a marker: `receive` puts the peer's OPEN (with graceful restart) in its place


def test_no_keepalive_on_the_peers_connection_while_ours_may_be_unseen_then_collision() -> None:
    """BIRD's interleaving: our connection waits in the peer's accept queue while its own
    connection to us opens. Our KEEPALIVE waits until the peer answers on ours."""
    for our_id, ours_wins in [(A_ID, False), (0x0A000009, True)]:
        us = Us(our_id)
        ours = us.start()
        theirs = us.accept()
        us.receive(theirs, OPEN, Keepalive())  # the peer is in OpenConfirm on its connection
        assert us.keepalives(theirs) == 0 and us.state() is State.OpenSent
        assert us.s.established is None
        # The peer accepts our connection and answers with its OPEN: now a plain collision.
        us.connected(ours)
        us.receive(ours, OPEN)
        winner, loser = (ours, theirs) if ours_wins else (theirs, ours)
        assert loser in us.closed and us.notifications(loser) == [COLLISION]
        assert us.keepalives(loser) == 0 and us.keepalives(winner) == 1
        if not ours_wins:  # the peer's KEEPALIVE came long ago
            assert us.state() is State.Established
        us.receive(winner, Keepalive())
        assert us.state() is State.Established and us.s.connection_ids() == [winner]
        assert any(isinstance(m, Update) for m in us.sent[winner])
        assert us.never_closed_a_confirmed_connection()


def test_keepalive_goes_out_when_our_connection_is_refused_or_never_answered() -> None:
    us = Us()
    ours = us.start()
    theirs = us.accept()
    us.receive(theirs, OPEN, Keepalive())
    assert us.keepalives(theirs) == 0
    us.run(us.s.connection_failed(ours, us.now, "refused"))
    assert us.keepalives(theirs) == 1 and us.state() is State.Established

    us = Us()
    ours = us.start()
    us.connected(ours)  # connected, but the peer never reads it (nor closes it)
    theirs = us.accept()
    us.receive(theirs, OPEN, Keepalive())
    us.advance(1)
    assert us.keepalives(theirs) == 0 and ours not in us.closed
    us.advance(6)  # bounded: well inside the peer's hold time (9 s) in OpenConfirm
    assert ours in us.closed and us.notifications(ours) == [COLLISION]
    assert us.keepalives(theirs) == 1 and us.state() is State.Established


def test_a_connection_we_sent_keepalive_on_never_loses_a_collision() -> None:
    """The peer may be Established on it already: a NOTIFICATION there ends the graceful restart
    at the peer. RFC 4271's identifiers would keep the peer's (higher) connection; the newer
    one is closed instead, which a peer already Established on ours does too."""
    us = Us()
    ours = us.start()
    us.connected(ours)
    us.receive(ours, OPEN)
    assert us.keepalives(ours) == 1 and us.state() is State.OpenConfirm
    theirs = us.accept()
    us.receive(theirs, OPEN)
    assert theirs in us.closed and us.notifications(theirs) == [COLLISION]
    assert ours not in us.closed and us.notifications(ours) == []
    us.receive(ours, Keepalive())
    assert us.state() is State.Established and us.s.connection_ids() == [ours]
    assert us.never_closed_a_confirmed_connection()


def test_connect_retry_opens_no_connection_while_the_peers_is_open() -> None:
    """RFC 4271: ConnectRetry stops once a connection is open. A new connection of ours would
    reach the peer after it is Established on its own: the "second restart" above."""
    us = Us()
    ours = us.start()
    theirs = us.accept()
    us.run(us.s.connection_failed(ours, us.now, "refused"))
    us.receive(theirs, OPEN)
    assert us.keepalives(theirs) == 1 and us.state() is State.OpenConfirm
    us.advance(5)  # well past ConnectRetry (1 s), short of the hold time
    assert us.connects == [ours]
    us.receive(theirs, Keepalive())
    assert us.state() is State.Established


def _peer_routes(us: Us, conn: int) -> None:
    """The peer announces three routes on `conn` (Established)."""
    neg = us.s.negotiated
    assert neg is not None
    attrs = [OriginAttribute(0), AsPathAttribute.sequence(65002)]
    for data in UpdateBuilder(neg.rx).announce(
        IPV4_UNICAST, attrs, hosts(3, 0x0B000000), next_hop=bytes((192, 0, 2, 1))
    ):
        us.run(us.s.data_received(conn, data, us.now))
    assert us.s.rib_in.count(IPV4_UNICAST) == 3


def test_a_new_connection_while_established_is_a_restart_only_once_the_peer_confirms_it() -> None:
    """A colliding peer sends its OPEN on its late connection and then closes it (it is
    Established on ours): the session stays. A restarted peer answers with KEEPALIVE: then
    the old connection is closed silently and its routes are kept stale (RFC 4724 §4.2)."""
    # Collision: the peer's connection, accepted late, is refused by the peer itself.
    us = Us()
    ours = us.start()
    us.connected(ours)
    us.receive(ours, OPEN, Keepalive())
    _peer_routes(us, ours)
    late = us.accept()
    us.receive(late, OPEN)
    assert ours not in us.closed and us.s.established is not None
    assert us.s.established.id == ours and us.s.stale == {}
    us.receive(late, Notification(code=ErrorCode.Cease,
                                  subcode=CeaseSubcode.ConnectionCollisionResolution))  # fmt: skip
    assert late in us.closed and ours not in us.closed
    assert us.state() is State.Established and us.s.connection_ids() == [ours]
    assert us.notifications(ours) == [] and [c.reason for c in us.changes if c.reason] == []
    assert us.s.rib_in.count(IPV4_UNICAST) == 3 and us.s.stale == {}

    # Restart: the peer goes on on the new connection.
    us = Us()
    ours = us.start()
    us.connected(ours)
    us.receive(ours, OPEN, Keepalive())
    _peer_routes(us, ours)
    new = us.accept()
    us.receive(new, OPEN, Keepalive())
    assert ours in us.closed and us.notifications(ours) == []
    assert us.state() is State.Established and us.s.connection_ids() == [new]
    assert [c.detail for c in us.changes if c.reason] == [
        "peer restarted: new connection with graceful restart"
    ]
    assert IPV4_UNICAST in us.s.families
    assert len(us.s.stale[IPV4_UNICAST]) == 3 and us.s.rib_in.count(IPV4_UNICAST) == 3
