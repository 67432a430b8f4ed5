"""The export view of a session (speaker/bgp/session/outbound.py): our advertisements plus the
routes reflected to the peer, ours winning for a prefix, sent incrementally, whole on
establishment, and received by the peer with ORIGINATOR_ID and CLUSTER_LIST (back to back)."""

from __future__ import annotations

from speaker.bgp.rib.adj_rib_in import ReceivedPath
from speaker.bgp.rib.adj_rib_out import (
    AdjRibOut,
    Desired,
    PathAttributes,
    PlainTable,
    RibChange,
)
from speaker.bgp.rib.received_attributes import cluster_list, originator_id
from speaker.bgp.rib.reflection import reflected_attributes
from speaker.bgp.session.fsm import Session, State
from speaker.bgp.session.outbound import Outbound
from speaker.bgp.wire.attributes import AsPathAttribute, LocalPrefAttribute, OriginAttribute
from speaker.bgp.wire.context import IPV4_UNICAST
from speaker.bgp.wire.messages import Update
from tests.speaker.session.back_to_back import Wire
from tests.speaker.session.test_fsm import A_ID, B_ID, config, hosts

V4 = IPV4_UNICAST
OWN = PathAttributes((OriginAttribute(0), AsPathAttribute(), LocalPrefAttribute(100)))
FROM_CLIENT = ReceivedPath((OriginAttribute(0), AsPathAttribute(), LocalPrefAttribute(100)),
                           bytes([192, 0, 2, 7]))  # fmt: skip
REFLECTED = reflected_attributes(FROM_CLIENT, 0x0A000007, 0xC00002FA)
P1, P2, P3 = hosts(3)


def test_adj_rib_out_apply_copies_a_shared_table_before_changing_it() -> None:
    desired = Desired.of({V4: {P1: OWN}})
    rib = AdjRibOut()
    rib.update(desired, [V4])
    change = RibChange()
    rib.apply(V4, {P2: REFLECTED, P3: None}, change)
    assert desired.plain() == {V4: {P1: OWN}}  # the shared desired table is untouched
    assert rib.routes[V4] == {P1: OWN, P2: REFLECTED}
    assert rib.count(V4) == 2
    assert change.announced == {V4: {REFLECTED: [P2]}} and not change.withdrawn
    again = RibChange()
    rib.apply(V4, {P2: REFLECTED, P1: None}, again)  # same again: nothing; P1 withdrawn
    assert not again.announced and again.withdrawn == {V4: [P1]}
    assert rib.count(V4) == 1


def test_our_advertisement_wins_and_the_reflected_route_shows_when_ours_goes() -> None:
    out = Outbound()
    out.set_routes(Desired.of({V4: {P1: OWN}}), [V4], None, b"")
    assert out.set_reflected({V4: {P1: REFLECTED, P2: REFLECTED}}, [V4], None, b"") == []
    assert out.export().plain() == {V4: {P1: OWN, P2: REFLECTED}}
    # our own P1 goes: the reflected one takes its place in the export view
    out.set_routes(Desired.of({V4: {}}), [V4], None, b"")
    assert out.export().plain() == {V4: {P1: REFLECTED, P2: REFLECTED}}
    # the reflected P1 goes too
    out.set_reflected({V4: {P1: None}}, [V4], None, b"")
    assert out.export().plain() == {V4: {P2: REFLECTED}}


def reflector_and_client() -> tuple[Wire, Session, Session]:
    """a: the reflector (iBGP, AS 64512), b: its client, Established."""
    a = Session(config(64512, 64512, A_ID), name="a", rng=lambda: 0.0)
    b = Session(config(64512, 64512, B_ID, passive=True), name="b", rng=lambda: 0.0)
    wire = Wire()
    wire.pair(a, b)
    return wire, a, b


def test_reflected_routes_reach_the_peer_whole_at_establishment_then_incrementally() -> None:
    wire, a, b = reflector_and_client()
    a.set_routes({V4: {P1: OWN}})
    a.set_reflected({V4: {P1: REFLECTED, P2: REFLECTED}})  # before the session is up
    wire.feed(b, b.start(wire.now))
    wire.feed(a, a.start(wire.now))
    assert (a.state, b.state) == (State.Established, State.Established)
    got = b.rib_in.routes[V4]
    assert set(got) == {P1, P2}
    assert originator_id(got[P1].attributes) is None  # ours: no reflection attributes
    assert originator_id(got[P2].attributes) == 0x0A000007
    assert cluster_list(got[P2].attributes) == (0xC00002FA,)
    assert got[P2].next_hop == bytes([192, 0, 2, 7])  # the client's next hop, unchanged
    # while Established, only the difference goes out
    sent = len(wire.messages(a))
    wire.feed(a, a.set_reflected({V4: {P3: REFLECTED, P1: None}}))
    new = [m for m in wire.messages(a)[sent:] if isinstance(m, Update)]
    assert len(new) == 1 and new[0].nlri == (P3,) and not new[0].withdrawn  # P1 stays ours
    assert set(b.rib_in.routes[V4]) == {P1, P2, P3}
    wire.feed(a, a.set_reflected({V4: {P2: None}}))
    assert set(b.rib_in.routes[V4]) == {P1, P3}
    assert len(a.rib_out) == 2


def test_a_delta_in_place_on_a_reflector_keeps_the_export_view_right() -> None:
    """The runtime changes the shared desired table in place for a delta (`routes_changed`);
    on a session that also carries reflected routes, the change is worked out against the
    export view: our new route takes a reflected prefix over, our removed one gives it back."""
    wire, a, b = reflector_and_client()
    desired = Desired.of({V4: {P1: OWN}})
    (table,) = desired.tables.values()
    assert isinstance(table, PlainTable)
    a.set_routes(desired)
    a.set_reflected({V4: {P2: REFLECTED, P3: REFLECTED}})
    wire.feed(b, b.start(wire.now))
    wire.feed(a, a.start(wire.now))
    assert (a.state, b.state) == (State.Established, State.Established)
    assert set(b.rib_in.routes[V4]) == {P1, P2, P3}
    assert originator_id(b.rib_in.routes[V4][P2].attributes) == 0x0A000007

    def change(key: bytes, new: PathAttributes | None) -> tuple[bytes, object, object]:
        old = table.routes.pop(key, None)
        if old is not None:
            table.counts[old] -= 1
        if new is not None:
            table.routes[key] = new
            table.counts[new] += 1
        return key, old, new

    # P2 becomes ours; P1 is no longer ours (and nobody reflects it)
    wire.feed(a, a.routes_changed({V4: [change(P2, OWN), change(P1, None)]}))
    got = b.rib_in.routes[V4]
    assert set(got) == {P2, P3}
    assert originator_id(got[P2].attributes) is None  # ours now, not the reflected one
    # ours goes again: the reflected P2 is what the client gets back
    wire.feed(a, a.routes_changed({V4: [change(P2, None)]}))
    got = b.rib_in.routes[V4]
    assert set(got) == {P2, P3} and originator_id(got[P2].attributes) == 0x0A000007
    assert len(a.rib_out) == 2
