"""OPEN, NOTIFICATION, KEEPALIVE, ROUTE-REFRESH: known answers written from the RFC text, and
every error path with its code, subcode and data."""

from __future__ import annotations

import pytest

from speaker.bgp.wire.capabilities import (
    AddPathCapability,
    Capability,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    FourOctetASCapability,
    FQDNCapability,
    GracefulRestartCapability,
    LongLivedGracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
    UnknownCapability,
)
from speaker.bgp.wire.context import AS_TRANS, IPV4_UNICAST, IPV6_UNICAST
from speaker.bgp.wire.errors import (
    BGPError,
    CeaseSubcode,
    ErrorAction,
    ErrorCode,
    OPENMessageErrorSubcode,
    ROUTEREFRESHMessageErrorSubcode,
)
from speaker.bgp.wire.messages import (
    Keepalive,
    Message,
    Notification,
    Open,
    RouteRefresh,
    RouteRefreshSubtype,
    decode_all,
)
from tests.speaker.wire.hexmsg import msg

# RFC 4271 §4.2 OPEN: version 4, My AS 64512, Hold Time 90, BGP Identifier 192.0.2.11, then
# Optional Parameters of type 2 (RFC 5492 §4), one capability each.
OPEN_CAPS_HEX = (
    "02 06 01 04 0001 00 01"  # RFC 4760 §8 multiprotocol IPv4 unicast
    "02 06 01 04 0002 00 01"  # ... IPv6 unicast
    "02 02 02 00"  # RFC 2918 route refresh
    "02 02 46 00"  # RFC 7313 enhanced route refresh
    "02 02 06 00"  # RFC 8654 extended message
    "02 06 41 04 0000fc00"  # RFC 6793 4-octet AS 64512
    "02 08 40 06 8078 0001 01 80"  # RFC 4724 GR: R bit, 120 s; IPv4 unicast with F bit
    "02 06 45 04 0001 01 03"  # RFC 7911 ADD-PATH IPv4 unicast send+receive
    "02 08 05 06 0001 0001 0002"  # RFC 8950 extended next hop: IPv4 unicast over IPv6
    "02 09 47 07 0001 01 00 000e10"  # RFC 9494 LLGR IPv4 unicast, 3600 s
    "02 09 49 07 05 6e6f646531 00"  # FQDN "node1", empty domain
    "02 04 80 02 abcd"  # unknown code 128: kept raw
)
OPEN_BODY_HEX = "04 fc00 005a c000020b"


def _open_bytes(caps_hex: str = OPEN_CAPS_HEX, head: str = OPEN_BODY_HEX) -> bytes:
    caps = bytes.fromhex(caps_hex.replace(" ", ""))
    return msg(1, head + f"{len(caps):02x}" + caps.hex())


EXPECTED_CAPS: tuple[Capability, ...] = (
    MultiprotocolCapability(1, 1),
    MultiprotocolCapability(2, 1),
    RouteRefreshCapability(),
    EnhancedRouteRefreshCapability(),
    ExtendedMessageCapability(),
    FourOctetASCapability(64512),
    GracefulRestartCapability(flags=0x8, restart_time=120, families=((1, 1, 0x80),)),
    AddPathCapability(((1, 1, 3),)),
    ExtendedNextHopCapability(((1, 1, 2),)),
    LongLivedGracefulRestartCapability(((1, 1, 0, 3600),)),
    FQDNCapability("node1", ""),
    UnknownCapability(128, b"\xab\xcd"),
)


def _one(data: bytes) -> Message:
    (message,) = decode_all(data)
    return message


def test_open_known_answer_rfc4271_4_2_with_every_capability() -> None:
    data = _open_bytes()
    decoded = _one(data)
    assert decoded == Open(my_as=64512, hold_time=90, bgp_id=0xC000020B, capabilities=EXPECTED_CAPS)
    assert isinstance(decoded, Open)
    assert decoded.asn == 64512
    gr = decoded.capabilities[6]
    assert isinstance(gr, GracefulRestartCapability)
    assert gr.restarting and gr.forwarding_preserved(IPV4_UNICAST)
    assert not gr.forwarding_preserved(IPV6_UNICAST)
    assert decoded.encode() == data  # one capability per parameter, as we send


def test_open_four_octet_asn_sends_as_trans_rfc6793_4_1() -> None:
    opened = Open.create(asn=4200000000, hold_time=90, bgp_id=0xC000020B)
    data = opened.encode()
    assert data == _open_bytes("02 06 41 04 fa56ea00", f"04 {AS_TRANS:04x} 005a c000020b")
    decoded = _one(data)
    assert isinstance(decoded, Open)
    assert decoded.my_as == AS_TRANS and decoded.asn == 4200000000


def test_open_rfc9072_extended_optional_parameters() -> None:
    # Non-Ext OP Len 255, Non-Ext OP Type 255, Extended Opt. Parm. Length 9, then one
    # parameter with a 2-octet length: type 2, length 6, capability 65 (4-octet AS 64512).
    data = msg(1, OPEN_BODY_HEX + "ff ff 0009 02 0006 41 04 0000fc00")
    decoded = _one(data)
    assert isinstance(decoded, Open)
    assert decoded.capabilities == (FourOctetASCapability(64512),)


def test_open_too_many_capabilities_for_one_octet_uses_rfc9072_and_round_trips() -> None:
    caps = tuple(MultiprotocolCapability(afi, 1) for afi in range(1, 50))
    opened = Open(my_as=64512, hold_time=90, bgp_id=1, capabilities=caps)
    data = opened.encode()
    assert data[19 + 9 : 19 + 11] == b"\xff\xff"
    assert _one(data) == opened


def _open_error(data: bytes) -> BGPError:
    with pytest.raises(BGPError) as info:
        decode_all(data)
    assert info.value.code == ErrorCode.OPENMessageError
    assert info.value.action is ErrorAction.SESSION_RESET
    return info.value


def test_open_unsupported_version_data_is_our_version_rfc4271_6_2() -> None:
    err = _open_error(_open_bytes(head="03 fc00 005a c000020b"))
    assert err.subcode == OPENMessageErrorSubcode.UnsupportedVersionNumber
    assert err.data == b"\x00\x04"


@pytest.mark.parametrize("hold", [1, 2])
def test_open_unacceptable_hold_time(hold: int) -> None:
    err = _open_error(_open_bytes(head=f"04 fc00 {hold:04x} c000020b"))
    assert err.subcode == OPENMessageErrorSubcode.UnacceptableHoldTime
    assert err.data == b""


def test_open_hold_time_zero_and_three_are_fine() -> None:
    for hold in (0, 3):
        decoded = _one(_open_bytes(head=f"04 fc00 {hold:04x} c000020b"))
        assert isinstance(decoded, Open) and decoded.hold_time == hold


def test_open_zero_identifier_is_bad_bgp_identifier() -> None:
    err = _open_error(_open_bytes(head="04 fc00 005a 00000000"))
    assert err.subcode == OPENMessageErrorSubcode.BadBGPIdentifier
    assert err.data == b""


@pytest.mark.parametrize(
    ("head", "caps"),
    [("04 0000 005a c000020b", ""), ("04 5ba0 005a c000020b", "02 06 41 04 00000000")],
    ids=["my-as", "4-octet-capability"],
)
def test_open_as_zero_is_bad_peer_as_rfc7607_2(head: str, caps: str) -> None:
    err = _open_error(_open_bytes(caps, head))
    assert err.subcode == OPENMessageErrorSubcode.BadPeerAS
    assert err.data == b""


def test_open_unknown_optional_parameter_rfc4271_6_2() -> None:
    err = _open_error(_open_bytes("01 02 abcd"))  # type 1 (authentication, deprecated)
    assert err.subcode == OPENMessageErrorSubcode.UnsupportedOptionalParameter
    assert err.data == b""


@pytest.mark.parametrize(
    "body",
    [
        OPEN_BODY_HEX + "05 02 06 01 04 00",  # parameter length overruns the field
        OPEN_BODY_HEX + "04 02 02 01 04",  # capability length overruns its parameter
        OPEN_BODY_HEX + "05 02 03 01 01 00",  # multiprotocol value of 1 octet
        OPEN_BODY_HEX + "06 02 04 41 02 0001",  # 4-octet AS value of 2 octets
        OPEN_BODY_HEX + "01 02",  # truncated parameter header
        OPEN_BODY_HEX + "ff ff 00",  # truncated RFC 9072 length
    ],
    ids=["param-overrun", "cap-overrun", "mp-short", "as4-short", "param-header", "ext-len"],
)
def test_open_malformed_parameters_are_unspecific_open_errors(body: str) -> None:
    err = _open_error(msg(1, body))
    assert err.subcode == OPENMessageErrorSubcode.Unspecific
    assert err.data == b""


def test_notification_known_answer_with_rfc9003_shutdown_communication() -> None:
    # RFC 9003 §2: Cease / Administrative Shutdown, data = length octet + UTF-8 text.
    data = msg(3, "06 02 0b" + b"maintenance".hex())
    decoded = _one(data)
    assert decoded == Notification(code=6, subcode=2, data=b"\x0bmaintenance")
    assert isinstance(decoded, Notification)
    assert decoded.shutdown_message == "maintenance"
    assert (
        Notification.shutdown(CeaseSubcode.AdministrativeShutdown, "maintenance").encode() == data
    )


def test_shutdown_communication_is_cut_at_255_octets_on_a_character_boundary() -> None:
    note = Notification.shutdown(CeaseSubcode.AdministrativeReset, "é" * 200)  # 400 octets
    assert note.data[0] == 254 and len(note.data) == 255
    assert note.shutdown_message == "é" * 127


def test_notification_without_communication_and_other_codes() -> None:
    assert _one(msg(3, "04 00")) == Notification(code=ErrorCode.HoldTimerExpired)
    note = _one(msg(3, "06 02"))
    assert isinstance(note, Notification) and note.shutdown_message is None
    bad = _one(msg(3, "06 04 05 6869"))  # length octet disagrees: no communication
    assert isinstance(bad, Notification) and bad.shutdown_message is None


def test_notification_from_error_carries_code_subcode_data() -> None:
    err = BGPError(1, 2, b"\x10\x00")
    assert Notification.from_error(err).encode() == msg(3, "01 02 1000")


def test_keepalive_known_answer() -> None:
    assert Keepalive().encode() == msg(4)
    assert _one(msg(4)) == Keepalive()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("0001 00 01", RouteRefresh(afi=1, safi=1)),  # RFC 2918 §3
        (
            "0002 01 01",
            RouteRefresh(afi=2, safi=1, subtype=RouteRefreshSubtype.BoRR),
        ),  # RFC 7313 §3.2
        ("0002 02 01", RouteRefresh(afi=2, safi=1, subtype=RouteRefreshSubtype.EoRR)),
        (
            "0001 07 01",
            RouteRefresh(afi=1, safi=1, subtype=7),
        ),  # unknown subtype: decoded, the FSM ignores it
    ],
)
def test_route_refresh_known_answers(body: str, expected: RouteRefresh) -> None:
    assert _one(msg(5, body)) == expected
    assert expected.encode() == msg(5, body)


@pytest.mark.parametrize("body", ["", "0001 01", "0001 01 01 00"])
def test_route_refresh_bad_length_data_is_the_whole_message_rfc7313_5(body: str) -> None:
    data = msg(5, body)
    with pytest.raises(BGPError) as info:
        decode_all(data)
    assert info.value.code == ErrorCode.ROUTEREFRESHMessageError
    assert info.value.subcode == ROUTEREFRESHMessageErrorSubcode.InvalidMessageLength
    assert info.value.data == data


def test_decode_all_rejects_a_trailing_partial_message() -> None:
    with pytest.raises(BGPError) as info:
        decode_all(msg(4) + msg(4)[:10])
    assert info.value.code == ErrorCode.MessageHeaderError


def test_encoding_refuses_a_message_over_the_limit() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        Notification(code=6, data=bytes(4096)).encode()
