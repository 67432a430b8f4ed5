"""The BFD Control packet (RFC 5880 §4.1) and the one exception its decoder raises.

    packet = decode(data)          # a ControlPacket, or BfdError
    data = packet.encode()

`decode` applies the checks of §6.8.6 that need nothing but the packet itself (version, Length,
Detect Mult, the Multipoint bit, My Discriminator, a zero Your Discriminator only in Down or
AdminDown); the checks that need a session (which one, TTL, authentication in use) are the
receiver's (`speaker.bfd.demux`). Bytes after `Length` (UDP padding) are ignored, as §6.8.6 does
not forbid them.

Authentication (§4.2-4.4): the section is decoded (type and raw data, its length checked against
`Length`) so that a packet carrying it is a value, not an error; kubgp configures no
authentication, so the receiver discards every packet with the A bit set (§6.8.6: "If the A bit
is set and no authentication is in use ... the packet MUST be discarded"). Nothing is verified
here, and nothing is ever sent with authentication.

Intervals are microseconds, as on the wire.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

VERSION: Final = 1
HEADER_LENGTH: Final = 24
AUTH_HEADER_LENGTH: Final = 2
UINT32_MAX: Final = 0xFFFFFFFF

_HEADER = struct.Struct("!BBBBIIIII")

_POLL: Final = 0x20
_FINAL: Final = 0x10
_CONTROL_PLANE_INDEPENDENT: Final = 0x08
_AUTH_PRESENT: Final = 0x04
_DEMAND: Final = 0x02
_MULTIPOINT: Final = 0x01


class State(enum.IntEnum):
    """bfd.SessionState and the packet's Sta field (§4.1)."""

    AdminDown = 0
    Down = 1
    Init = 2
    Up = 3


class Diagnostic(enum.IntEnum):
    """The Diag field (§4.1): why the sender's session last changed state."""

    NoDiagnostic = 0
    ControlDetectionTimeExpired = 1
    EchoFunctionFailed = 2
    NeighborSignaledSessionDown = 3
    ForwardingPlaneReset = 4
    PathDown = 5
    ConcatenatedPathDown = 6
    AdministrativelyDown = 7
    ReverseConcatenatedPathDown = 8


DIAGNOSTIC_NAMES: Final = {
    Diagnostic.NoDiagnostic: "no-diagnostic",
    Diagnostic.ControlDetectionTimeExpired: "control-detection-time-expired",
    Diagnostic.EchoFunctionFailed: "echo-function-failed",
    Diagnostic.NeighborSignaledSessionDown: "neighbor-signaled-session-down",
    Diagnostic.ForwardingPlaneReset: "forwarding-plane-reset",
    Diagnostic.PathDown: "path-down",
    Diagnostic.ConcatenatedPathDown: "concatenated-path-down",
    Diagnostic.AdministrativelyDown: "administratively-down",
    Diagnostic.ReverseConcatenatedPathDown: "reverse-concatenated-path-down",
}


def diagnostic_name(code: int) -> str:
    """The kebab-case name of a Diag value; unknown values (9-31) as `diag-N`."""
    try:
        return DIAGNOSTIC_NAMES[Diagnostic(code)]
    except ValueError:
        return f"diag-{code}"


class Malformed(enum.StrEnum):
    """Why a packet was discarded; also the label of the drop counter."""

    Short = "short"
    Version = "version"
    Length = "length"
    DetectMult = "detect-mult"
    Multipoint = "multipoint"
    MyDiscriminator = "my-discriminator"
    YourDiscriminator = "your-discriminator"
    AuthLength = "auth-length"


class BfdError(ValueError):
    """A packet the receiver must discard (§6.8.6); `reason` says which rule it broke."""

    def __init__(self, reason: Malformed, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSection:
    """An authentication section as received: Auth Type and what follows Auth Len."""

    type: int
    data: bytes

    def encode(self) -> bytes:
        return bytes((self.type, AUTH_HEADER_LENGTH + len(self.data))) + self.data


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPacket:
    """One BFD Control packet. `diagnostic` keeps the raw value (5 bits: 9-31 are unassigned
    but legal on the wire)."""

    state: State
    detect_mult: int
    my_discriminator: int
    your_discriminator: int
    desired_min_tx: int
    required_min_rx: int
    required_min_echo_rx: int = 0
    diagnostic: int = Diagnostic.NoDiagnostic
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False
    multipoint: bool = False
    version: int = VERSION
    auth: AuthSection | None = None

    def encode(self) -> bytes:
        flags = (
            (_POLL if self.poll else 0)
            | (_FINAL if self.final else 0)
            | (_CONTROL_PLANE_INDEPENDENT if self.control_plane_independent else 0)
            | (_AUTH_PRESENT if self.auth is not None else 0)
            | (_DEMAND if self.demand else 0)
            | (_MULTIPOINT if self.multipoint else 0)
        )
        auth = self.auth.encode() if self.auth is not None else b""
        head = _HEADER.pack(
            (self.version << 5) | (self.diagnostic & 0x1F),
            (int(self.state) << 6) | flags,
            self.detect_mult,
            HEADER_LENGTH + len(auth),
            self.my_discriminator,
            self.your_discriminator,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        )
        return head + auth


def decode(data: bytes) -> ControlPacket:
    """A Control packet from a UDP payload, or `BfdError` (§6.8.6, the packet-only rules)."""
    if len(data) < HEADER_LENGTH:
        raise BfdError(Malformed.Short, f"{len(data)} bytes, a Control packet has at least 24")
    vers_diag, sta_flags, mult, length, my, your, tx, rx, echo = _HEADER.unpack_from(data)
    version = vers_diag >> 5
    if version != VERSION:
        raise BfdError(Malformed.Version, f"version {version}, only {VERSION} is known")
    auth_present = bool(sta_flags & _AUTH_PRESENT)
    minimum = HEADER_LENGTH + (AUTH_HEADER_LENGTH if auth_present else 0)
    if length < minimum:
        raise BfdError(Malformed.Length, f"Length {length} is below {minimum}")
    if length > len(data):
        raise BfdError(Malformed.Length, f"Length {length} but only {len(data)} bytes arrived")
    if mult == 0:
        raise BfdError(Malformed.DetectMult, "Detect Mult is zero")
    if sta_flags & _MULTIPOINT:
        raise BfdError(Malformed.Multipoint, "the Multipoint bit is set")
    if my == 0:
        raise BfdError(Malformed.MyDiscriminator, "My Discriminator is zero")
    state = State(sta_flags >> 6)
    if your == 0 and state not in (State.Down, State.AdminDown):
        raise BfdError(
            Malformed.YourDiscriminator, f"Your Discriminator is zero in state {state.name}"
        )
    auth: AuthSection | None = None
    if auth_present:
        auth_type, auth_len = data[HEADER_LENGTH], data[HEADER_LENGTH + 1]
        if auth_len < AUTH_HEADER_LENGTH or HEADER_LENGTH + auth_len > length:
            raise BfdError(
                Malformed.AuthLength, f"Auth Len {auth_len} does not fit in Length {length}"
            )
        auth = AuthSection(
            type=auth_type,
            data=bytes(data[HEADER_LENGTH + AUTH_HEADER_LENGTH : HEADER_LENGTH + auth_len]),
        )
    return ControlPacket(
        version=version,
        diagnostic=vers_diag & 0x1F,
        state=state,
        poll=bool(sta_flags & _POLL),
        final=bool(sta_flags & _FINAL),
        control_plane_independent=bool(sta_flags & _CONTROL_PLANE_INDEPENDENT),
        demand=bool(sta_flags & _DEMAND),
        multipoint=False,
        detect_mult=mult,
        my_discriminator=my,
        your_discriminator=your,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
        auth=auth,
    )


__all__ = [
    "DIAGNOSTIC_NAMES",
    "HEADER_LENGTH",
    "VERSION",
    "AuthSection",
    "BfdError",
    "ControlPacket",
    "Diagnostic",
    "Malformed",
    "State",
    "decode",
    "diagnostic_name",
]
