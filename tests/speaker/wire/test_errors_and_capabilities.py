"""Error codes as the RFCs number them, BGPError as a value, and malformed capabilities."""

from __future__ import annotations

import pytest

from speaker.bgp.wire.capabilities import CAPABILITIES, decode_capabilities
from speaker.bgp.wire.errors import (
    BGPError,
    CeaseSubcode,
    ErrorAction,
    ErrorCode,
    FiniteStateMachineErrorSubcode,
    MessageHeaderErrorSubcode,
    OPENMessageErrorSubcode,
    UPDATEMessageErrorSubcode,
    code_name,
    subcode_name,
)


def test_codes_are_numbered_as_rfc4271_4_5_and_rfc4486_4() -> None:
    assert [int(c) for c in ErrorCode] == [1, 2, 3, 4, 5, 6, 7]
    assert int(MessageHeaderErrorSubcode.BadMessageType) == 3
    assert int(OPENMessageErrorSubcode.UnacceptableHoldTime) == 6
    assert int(OPENMessageErrorSubcode.UnsupportedCapability) == 7  # RFC 5492 §5
    assert int(UPDATEMessageErrorSubcode.InvalidNEXT_HOPAttribute) == 8
    assert int(UPDATEMessageErrorSubcode.MalformedAS_PATH) == 11
    assert int(FiniteStateMachineErrorSubcode.ReceiveUnexpectedMessageInEstablishedState) == 3
    assert [int(c) for c in CeaseSubcode][1:9] == list(range(1, 9))  # RFC 4486 §4
    assert int(CeaseSubcode.HardReset) == 9  # RFC 8538


def test_names_for_humans() -> None:
    assert code_name(6) == "Cease"
    assert subcode_name(6, 2) == "AdministrativeShutdown"
    assert subcode_name(4, 0) == "Unspecific"
    assert code_name(99) == "Unknown(99)" and subcode_name(1, 99) == "Unknown(99)"


def test_bgp_error_is_a_value() -> None:
    a = BGPError(3, 5, b"\x40\x01", ErrorAction.TREAT_AS_WITHDRAW, reason="x")
    b = BGPError(3, 5, b"\x40\x01", ErrorAction.TREAT_AS_WITHDRAW, reason="y")
    assert a == b and hash(a) == hash(b)
    assert a != BGPError(3, 5, b"\x40\x01")
    assert str(a) == "UPDATEMessageError/AttributeLengthError: x (data 4001) [treat-as-withdraw]"
    problem = a.problem()
    assert (problem.code, problem.subcode, problem.data, problem.action) == (
        3,
        5,
        b"\x40\x01",
        ErrorAction.TREAT_AS_WITHDRAW,
    )


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (1, "000101"),
        (2, "00"),
        (5, "0001000100"),
        (6, "00"),
        (64, "00"),
        (64, "007800010"),
        (65, "000000"),
        (69, "000101"),
        (70, "00"),
        (71, "0001010000"),
        (73, ""),
        (73, "05616263"),
        (73, "01610262"),
    ],
)
def test_malformed_capability_is_an_unspecific_open_error(code: int, value: str) -> None:
    raw = bytes.fromhex(value.ljust(len(value) + len(value) % 2, "0"))
    assert code in CAPABILITIES
    with pytest.raises(BGPError) as info:
        decode_capabilities(bytes((code, len(raw))) + raw)
    assert info.value.code == ErrorCode.OPENMessageError
    assert info.value.subcode == OPENMessageErrorSubcode.Unspecific
    assert info.value.data == b""
    assert info.value.action is ErrorAction.SESSION_RESET
