"""BGP error codes (RFC 4271 §4.5, 4486, 6608, 7313) and the one exception a decoder raises.

A decoder returns a value or raises `BGPError`; the error carries the NOTIFICATION it would send
(code, subcode, data as RFC 4271 §6 prescribes) and what to do about it (RFC 7606 §2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.IntEnum):
    """NOTIFICATION Error Code (RFC 4271 §4.5, RFC 7313 §5)."""

    MessageHeaderError = 1
    OPENMessageError = 2
    UPDATEMessageError = 3
    HoldTimerExpired = 4
    FiniteStateMachineError = 5
    Cease = 6
    ROUTEREFRESHMessageError = 7


class MessageHeaderErrorSubcode(enum.IntEnum):
    """RFC 4271 §6.1."""

    Unspecific = 0
    ConnectionNotSynchronized = 1
    BadMessageLength = 2
    BadMessageType = 3


class OPENMessageErrorSubcode(enum.IntEnum):
    """RFC 4271 §6.2, RFC 5492 §5 (Unsupported Capability), RFC 9234 (Role Mismatch)."""

    Unspecific = 0
    UnsupportedVersionNumber = 1
    BadPeerAS = 2
    BadBGPIdentifier = 3
    UnsupportedOptionalParameter = 4
    # 5 (Authentication Failure) is deprecated.
    UnacceptableHoldTime = 6
    UnsupportedCapability = 7
    RoleMismatch = 11


class UPDATEMessageErrorSubcode(enum.IntEnum):
    """RFC 4271 §6.3."""

    Unspecific = 0
    MalformedAttributeList = 1
    UnrecognizedWellKnownAttribute = 2
    MissingWellKnownAttribute = 3
    AttributeFlagsError = 4
    AttributeLengthError = 5
    InvalidORIGINAttribute = 6
    # 7 (AS Routing Loop) is deprecated.
    InvalidNEXT_HOPAttribute = 8
    OptionalAttributeError = 9
    InvalidNetworkField = 10
    MalformedAS_PATH = 11


class FiniteStateMachineErrorSubcode(enum.IntEnum):
    """RFC 6608 §4."""

    UnspecifiedError = 0
    ReceiveUnexpectedMessageInOpenSentState = 1
    ReceiveUnexpectedMessageInOpenConfirmState = 2
    ReceiveUnexpectedMessageInEstablishedState = 3


class CeaseSubcode(enum.IntEnum):
    """RFC 4486 §4, RFC 8538 (Hard Reset), RFC 9384 (BFD Down)."""

    Unspecific = 0
    MaximumNumberOfPrefixesReached = 1
    AdministrativeShutdown = 2
    PeerDeConfigured = 3
    AdministrativeReset = 4
    ConnectionRejected = 5
    OtherConfigurationChange = 6
    ConnectionCollisionResolution = 7
    OutOfResources = 8
    HardReset = 9
    BFDDown = 10


class ROUTEREFRESHMessageErrorSubcode(enum.IntEnum):
    """RFC 7313 §5."""

    Reserved = 0
    InvalidMessageLength = 1


SUBCODES: dict[int, type[enum.IntEnum]] = {
    ErrorCode.MessageHeaderError: MessageHeaderErrorSubcode,
    ErrorCode.OPENMessageError: OPENMessageErrorSubcode,
    ErrorCode.UPDATEMessageError: UPDATEMessageErrorSubcode,
    ErrorCode.FiniteStateMachineError: FiniteStateMachineErrorSubcode,
    ErrorCode.Cease: CeaseSubcode,
    ErrorCode.ROUTEREFRESHMessageError: ROUTEREFRESHMessageErrorSubcode,
}


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"Unknown({code})"


def subcode_name(code: int, subcode: int) -> str:
    table = SUBCODES.get(code)
    if table is None:
        return str(subcode) if subcode else "Unspecific"
    try:
        return table(subcode).name
    except ValueError:
        return f"Unknown({subcode})"


class ErrorAction(enum.Enum):
    """What the session does about an error (RFC 7606 §2), strongest first."""

    SESSION_RESET = "session-reset"
    AFI_SAFI_DISABLE = "afi-safi-disable"
    TREAT_AS_WITHDRAW = "treat-as-withdraw"
    ATTRIBUTE_DISCARD = "attribute-discard"


class BGPError(Exception):
    """A protocol error: the NOTIFICATION (code, subcode, data) and the RFC 7606 action.

    `family` is the (AFI, SAFI) an AFI_SAFI_DISABLE action applies to.
    """

    def __init__(
        self,
        code: int,
        subcode: int,
        data: bytes = b"",
        action: ErrorAction = ErrorAction.SESSION_RESET,
        *,
        reason: str = "",
        family: tuple[int, int] | None = None,
    ) -> None:
        self.code = code
        self.subcode = subcode
        self.data = bytes(data)
        self.action = action
        self.reason = reason
        self.family = family
        super().__init__(code, subcode, self.data, action)

    def __str__(self) -> str:
        text = f"{code_name(self.code)}/{subcode_name(self.code, self.subcode)}"
        if self.reason:
            text += f": {self.reason}"
        if self.data:
            text += f" (data {self.data.hex()})"
        return f"{text} [{self.action.value}]"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BGPError):
            return NotImplemented
        return (self.code, self.subcode, self.data, self.action, self.family) == (
            other.code,
            other.subcode,
            other.data,
            other.action,
            other.family,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.subcode, self.data, self.action, self.family))

    def problem(self) -> Problem:
        """This error as a frozen value (for an UPDATE decoded with treat-as-withdraw)."""
        return Problem(
            code=self.code,
            subcode=self.subcode,
            data=self.data,
            action=self.action,
            reason=self.reason,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """A non-fatal error found while decoding an UPDATE (treat-as-withdraw or attribute-discard)."""

    code: int
    subcode: int
    data: bytes
    action: ErrorAction
    reason: str = ""
