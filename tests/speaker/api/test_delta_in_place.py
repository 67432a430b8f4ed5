"""Deltas applied in place (the speaker's way): only the named entries change, the changes
come back per family, a delta that does not apply changes nothing; and the compact forms of
snapshot and delta (proto 2) read back to the same messages."""

from __future__ import annotations

import dataclasses

import pytest

from speaker.api.ipc import (
    Delta,
    IpcError,
    Snapshot,
    apply_delta,
    apply_delta_in_place,
    encode,
    parse_request,
)
from speaker.api.routes import FAMILY_IPV4, FAMILY_IPV6, AttributeInterner
from speaker.api.schema import Advertisement, DesiredState, parse_desired_state

DOC = {
    "routerId": "192.0.2.11", "asn": 64512,
    "peers": [{"name": "tor-a", "address": "127.0.0.2", "asn": 65000,
               "families": ["ipv4-unicast", "ipv6-unicast"]}],
    "advertisements": [
        {"prefixes": [f"10.0.{i // 250}.{i % 250}/32" for i in range(1000)],
         "communities": ["64512:1"]},
        {"prefix": "2001:db8::/48"},
    ],
}  # fmt: skip


def fresh() -> DesiredState:
    return parse_desired_state(DOC)


def delta(**kw: object) -> Delta:
    return Delta(epoch=1, generation=2, base=1, **kw)  # type: ignore[arg-type]


def test_only_the_named_entries_change_and_come_back_as_changes() -> None:
    state = fresh()
    table = state.routes.table(FAMILY_IPV4)
    untouched = table[b"\x20\x0a\x00\x00\x05"]
    changes = apply_delta_in_place(
        state,
        delta(
            add=(
                Advertisement(prefix="10.0.0.5/32", communities=("64512:2",)),
                Advertisement(prefix="10.9.0.0/24"),
                Advertisement(prefix="10.0.0.6/32", communities=("64512:1",)),  # no change
            ),
            remove=("10.0.0.7/32", "2001:db8::/48"),
        ),
    )
    assert state.routes.table(FAMILY_IPV4) is table  # moved forward, not rebuilt
    v4 = {key: (old, new) for key, old, new in changes[FAMILY_IPV4]}
    assert set(v4) == {b"\x20\x0a\x00\x00\x05", b"\x18\x0a\x09\x00", b"\x20\x0a\x00\x00\x07"}
    assert v4[b"\x20\x0a\x00\x00\x05"][0] is untouched
    assert v4[b"\x20\x0a\x00\x00\x07"][1] is None
    assert v4[b"\x18\x0a\x09\x00"][0] is None
    assert [(k, new) for k, _, new in changes[FAMILY_IPV6]] == [(b"\x30\x20\x01\x0d\xb8\x00\x00",
                                                                 None)]  # fmt: skip
    assert state.route_count == 1000
    expected = apply_delta(fresh(), delta(
        add=(Advertisement(prefix="10.0.0.5/32", communities=("64512:2",)),
             Advertisement(prefix="10.9.0.0/24")),
        remove=("10.0.0.7/32", "2001:db8::/48"),
    ))  # fmt: skip
    assert state == expected
    counts = state.routes.families[FAMILY_IPV4].counts
    assert sum(counts.values()) == len(table) == 1000


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (delta(add=(Advertisement(prefix="10.9.0.0/24"),), remove=("10.8.0.0/24",)),
         "remove[0]: 10.8.0.0/24 is not advertised"),
        (delta(add=(Advertisement(prefix="10.9.0.0/24"),
                    Advertisement(prefix="10.9.1.0/24", peers=("tor-z",))),
               remove=("10.0.0.1/32",)),
         "add[1].peers[0]: no peer named 'tor-z'"),
    ],
)  # fmt: skip
def test_a_delta_that_does_not_apply_changes_nothing(change: Delta, reason: str) -> None:
    state = fresh()
    before = state.routes.copy()
    with pytest.raises(IpcError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        apply_delta_in_place(state, change)
    assert state.routes == before
    assert sum(state.routes.families[FAMILY_IPV4].counts.values()) == 1000


def test_apply_delta_leaves_its_input_alone() -> None:
    state = fresh()
    after = apply_delta(state, delta(remove=("10.0.0.1/32",)))
    assert state == fresh() and after.route_count == state.route_count - 1


def test_compact_messages_read_back_the_same() -> None:
    state = fresh()
    full = encode(Snapshot(epoch=1, generation=1, state=state))
    compact = encode(Snapshot(epoch=1, generation=1, state=state, compact=True))
    assert len(compact) * 4 < len(full)
    assert parse_request(compact) == parse_request(full) == Snapshot(epoch=1, generation=1,
                                                                     state=state)  # fmt: skip
    change = delta(
        add=(Advertisement(prefix="10.9.0.0/24", med=3), Advertisement(prefix="10.9.1.0/24",
                                                                       med=3)),
        remove=("10.0.0.1/32",),
    )  # fmt: skip
    line = encode(dataclasses.replace(change, compact=True))
    assert b'"prefixes":["10.9.0.0/24","10.9.1.0/24"]' in line
    assert parse_request(line) == parse_request(encode(change)) == change


def test_a_shared_interner_makes_unchanged_attribute_sets_the_same_objects() -> None:
    interner = AttributeInterner()
    a = parse_desired_state(DOC, interner=interner)
    b = parse_desired_state(DOC, interner=interner)
    ka = a.routes.table(FAMILY_IPV4)[b"\x20\x0a\x00\x00\x01"]
    kb = b.routes.table(FAMILY_IPV4)[b"\x20\x0a\x00\x00\x01"]
    assert ka is kb
    parsed = parse_request(
        encode(delta(add=(Advertisement(prefix="10.9.0.0/24", communities=("64512:1",)),))),
        interner=interner,
    )
    assert isinstance(parsed, Delta)
    assert parsed.routes().add[0][2] is ka
