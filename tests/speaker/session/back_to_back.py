"""Two (or more) sans-IO sessions wired back to back in memory, with a hand-driven clock."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from speaker.bgp.session.fsm import Close, Connect, Event, Send, Session, StateChanged
from speaker.bgp.wire.framing import Framer
from speaker.bgp.wire.messages import Message, decode_message

End = tuple[Session, int]


@dataclass
class Wire:
    """Routes actions between sessions. `hold(s)` makes `s` stop reading (a frozen peer)."""

    addresses: dict[int, bytes] = field(default_factory=dict)
    now: float = 0.0
    links: dict[End, End] = field(default_factory=dict)
    sent: list[tuple[Session, int, bytes]] = field(default_factory=list)
    changes: list[tuple[Session, StateChanged]] = field(default_factory=list)
    events: list[tuple[Session, Event]] = field(default_factory=list)  # every event, in order
    frozen: set[int] = field(default_factory=set)
    refuse: set[int] = field(default_factory=set)
    peer_of: dict[int, Session] = field(default_factory=dict)
    _queue: deque[tuple[Session, Event]] = field(default_factory=deque)
    _parked: list[tuple[Session, int, bytes]] = field(default_factory=list)
    _parked_closes: list[End] = field(default_factory=list)

    def pair(self, a: Session, b: Session) -> None:
        self.peer_of[id(a)] = b
        self.peer_of[id(b)] = a

    def feed(self, session: Session, events: list[Event]) -> None:
        self._queue.extend((session, e) for e in events)
        self.run()

    def run(self) -> None:
        while self._queue:
            session, event = self._queue.popleft()
            self.events.append((session, event))
            if isinstance(event, StateChanged):
                self.changes.append((session, event))
            elif isinstance(event, Connect):
                other = self.peer_of[id(session)]
                if id(other) in self.frozen:
                    continue  # the attempt hangs; ConnectRetry will abandon it
                if id(other) in self.refuse:
                    self._queue.extend(
                        (session, e)
                        for e in session.connection_failed(event.conn, self.now, "refused")
                    )
                    continue
                conn, events = other.accept(
                    self.now, local_address=self.addresses.get(id(other), b"\x7f\0\0\2")
                )
                self._queue.extend((other, e) for e in events)
                if conn is None:
                    self._queue.extend(
                        (session, e)
                        for e in session.connection_failed(event.conn, self.now, "refused")
                    )
                    continue
                self.links[(session, event.conn)] = (other, conn)
                self.links[(other, conn)] = (session, event.conn)
                made = session.connection_made(
                    event.conn,
                    self.now,
                    local_address=self.addresses.get(id(session), b"\x7f\0\0\1"),
                )
                self._queue.extend((session, e) for e in made)
            elif isinstance(event, Send):
                self.sent.append((session, event.conn, event.data))
                target = self.links.get((session, event.conn))
                if target is None:
                    continue
                other, conn = target
                if id(other) in self.frozen:
                    self._parked.append((other, conn, event.data))
                    continue
                self._queue.extend(
                    (other, e) for e in other.data_received(conn, event.data, self.now)
                )
            elif isinstance(event, Close):
                target = self.links.pop((session, event.conn), None)
                if target is not None:
                    self.links.pop(target, None)
                    other, conn = target
                    if id(other) in self.frozen:
                        self._parked_closes.append(target)
                        continue
                    self._queue.extend((other, e) for e in other.connection_lost(conn, self.now))

    def thaw(self, session: Session) -> None:
        self.frozen.discard(id(session))
        parked, self._parked = self._parked, []
        for other, conn, data in parked:
            self.feed(other, other.data_received(conn, data, self.now))
        closes, self._parked_closes = self._parked_closes, []
        for other, conn in closes:
            self.feed(other, other.connection_lost(conn, self.now))

    def advance(self, seconds: float, *sessions: Session, step: float = 0.5) -> None:
        """Move the clock, firing every timer that falls due, in time order."""
        end = self.now + seconds
        while True:
            due = [
                (d, s)
                for s in sessions
                if id(s) not in self.frozen and (d := s.next_deadline()) is not None and d <= end
            ]
            if not due:
                break
            when, session = min(due, key=lambda x: x[0])
            self.now = max(self.now, when)
            self.feed(session, session.handle_timer(self.now))
        self.now = end

    def inject(self, session: Session, data: bytes) -> None:
        """Bytes on `session`'s Established connection as if it had sent them."""
        conn = session.established
        assert conn is not None
        self.feed(session, [Send(conn.id, data)])

    def of(self, session: Session) -> list[Event]:
        """Every event `session` returned, in order."""
        return [e for s, e in self.events if s is session]

    def messages(self, session: Session) -> list[Message]:
        """Every message `session` sent, decoded (default context is enough for these tests)."""
        out: list[Message] = []
        for who, _conn, data in self.sent:
            if who is session:
                framer = Framer(max_size=65535)
                framer.feed(data)
                out += [decode_message(t, b) for t, b in framer]
        return out
