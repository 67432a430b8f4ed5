"""The UPDATE builder: fewest messages under the negotiated size, and they decode back."""

from __future__ import annotations

import pytest

from speaker.bgp.rib.update_builder import UpdateBuilder
from speaker.bgp.wire.attributes import (
    AggregatorAttribute,
    AsPathAttribute,
    Attribute,
    CommunitiesAttribute,
    LargeCommunitiesAttribute,
    LocalPrefAttribute,
    MpReachNlriAttribute,
    MultiExitDiscAttribute,
    NextHopAttribute,
    OriginAttribute,
)
from speaker.bgp.wire.context import DEFAULT_CONTEXT, IPV4_UNICAST, IPV6_UNICAST, DecodeContext
from speaker.bgp.wire.messages import Update, decode_all
from speaker.bgp.wire.nlri import Prefix, prefix_from_int

SMALL: tuple[Attribute, ...] = (OriginAttribute(0), AsPathAttribute.sequence(64512))
NH4 = b"\xc0\x00\x02\x01"
NH6 = bytes.fromhex("20010db8000000000000000000000001")
NH6_LL = NH6 + bytes.fromhex("fe800000000000000000000000000001")


def v4_hosts(n: int) -> list[Prefix]:
    return [prefix_from_int(0x0A000000 + i, 32, 32) for i in range(n)]


def v6_hosts(n: int) -> list[Prefix]:
    return [prefix_from_int(0x20010DB8 << 96 | i, 128, 128) for i in range(n)]


def _updates(wire: list[bytes], ctx: DecodeContext = DEFAULT_CONTEXT) -> list[Update]:
    out = []
    for message in decode_all(b"".join(wire), ctx):
        assert isinstance(message, Update) and message.problems == ()
        out.append(message)
    return out


def test_810_ipv4_host_routes_per_4096_octet_update() -> None:
    # 4096 - 19 (header) - 2 - 2 (length fields) - 20 (ORIGIN 4, AS_PATH 9, NEXT_HOP 7) = 4053
    # octets of NLRI; a /32 takes 5 -> 810.
    wire = UpdateBuilder().announce(IPV4_UNICAST, SMALL, v4_hosts(2000), next_hop=NH4)
    assert [len(_updates([w])[0].nlri) for w in wire] == [810, 810, 380]
    assert all(len(w) <= 4096 for w in wire)
    assert len(wire[0]) == 4096 - 3  # 3 octets left: not room for another /32
    decoded = _updates(wire)
    assert [p for u in decoded for p in u.nlri] == v4_hosts(2000)
    assert decoded[0].attributes == (*SMALL, NextHopAttribute(NH4))


def test_ipv4_in_mp_reach_809_per_message() -> None:
    # MP_REACH costs 4 (header) + 2 + 1 + 1 + 4 (next hop) + 1 = 13 octets; ORIGIN + AS_PATH 13:
    # (4073 - 26) // 5 = 809.
    wire = UpdateBuilder().announce(
        IPV4_UNICAST, SMALL, v4_hosts(1000), next_hop=NH4, ipv4_in_mp=True
    )
    decoded = _updates(wire)
    reach = [u.mp_reach for u in decoded]
    assert [len(r.nlri) for r in reach if r] == [809, 191]
    assert isinstance(decoded[0].attributes[0], MpReachNlriAttribute)  # RFC 7606 §5.1: first


@pytest.mark.parametrize(("next_hop", "per_message"), [(NH6, 237), (NH6_LL, 236)])
def test_ipv6_host_routes_in_mp_reach(next_hop: bytes, per_message: int) -> None:
    # (4073 - 13 - (4 + 5 + len(next hop))) // 17
    assert per_message == (4073 - 13 - 9 - len(next_hop)) // 17
    wire = UpdateBuilder().announce(IPV6_UNICAST, SMALL, v6_hosts(500), next_hop=next_hop)
    reach = [u.mp_reach for u in _updates(wire)]
    counts = [len(r.nlri) for r in reach if r]
    assert counts[:-1] == [per_message] * (len(counts) - 1) and sum(counts) == 500
    assert len(counts) == -(-500 // per_message)
    assert all(r and r.next_hop == next_hop for r in reach)


def test_withdrawals_pack_814_ipv4_and_239_ipv6() -> None:
    v4 = UpdateBuilder().withdraw(IPV4_UNICAST, v4_hosts(1000))
    assert [len(u.withdrawn) for u in _updates(v4)] == [814, 186]
    v6 = UpdateBuilder().withdraw(IPV6_UNICAST, v6_hosts(300))
    unreach = [u.mp_unreach for u in _updates(v6)]
    assert [len(r.withdrawn) for r in unreach if r] == [239, 61]


def test_extended_message_packs_to_65535() -> None:
    ctx = DecodeContext(extended_message=True)
    wire = UpdateBuilder(ctx).announce(IPV4_UNICAST, SMALL, v4_hosts(20000), next_hop=NH4)
    assert [len(u.nlri) for u in _updates(wire, ctx)] == [13098, 6902]  # (65535-43) // 5


def test_mixed_lengths_never_exceed_the_limit() -> None:
    prefixes = [prefix_from_int(0x0A000000 + (i << 8), 8 + i % 25, 32) for i in range(3000)]
    wire = UpdateBuilder().withdraw(IPV4_UNICAST, prefixes)
    assert all(len(w) <= 4096 for w in wire)
    assert [p for u in _updates(wire) for p in u.withdrawn] == prefixes


def test_add_path_identifiers_travel_with_the_prefixes() -> None:
    ctx = DecodeContext(add_path=frozenset({IPV4_UNICAST}))
    wire = UpdateBuilder(ctx).announce(
        IPV4_UNICAST, SMALL, v4_hosts(3), next_hop=NH4, path_ids=[7, 8, 9]
    )
    (update,) = _updates(wire, ctx)
    assert update.nlri_path_ids == (7, 8, 9)


def test_two_octet_peer_gets_as4_path() -> None:
    ctx = DecodeContext(four_octet_as=False)
    attrs = (OriginAttribute(0), AsPathAttribute.sequence(4200000000))
    (update,) = _updates(
        UpdateBuilder(ctx).announce(IPV4_UNICAST, attrs, v4_hosts(1), next_hop=NH4), ctx
    )
    assert update.as_path() == AsPathAttribute.sequence(4200000000).segments


def test_end_of_rib() -> None:
    builder = UpdateBuilder()
    assert _updates([builder.end_of_rib(IPV4_UNICAST)])[0].end_of_rib == IPV4_UNICAST
    assert _updates([builder.end_of_rib(IPV6_UNICAST)])[0].end_of_rib == IPV6_UNICAST


def test_nothing_to_send_is_no_message_and_oversized_attributes_are_refused() -> None:
    builder = UpdateBuilder()
    assert builder.announce(IPV4_UNICAST, SMALL, [], next_hop=NH4) == []
    assert builder.withdraw(IPV6_UNICAST, []) == []
    huge = (*SMALL, CommunitiesAttribute(tuple(range(1015))))
    with pytest.raises(ValueError, match="no room"):
        builder.announce(IPV4_UNICAST, huge, v4_hosts(1), next_hop=NH4)


def test_path_attributes_go_out_in_ascending_type_code_rfc4271_5() -> None:
    shuffled: tuple[Attribute, ...] = (
        LargeCommunitiesAttribute(((64512, 1, 2),)),
        CommunitiesAttribute((1,)),
        MultiExitDiscAttribute(5),
        AsPathAttribute.sequence(4200000000),  # AS4_PATH for a 2-octet peer
        LocalPrefAttribute(100),
        AggregatorAttribute(4200000000, NH4),  # AS4_AGGREGATOR too
        OriginAttribute(0),
    )
    for ctx in (DEFAULT_CONTEXT, DecodeContext(four_octet_as=False)):
        (v4,) = _updates(UpdateBuilder(ctx).announce(IPV4_UNICAST, shuffled, v4_hosts(3),
                                                     next_hop=NH4), ctx)  # fmt: skip
        codes = [a.type_code for a in v4.attributes]
        assert codes == sorted(codes) and 3 in codes, codes
        (v6,) = _updates(UpdateBuilder(ctx).announce(IPV6_UNICAST, shuffled, v6_hosts(3),
                                                     next_hop=NH6), ctx)  # fmt: skip
        codes = [a.type_code for a in v6.attributes]
        assert codes[0] == MpReachNlriAttribute.TYPE  # RFC 7606 §5.1: MP_REACH_NLRI first
        assert codes[1:] == sorted(codes[1:]) and 3 not in codes, codes
    (two_octet,) = _updates(
        UpdateBuilder(DecodeContext(four_octet_as=False)).announce(
            IPV4_UNICAST, shuffled, v4_hosts(1), next_hop=NH4
        ),
        DecodeContext(four_octet_as=False),
    )
    assert {17, 18} <= {a.type_code for a in two_octet.attributes}
