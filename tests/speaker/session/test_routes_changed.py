"""A delta through the runtime's route store: the shared tables change in place, every session
sends the changed prefixes alone, the peer ends with exactly the new state, and the counts and
route refresh follow. Sans-IO, back to back; then two real `Speaker`s on loopback."""

from __future__ import annotations

from speaker.api.ipc import Delta
from speaker.api.schema import Advertisement, DesiredState, parse_desired_state
from speaker.bgp.session.fsm import Session, SessionConfig
from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST
from speaker.bgp.wire.messages import Update
from speaker.bgp.wire.nlri import prefix_to_str
from speaker.daemon import Speaker
from speaker.session_inputs import RouteStore, session_config
from testing.routers.lab import loopback_address
from testing.wait import wait_for_async
from tests.speaker.session.back_to_back import Wire
from tests.speaker.session.test_daemon import peer, run, status

HOSTS = [f"10.0.{i // 250}.{i % 250}/32" for i in range(2000)]


def state(advertisements: list[dict[str, object]]) -> DesiredState:
    return parse_desired_state({
        "routerId": "10.0.0.1", "asn": 65001,
        "peers": [{"name": "b", "address": "127.0.0.2", "asn": 65002,
                   "families": ["ipv4-unicast", "ipv6-unicast"]},
                  {"name": "c", "address": "127.0.0.3", "asn": 65003}],
        "advertisements": advertisements,
    })  # fmt: skip


def established(store: RouteStore) -> tuple[Wire, Session, Session]:
    s = store.state
    assert s is not None
    a = Session(session_config(s, s.peers[0]), name="a", rng=lambda: 0.0)
    b = Session(SessionConfig(local_asn=65002, peer_asn=65001, router_id=0x0A000002,
                              families=frozenset({IPV4_UNICAST, IPV6_UNICAST}), passive=True),
                name="b", rng=lambda: 0.0)  # fmt: skip
    wire = Wire()
    wire.pair(a, b)
    a.set_routes(store.desired(s.peers[0]))
    wire.feed(b, b.start(0))
    wire.feed(a, a.start(0))
    return wire, a, b


def received(b: Session) -> set[str]:
    return {prefix_to_str(p, family[0]) for family, table in b.rib_in.routes.items() for p in table}


def test_a_delta_sends_the_changed_prefixes_alone() -> None:
    store = RouteStore()
    store.load(state([
        {"prefixes": HOSTS, "communities": ["65001:1"]},
        {"prefixes": ["10.9.0.0/24"], "peers": ["c"]},  # not for b
        {"prefixes": ["2001:db8::/48"]},
    ]))  # fmt: skip
    wire, a, b = established(store)
    assert received(b) == {*HOSTS, "2001:db8::/48"}
    before = len(wire.sent)
    table_before = store.desired(store.state.peers[0]).tables[IPV4_UNICAST]  # type: ignore[union-attr]
    changes = store.apply_delta(Delta(
        epoch=1, generation=2, base=1,
        add=(Advertisement(prefix="10.7.0.0/24", med=5),
             Advertisement(prefix="10.0.0.5/32", communities=("65001:2",)),
             Advertisement(prefix="10.9.1.0/24", peers=("c",))),  # for c alone: nothing to b
        remove=("10.0.0.6/32", "10.9.0.0/24", "2001:db8::/48"),
    ))  # fmt: skip
    assert store.desired(store.state.peers[0]).tables[IPV4_UNICAST] is table_before  # type: ignore[union-attr]
    wire.feed(a, a.routes_changed(changes))
    updates = [m for m in wire.messages(a)[-10:] if isinstance(m, Update)]
    sent = wire.sent[before:]
    assert len(sent) == 1  # one write
    announced = [prefix_to_str(p, 1) for u in updates for p in u.nlri]
    withdrawn = [prefix_to_str(p, 1) for u in updates for p in u.withdrawn]
    assert sorted(announced[-2:]) == ["10.0.0.5/32", "10.7.0.0/24"]
    assert withdrawn[-1:] == ["10.0.0.6/32"]  # 10.9.0.0/24 was never b's
    expected = {*HOSTS, "10.7.0.0/24"} - {"10.0.0.6/32"}
    assert received(b) == expected
    assert a.rib_out.count(IPV4_UNICAST) == len(HOSTS) and a.rib_out.count(IPV6_UNICAST) == 0
    # A route refresh re-sends what the shared table holds now.
    mark = len(wire.sent)
    wire.feed(b, b.request_refresh(IPV4_UNICAST))
    resent = [m for m in wire.messages(a)[-10:] if isinstance(m, Update)]
    assert len(wire.sent) > mark
    assert sum(len(u.nlri) for u in resent) >= 1
    assert received(b) == expected


def test_a_snapshot_after_deltas_sends_the_difference_only() -> None:
    store = RouteStore()
    store.load(state([{"prefixes": HOSTS}]))
    wire, a, b = established(store)
    changes = store.apply_delta(Delta(epoch=1, generation=2, base=1, remove=(HOSTS[0],)))
    wire.feed(a, a.routes_changed(changes))
    new = state([{"prefixes": HOSTS[1:1500]}, {"prefixes": ["10.8.0.0/24"]}])
    store.load(new)
    before, seen = len(wire.sent), len(wire.messages(a))
    wire.feed(a, a.set_routes(store.desired(new.peers[0])))
    updates = [m for m in wire.messages(a)[seen:] if isinstance(m, Update)]
    assert len(wire.sent) == before + 1
    assert sum(len(u.nlri) for u in updates) == 1  # 10.8.0.0/24
    assert sum(len(u.withdrawn) for u in updates) == 500
    assert received(b) == {*HOSTS[1:1500], "10.8.0.0/24"}


def test_speakers_apply_a_delta_in_place() -> None:
    a_addr, b_addr = loopback_address(), loopback_address()

    async def body() -> None:
        a, b = Speaker(), Speaker()
        listen_b = {"routerId": b_addr, "asn": 65002, "listen": {"address": b_addr, "port": 179},
                    "peers": [{k: v for k, v in peer("a", a_addr, 65001, passive=True).items()
                               if v is not None}]}  # fmt: skip
        try:
            await b.apply(parse_desired_state(listen_b))
            a_state = parse_desired_state({
                "routerId": a_addr, "asn": 65001,
                "peers": [peer("b", b_addr, 65002, src=a_addr)],
                "advertisements": [{"prefixes": HOSTS}],
            })  # fmt: skip
            await a.apply(a_state)
            await wait_for_async(lambda: status(b, "a").prefixes_received == len(HOSTS), "all at b")
            table = a.advertised.desired(a_state.peers[0]).tables[IPV4_UNICAST]
            await a.apply_delta(Delta(epoch=1, generation=2, base=1,
                                      add=(Advertisement(prefix="10.7.0.0/24"),),
                                      remove=tuple(HOSTS[:10])))  # fmt: skip
            # In the Adj-RIB-Out when apply_delta returns; the same shared table.
            assert status(a, "b").prefixes_advertised == len(HOSTS) - 9
            assert a.advertised.desired(a_state.peers[0]).tables[IPV4_UNICAST] is table
            await wait_for_async(lambda: status(b, "a").prefixes_received == len(HOSTS) - 9,
                                 "the delta at b")  # fmt: skip
            got = b.runners["a"].session.rib_in.routes[IPV4_UNICAST]
            assert bytes((24, 10, 7, 0)) in got and bytes((32, 10, 0, 0, 0)) not in got
        finally:
            await a.close()
            await b.close()

    run(body)
