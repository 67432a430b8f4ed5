"""UPDATE: known answers written from RFC 4271 §4.3 / RFC 4760, and every RFC 7606 path with
the NOTIFICATION code, subcode and data (RFC 4271 §6.3) and the action taken."""

from __future__ import annotations

import pytest

from speaker.bgp.wire.attributes import (
    AS_CONFED_SEQUENCE,
    AS_SEQUENCE,
    AS_SET,
    AggregatorAttribute,
    As4AggregatorAttribute,
    As4PathAttribute,
    AsPathAttribute,
    AtomicAggregateAttribute,
    Attribute,
    ClusterListAttribute,
    CommunitiesAttribute,
    ExtendedCommunitiesAttribute,
    LargeCommunitiesAttribute,
    LocalPrefAttribute,
    MpReachNlriAttribute,
    MpUnreachNlriAttribute,
    MultiExitDiscAttribute,
    NextHopAttribute,
    OriginatorIdAttribute,
    OriginAttribute,
    UnknownAttribute,
    attributes_for_two_octet_peer,
    merge_as4_path,
    path_length,
)
from speaker.bgp.wire.context import DEFAULT_CONTEXT, IPV4_UNICAST, IPV6_UNICAST, DecodeContext
from speaker.bgp.wire.errors import BGPError, ErrorAction, ErrorCode, UPDATEMessageErrorSubcode
from speaker.bgp.wire.messages import Update, decode_update, end_of_rib
from tests.speaker.wire.hexmsg import (
    AS_PATH_64512,
    BASIC,
    NEXT_HOP_192_0_2_1,
    ORIGIN_IGP,
    msg,
    update,
)

Sub = UPDATEMessageErrorSubcode
TWO_OCTET = DecodeContext(four_octet_as=False)
P24 = b"\x18\x0a\x00\x01"  # 10.0.1.0/24
P32 = b"\x20\x0a\x00\x00\x01"  # 10.0.0.1/32
V6 = bytes.fromhex("40 20010db800000001")  # 2001:db8:0:1::/64
BASIC_ATTRS: tuple[Attribute, ...] = (
    OriginAttribute(0),
    AsPathAttribute(((AS_SEQUENCE, (64512,)),)),
    NextHopAttribute(b"\xc0\x00\x02\x01"),
)


def test_ipv4_announcement_known_answer_rfc4271_4_3() -> None:
    body = update(attrs_hex=BASIC, nlri_hex="18 0a0001 20 0a000001")
    decoded = decode_update(body)
    assert decoded == Update(attributes=BASIC_ATTRS, nlri=(P24, P32))
    assert decoded.encode() == msg(2, body.hex())


def test_ipv4_withdrawal_known_answer() -> None:
    body = update(withdrawn_hex="18 0a0001 00")  # 10.0.1.0/24 and the default route
    assert decode_update(body) == Update(withdrawn=(P24, b"\x00"))


def test_host_bits_beyond_the_prefix_length_are_cleared() -> None:
    assert decode_update(update(withdrawn_hex="17 0a0001")).withdrawn == (b"\x17\x0a\x00\x00",)


def test_end_of_rib_known_answers_rfc4724_2() -> None:
    assert end_of_rib(IPV4_UNICAST).encode() == msg(2, "0000 0000")
    assert end_of_rib(IPV6_UNICAST).encode() == msg(2, "0000 0006 800f03 0002 01")
    assert decode_update(bytes.fromhex("00000000")).end_of_rib == IPV4_UNICAST
    assert decode_update(update(attrs_hex="800f03 0002 01")).end_of_rib == IPV6_UNICAST
    assert decode_update(update(withdrawn_hex="18 0a0001")).end_of_rib is None


def test_ipv6_mp_reach_with_global_and_link_local_next_hop_rfc4760_3_rfc2545() -> None:
    nh = "20010db8000000000000000000000001" + "fe800000000000000000000000000001"
    mp = "800e 2e 0002 01 20" + nh + "00" + "40 20010db800000001"
    decoded = decode_update(update(attrs_hex=mp + ORIGIN_IGP + AS_PATH_64512))
    reach = decoded.mp_reach
    assert reach is not None
    assert reach.family == IPV6_UNICAST and reach.nlri == (V6,)
    assert reach.next_hop_global == bytes.fromhex(nh[:32])
    assert reach.next_hop_link_local == bytes.fromhex(nh[32:])
    assert decoded.problems == ()
    assert decode_update(decoded.encode()[19:]) == decoded


def test_two_octet_as_path_and_as4_path_merge_rfc6793_4_2_3() -> None:
    # AS_PATH SEQUENCE [64512, AS_TRANS], AS4_PATH SEQUENCE [4200000000]
    attrs = "40 02 06 02 02 fc00 5ba0" + "c0 11 06 02 01 fa56ea00"
    decoded = decode_update(update(attrs_hex=attrs), TWO_OCTET)
    assert decoded.attributes == (
        AsPathAttribute(((AS_SEQUENCE, (64512, 23456)),)),
        As4PathAttribute(((AS_SEQUENCE, (4200000000,)),)),
    )
    assert decoded.as_path() == ((AS_SEQUENCE, (64512, 4200000000)),)


def test_as4_path_longer_than_as_path_is_ignored() -> None:
    path = ((AS_SEQUENCE, (1,)),)
    assert merge_as4_path(path, ((AS_SEQUENCE, (5, 6)),)) == path


def test_as4_path_merge_keeps_a_leading_set() -> None:
    path = ((AS_SET, (1, 2)), (AS_SEQUENCE, (23456, 23456)))
    merged = merge_as4_path(path, ((AS_SEQUENCE, (70000, 80000)),))
    assert merged == ((AS_SET, (1, 2)), (AS_SEQUENCE, (70000, 80000)))
    assert path_length(merged) == 3


def test_two_octet_peer_gets_as_trans_and_as4_path() -> None:
    attrs = (AsPathAttribute.sequence(64512, 4200000000), AggregatorAttribute(4200000000, bytes(4)))
    out = attributes_for_two_octet_peer(attrs)
    assert out[2:] == (
        As4PathAttribute(((AS_SEQUENCE, (64512, 4200000000)),)),
        As4AggregatorAttribute(4200000000, bytes(4)),
    )
    wire = b"".join(a.encode(TWO_OCTET) for a in out)
    decoded = decode_update(update(attrs_hex=wire.hex()), TWO_OCTET)
    assert decoded.as_path() == ((AS_SEQUENCE, (64512, 4200000000)),)
    assert decoded.attributes[1] == AggregatorAttribute(23456, bytes(4))


def test_every_attribute_round_trips() -> None:
    attrs: tuple[Attribute, ...] = (
        MpReachNlriAttribute(afi=2, next_hop=bytes(16), nlri=(V6,)),
        OriginAttribute(2),
        AsPathAttribute(((AS_CONFED_SEQUENCE, (65001,)), (AS_SEQUENCE, (1, 2)), (AS_SET, (3,)))),
        NextHopAttribute(b"\xc0\x00\x02\x01"),
        MultiExitDiscAttribute(7),
        LocalPrefAttribute(200),
        AtomicAggregateAttribute(),
        AggregatorAttribute(64512, b"\xc0\x00\x02\x02"),
        CommunitiesAttribute((0xFFFFFF01, 64512 << 16 | 100)),  # NO_EXPORT, 64512:100
        OriginatorIdAttribute(0xC000020B),
        ClusterListAttribute((1, 2)),
        MpUnreachNlriAttribute(afi=1, withdrawn=(P24,)),
        ExtendedCommunitiesAttribute((0x0002FC0000000064,)),
        As4PathAttribute(((AS_SEQUENCE, (4200000000,)),)),
        As4AggregatorAttribute(4200000000, b"\xc0\x00\x02\x02"),
        LargeCommunitiesAttribute(((64512, 1, 2),)),
        UnknownAttribute(type_code=99, flags=0xC0, value=b"\x01\x02"),
    )
    message = Update(attributes=attrs, nlri=(P24,))
    assert decode_update(message.encode()[19:]) == message


def test_long_attribute_uses_extended_length_rfc4271_4_3() -> None:
    attr = CommunitiesAttribute(tuple(range(100)))
    wire = attr.encode(DecodeContext())
    assert wire[:4] == bytes((0xD0, 8, 1, 144))  # Optional|Transitive|Extended Length, 400
    decoded = decode_update(update(attrs_hex=wire.hex()))
    assert decoded.attributes == (attr,)


def test_unknown_optional_transitive_is_kept_and_passed_on_partial_rfc4271_5() -> None:
    decoded = decode_update(update(attrs_hex=BASIC + "c0 63 02 0102", nlri_hex="18 0a0001"))
    unknown = decoded.attributes[-1]
    assert unknown == UnknownAttribute(type_code=99, flags=0xC0, value=b"\x01\x02")
    assert isinstance(unknown, UnknownAttribute)
    assert unknown.for_propagation().encode(DecodeContext()) == bytes.fromhex("e0 63 02 0102")


def test_add_path_nlri_rfc7911_3() -> None:
    ctx = DecodeContext(add_path=frozenset({IPV4_UNICAST}))
    body = update(attrs_hex=BASIC, nlri_hex="00000007 18 0a0001")
    decoded = decode_update(body, ctx)
    assert decoded.nlri == (P24,) and decoded.nlri_path_ids == (7,)
    assert decoded.encode(ctx)[19:] == body


def test_ebgp_peer_local_pref_is_discarded_rfc7606_7_5() -> None:
    body = update(attrs_hex=BASIC + "40 05 04 00000064", nlri_hex="18 0a0001")
    assert decode_update(body, DecodeContext(ebgp=True)).attributes == BASIC_ATTRS
    assert decode_update(body).attributes[-1] == LocalPrefAttribute(100)


# --- errors that reset the session ---------------------------------------------------------


def _reset(body: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> BGPError:
    with pytest.raises(BGPError) as info:
        decode_update(body, ctx)
    assert info.value.code == ErrorCode.UPDATEMessageError
    return info.value


@pytest.mark.parametrize(
    "body",
    [
        bytes.fromhex("0005 18 0a00"),  # withdrawn length runs past the message
        bytes.fromhex("0000 0010 400101"),  # total attribute length runs past the message
        bytes.fromhex("00"),  # not even the two length fields
    ],
    ids=["withdrawn-overrun", "attrs-overrun", "short"],
)
def test_length_fields_overrunning_are_malformed_attribute_list_rfc4271_6_3(body: bytes) -> None:
    err = _reset(body)
    assert (err.subcode, err.data, err.action) == (
        Sub.MalformedAttributeList,
        b"",
        ErrorAction.SESSION_RESET,
    )


@pytest.mark.parametrize(
    ("withdrawn", "nlri"),
    [("21 0a000001 00", ""), ("18 0a00", ""), ("", "20 0a0000"), ("", "ff")],
    ids=["withdrawn-len-33", "withdrawn-overrun", "nlri-overrun", "nlri-len-255"],
)
def test_bad_prefixes_are_invalid_network_field_rfc7606_5_3(withdrawn: str, nlri: str) -> None:
    attrs = BASIC if nlri else ""
    err = _reset(update(withdrawn_hex=withdrawn, attrs_hex=attrs, nlri_hex=nlri))
    assert (err.subcode, err.data, err.action) == (
        Sub.InvalidNetworkField,
        b"",
        ErrorAction.SESSION_RESET,
    )


def test_unrecognized_well_known_attribute_carries_the_attribute_rfc4271_6_3() -> None:
    err = _reset(update(attrs_hex=BASIC + "40 63 01 aa", nlri_hex="18 0a0001"))
    assert (err.subcode, err.data, err.action) == (
        Sub.UnrecognizedWellKnownAttribute,
        bytes.fromhex("40 63 01 aa"),
        ErrorAction.SESSION_RESET,
    )


@pytest.mark.parametrize(
    "attr",
    ["800e 15 0002 01 10 20010db8000000000000000000000001 00", "800f 03 0002 01"],
    ids=["mp-reach", "mp-unreach"],
)
def test_duplicate_mp_attribute_is_malformed_attribute_list_rfc7606_3g(attr: str) -> None:
    err = _reset(update(attrs_hex=attr + attr))
    assert (err.subcode, err.data, err.action) == (
        Sub.MalformedAttributeList,
        b"",
        ErrorAction.SESSION_RESET,
    )


@pytest.mark.parametrize(
    ("attr", "family"),
    [
        ("800e 09 0002 01 04 c0000201 00", IPV6_UNICAST),  # 4-octet next hop for IPv6
        ("800e 0e 0002 01 10 20010db8000000000000", IPV6_UNICAST),  # next hop runs past
        (
            "800e 16 0002 01 10 20010db8000000000000000000000001 00 81",
            IPV6_UNICAST,
        ),  # prefix length 129
        ("800f 05 0001 01 18 0a", IPV4_UNICAST),  # withdrawn prefix runs past
        ("800e 05 0003 01 00 00", (3, 1)),  # AFI we do not know
    ],
    ids=["nh-len", "nh-overrun", "len-129", "unreach-overrun", "unknown-afi"],
)
def test_mp_attribute_errors_disable_the_family_rfc7606_7_11(
    attr: str, family: tuple[int, int]
) -> None:
    err = _reset(update(attrs_hex=attr + ORIGIN_IGP + AS_PATH_64512))
    assert (err.subcode, err.data, err.action, err.family) == (
        Sub.OptionalAttributeError,
        bytes.fromhex(attr),
        ErrorAction.AFI_SAFI_DISABLE,
        family,
    )


def test_mp_reach_too_short_to_name_a_family_resets_the_session() -> None:
    err = _reset(update(attrs_hex="800e 02 0002"))
    assert (err.subcode, err.data, err.action, err.family) == (
        Sub.OptionalAttributeError,
        bytes.fromhex("800e 02 0002"),
        ErrorAction.SESSION_RESET,
        None,
    )


def test_attribute_overrun_without_any_nlri_found_resets_rfc7606_4() -> None:
    err = _reset(update(attrs_hex=ORIGIN_IGP + "40 02 09 02 01 0000fc00"))
    assert (err.subcode, err.data, err.action) == (
        Sub.MalformedAttributeList,
        b"",
        ErrorAction.SESSION_RESET,
    )


# --- treat-as-withdraw and attribute-discard (RFC 7606 §7) ------------------------------------

REST_NO_ORIGIN = AS_PATH_64512 + NEXT_HOP_192_0_2_1
REST_NO_AS_PATH = ORIGIN_IGP + NEXT_HOP_192_0_2_1
REST_NO_NEXT_HOP = ORIGIN_IGP + AS_PATH_64512

TAW = ErrorAction.TREAT_AS_WITHDRAW
DISCARD = ErrorAction.ATTRIBUTE_DISCARD

# (bad attribute, the valid attributes to go with it, subcode, data is the attribute?, action)
MALFORMED = [
    ("40 01 01 03", REST_NO_ORIGIN, Sub.InvalidORIGINAttribute, True, TAW),  # §7.1
    ("40 01 02 0000", REST_NO_ORIGIN, Sub.AttributeLengthError, True, TAW),  # §7.1
    ("c0 01 01 00", REST_NO_ORIGIN, Sub.AttributeFlagsError, True, TAW),  # §3(c)
    ("60 01 01 00", REST_NO_ORIGIN, Sub.AttributeFlagsError, True, TAW),  # Partial on well-known
    ("40 02 06 05 01 0000fc00", REST_NO_AS_PATH, Sub.MalformedAS_PATH, False, TAW),  # §7.2
    ("40 02 02 02 00", REST_NO_AS_PATH, Sub.MalformedAS_PATH, False, TAW),  # empty segment
    ("40 02 05 02 01 0000fc", REST_NO_AS_PATH, Sub.MalformedAS_PATH, False, TAW),  # overrun
    ("40 02 01 02", REST_NO_AS_PATH, Sub.MalformedAS_PATH, False, TAW),  # truncated header
    ("40 02 06 02 01 00000000", REST_NO_AS_PATH, Sub.MalformedAS_PATH, False, TAW),  # RFC 7607
    ("c0 07 08 00000000c0000202", BASIC, Sub.OptionalAttributeError, True, DISCARD),  # RFC 7607
    ("c0 12 08 00000000c0000202", BASIC, Sub.OptionalAttributeError, True, DISCARD),
    ("c0 11 06 02 01 00000000", BASIC, Sub.MalformedAS_PATH, False, DISCARD),
    ("40 03 05 c000020100", REST_NO_NEXT_HOP, Sub.AttributeLengthError, True, TAW),  # §7.3
    ("40 03 04 00000000", REST_NO_NEXT_HOP, Sub.InvalidNEXT_HOPAttribute, True, TAW),
    ("40 03 04 e0000001", REST_NO_NEXT_HOP, Sub.InvalidNEXT_HOPAttribute, True, TAW),
    ("80 04 03 000001", BASIC, Sub.AttributeLengthError, True, TAW),  # §7.4
    ("40 05 03 000064", BASIC, Sub.AttributeLengthError, True, TAW),  # §7.5
    ("c0 08 05 0000000100", BASIC, Sub.AttributeLengthError, True, TAW),  # §7.8
    ("c0 08 00", BASIC, Sub.AttributeLengthError, True, TAW),  # §7.8 zero length
    ("80 09 03 c00002", BASIC, Sub.AttributeLengthError, True, TAW),  # §7.9
    ("80 0a 05 0000000100", BASIC, Sub.AttributeLengthError, True, TAW),  # §7.10
    ("c0 10 07 00000000000000", BASIC, Sub.AttributeLengthError, True, TAW),  # §7.14
    ("c0 20 0b" + "00" * 11, BASIC, Sub.AttributeLengthError, True, TAW),  # RFC 8092 §6
    ("40 06 01 00", BASIC, Sub.AttributeLengthError, True, DISCARD),  # §7.6
    ("c0 07 07 0000fc00c00002", BASIC, Sub.AttributeLengthError, True, DISCARD),  # §7.7
    ("c0 11 06 03 01 0000fc00", BASIC, Sub.MalformedAS_PATH, False, DISCARD),  # RFC 6793 §6
    ("c0 12 07 0000fc00c00002", BASIC, Sub.AttributeLengthError, True, DISCARD),  # RFC 6793 §6
    ("80 08 04 00000001", BASIC, Sub.AttributeFlagsError, True, TAW),  # COMMUNITIES non-transitive
]


@pytest.mark.parametrize(
    ("bad", "rest", "subcode", "data_is_attr", "action"),
    MALFORMED,
    ids=[f"{m[0][:8]}-{m[2].name}" for m in MALFORMED],
)
def test_malformed_attribute_rfc7606(
    bad: str, rest: str, subcode: Sub, data_is_attr: bool, action: ErrorAction
) -> None:
    body = update(withdrawn_hex="20 0a000002", attrs_hex=rest + bad, nlri_hex="18 0a0001")
    decoded = decode_update(body)
    (problem,) = decoded.problems
    assert problem.code == ErrorCode.UPDATEMessageError
    assert problem.subcode == subcode
    assert problem.data == (bytes.fromhex(bad) if data_is_attr else b"")
    assert problem.action is action
    bad_type = bytes.fromhex(bad)[1]
    assert all(a.type_code != bad_type for a in decoded.attributes)
    if action is TAW:
        assert decoded.treat_as_withdraw
        assert decoded.nlri == ()
        assert decoded.withdrawn == (b"\x20\x0a\x00\x00\x02", P24)
        assert decoded.attributes == ()
    else:
        assert not decoded.treat_as_withdraw
        assert decoded.nlri == (P24,)
        assert decoded.attributes == decode_update(update(attrs_hex=rest)).attributes


@pytest.mark.parametrize(
    ("attrs", "missing"),
    [(REST_NO_ORIGIN, 1), (REST_NO_AS_PATH, 2), (REST_NO_NEXT_HOP, 3)],
)
def test_missing_well_known_attribute_data_is_its_type_rfc7606_3d(attrs: str, missing: int) -> None:
    decoded = decode_update(update(attrs_hex=attrs, nlri_hex="18 0a0001"))
    (problem,) = decoded.problems
    assert (problem.subcode, problem.data, problem.action) == (
        Sub.MissingWellKnownAttribute,
        bytes((missing,)),
        TAW,
    )
    assert decoded.withdrawn == (P24,) and decoded.nlri == ()


def test_mp_reach_needs_no_next_hop_attribute_rfc4760_3() -> None:
    mp = "800e 1e 0002 01 10 20010db8000000000000000000000001 00 40 20010db800000001"
    decoded = decode_update(update(attrs_hex=mp + REST_NO_NEXT_HOP))
    assert decoded.problems == ()


def test_treat_as_withdraw_moves_mp_reach_nlri_to_mp_unreach_rfc7606_2() -> None:
    mp = "800e 1e 0002 01 10 20010db8000000000000000000000001 00 40 20010db800000001"
    unreach = "800f 0c 0002 01 40 20010db800000002"
    decoded = decode_update(update(attrs_hex=mp + unreach + "40 01 01 07" + AS_PATH_64512))
    assert decoded.treat_as_withdraw
    assert decoded.attributes == (
        MpUnreachNlriAttribute(afi=2, withdrawn=(bytes.fromhex("40 20010db800000002"), V6)),
    )


def test_attribute_overrun_after_the_nlri_is_found_is_treat_as_withdraw_rfc7606_4() -> None:
    body = update(attrs_hex=BASIC + "c0 08 08 00000001", nlri_hex="18 0a0001")
    cut = bytearray(body)
    cut[2:4] = (len(bytes.fromhex(BASIC)) + 7).to_bytes(2, "big")  # last attribute overruns
    del cut[4 + len(bytes.fromhex(BASIC)) + 7 :]
    cut += bytes.fromhex("18 0a0001")
    decoded = decode_update(bytes(cut))
    (problem,) = decoded.problems
    assert (problem.subcode, problem.action) == (Sub.MalformedAttributeList, TAW)
    assert decoded.withdrawn == (P24,)


def test_too_few_octets_for_an_attribute_header_is_treat_as_withdraw_rfc7606_4() -> None:
    decoded = decode_update(update(attrs_hex=BASIC + "c0 08", nlri_hex="18 0a0001"))
    assert decoded.treat_as_withdraw and decoded.withdrawn == (P24,)


def test_duplicate_ordinary_attribute_keeps_the_first_rfc7606_3g() -> None:
    comm = "c0 08 04 00000001"
    decoded = decode_update(
        update(attrs_hex=BASIC + comm + "c0 08 04 00000002", nlri_hex="18 0a0001")
    )
    (problem,) = decoded.problems
    assert (problem.subcode, problem.action) == (Sub.MalformedAttributeList, DISCARD)
    assert decoded.attributes[-1] == CommunitiesAttribute((1,))
    assert decoded.nlri == (P24,)
