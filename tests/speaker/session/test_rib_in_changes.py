"""The Adj-RIB-In change log (speaker/bgp/rib/adj_rib_in.py): a consumer that only sees the
`RibInChanged`/`RibInStale` events a session returns holds exactly its Adj-RIB-In, stale marks
included, through announce, replace, withdraw, inbound checks, graceful restart and flushes."""

from __future__ import annotations

from speaker.bgp.rib.adj_rib_in import ReceivedPath, RibInChanged, RibInStale
from speaker.bgp.rib.adj_rib_out import PathAttributes
from speaker.bgp.session.fsm import Session, State
from speaker.bgp.wire.attributes import AsPathAttribute, OriginAttribute
from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST, Family
from speaker.bgp.wire.messages import Update
from speaker.bgp.wire.nlri import Prefix, prefix_from_int
from tests.speaker.session.back_to_back import Wire
from tests.speaker.session.test_fsm import A_ID, ATTRS, ATTRS2, config, hosts, pair

BOTH = frozenset({IPV4_UNICAST, IPV6_UNICAST})
GR: dict[str, object] = {"graceful_restart": True, "restart_time": 120, "families": BOTH}
NH6 = bytes.fromhex("20010db8000000000000000000000001")
LOOPED = PathAttributes((OriginAttribute(0), AsPathAttribute.sequence(65001, 65002)))
Table = dict[Family, dict[Prefix, PathAttributes]]


def v6(n: int) -> list[Prefix]:
    return [prefix_from_int((0x20010DB8 << 96) + (i << 64), 64, 128) for i in range(n)]


def routes(v4: list[Prefix], v6s: list[Prefix], attrs: PathAttributes = ATTRS) -> Table:
    six = PathAttributes(attrs.attributes, NH6)
    return {IPV4_UNICAST: dict.fromkeys(v4, attrs), IPV6_UNICAST: dict.fromkeys(v6s, six)}


class Replica:
    """What a consumer of the change log holds, written from the documented meaning only."""

    def __init__(self) -> None:
        self.routes: dict[Family, dict[Prefix, ReceivedPath]] = {}
        self.stale: dict[Family, set[Prefix]] = {}
        self.seen = 0

    def follow(self, wire: Wire, session: Session) -> None:
        events = [e for e in wire.of(session) if isinstance(e, RibInChanged | RibInStale)]
        for event in events[self.seen :]:
            if isinstance(event, RibInChanged):
                table = self.routes.setdefault(event.family, {})
                stale = self.stale.get(event.family, set())
                for prefix in event.prefixes:
                    stale.discard(prefix)
                    if event.path is None:
                        table.pop(prefix, None)
                    else:
                        table[prefix] = event.path
            else:
                table = self.routes[event.family]
                for prefix in event.prefixes:
                    assert prefix in table, "only a route that is there can be kept stale"
                    self.stale.setdefault(event.family, set()).add(prefix)
        self.seen = len(events)

    def check(self, wire: Wire, session: Session) -> None:
        self.follow(wire, session)
        mine = {f: t for f, t in self.routes.items() if t}
        assert mine == {f: t for f, t in session.rib_in.routes.items() if t}
        stale = {f: s for f, s in self.stale.items() if s}
        assert stale == {f: s for f, s in session.rib_in.stale.items() if s}


def _kill(wire: Wire, a: Session, b: Session) -> None:
    for conn in b.connection_ids():
        wire.feed(b, b.connection_lost(conn, wire.now))
    wire.peer_of.pop(id(a), None)


def _restarted(wire: Wire, b: Session, desired: Table, *, gr: bool = True) -> Session:
    kw = GR if gr else {"families": BOTH}
    a = Session(config(65001, 65002, A_ID, **kw), name="a'", rng=lambda: 0.0, restarting=gr)
    wire.pair(a, b)
    wire.feed(a, a.set_routes(desired))
    wire.feed(a, a.start(wire.now))
    return a


def test_replaying_the_changes_reproduces_the_adj_rib_in() -> None:
    wire, a, b = pair(a_kw=GR, b_kw=GR)
    seen = Replica()
    v4 = hosts(3000)

    # announce: 3000 IPv4 /32s and 20 IPv6 /64s, packed in a few UPDATEs; one change per
    # UPDATE and family, carrying the decoder's prefix tuple.
    wire.feed(a, a.set_routes(routes(v4, v6(20))))
    seen.check(wire, b)
    assert b.rib_in.count(IPV4_UNICAST) == 3000 and b.rib_in.count(IPV6_UNICAST) == 20
    changes = [e for e in wire.of(b) if isinstance(e, RibInChanged)]
    updates = [m for m in wire.messages(a) if isinstance(m, Update) and m.end_of_rib is None]
    assert len(changes) == len(updates)

    # replace 10, withdraw 100 and 5, add 50.
    new = routes(v4[10:2900], v6(15))
    new[IPV4_UNICAST].update(dict.fromkeys(v4[:10], ATTRS2))
    new[IPV4_UNICAST].update(dict.fromkeys(hosts(50, 0x0B000000), ATTRS))
    wire.feed(a, a.set_routes(new))
    seen.check(wire, b)
    assert b.rib_in.routes[IPV4_UNICAST][v4[0]].attributes[1] == ATTRS2.attributes[1]

    # a looped path replaces 5 routes: they go; it is never stored.
    looped = {f: dict(t) for f, t in new.items()}
    looped[IPV4_UNICAST].update(dict.fromkeys(v4[20:25], LOOPED))
    wire.feed(a, a.set_routes(looped))
    seen.check(wire, b)
    assert b.rib_in.count(IPV4_UNICAST) == 2950 - 5

    # graceful restart: the peer dies; every route is kept, stale, none withdrawn.
    before = {f: dict(t) for f, t in b.rib_in.routes.items()}
    mark = len(wire.of(b))
    _kill(wire, a, b)
    seen.check(wire, b)
    after_kill = wire.of(b)[mark:]
    assert not [e for e in after_kill if isinstance(e, RibInChanged)]
    assert {e.family for e in after_kill if isinstance(e, RibInStale)} == {
        IPV4_UNICAST,
        IPV6_UNICAST,
    }
    assert b.rib_in.routes == before and b.rib_in.stale_count() == 2945 + 15

    # it comes back with part of the table; End-of-RIB per family flushes what it did not send.
    a2 = _restarted(wire, b, routes(v4[100:200], v6(3)))
    assert a2.state is State.Established
    seen.check(wire, b)
    assert b.rib_in.count(IPV4_UNICAST) == 100 and b.rib_in.count(IPV6_UNICAST) == 3
    assert b.rib_in.stale == {}

    # dies again and stays away: the restart time runs out and the stale routes go.
    _kill(wire, a2, b)
    seen.check(wire, b)
    assert b.rib_in.stale_count() == 103
    wire.advance(121, b)
    seen.check(wire, b)
    assert len(b.rib_in) == 0

    # a session without graceful restart: a NOTIFICATION flushes everything at once.
    a3 = _restarted(wire, b, routes(v4[:40], v6(2)), gr=False)
    seen.check(wire, b)
    assert len(b.rib_in) == 42
    wire.feed(a3, a3.stop(wire.now, message="bye"))
    seen.check(wire, b)
    assert len(b.rib_in) == 0 and seen.routes.get(IPV4_UNICAST) == {}


def test_max_prefixes_flush_is_in_the_change_log() -> None:
    wire, a, b = pair(b_kw={"max_prefixes": 100})
    seen = Replica()
    wire.feed(a, a.set_routes({IPV4_UNICAST: dict.fromkeys(hosts(100), ATTRS)}))
    seen.check(wire, b)
    wire.feed(a, a.set_routes({IPV4_UNICAST: dict.fromkeys(hosts(101), ATTRS)}))
    seen.check(wire, b)
    assert len(b.rib_in) == 0 and not any(seen.routes.values())
