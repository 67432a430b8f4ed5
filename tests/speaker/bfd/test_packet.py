"""The BFD Control packet codec (RFC 5880 §4.1) and the packet-only discard rules of §6.8.6."""

from __future__ import annotations

import dataclasses

import pytest

from speaker.bfd.packet import (
    AuthSection,
    BfdError,
    ControlPacket,
    Diagnostic,
    Malformed,
    State,
    decode,
    diagnostic_name,
)

# Up, Poll, Detect Mult 3, Length 24, My 0x11223344, Your 0x55667788, 300 ms / 300 ms / 0,
# Diag 1: laid out by hand from the figure in §4.1.
UP_POLL = bytes.fromhex("21e803181122334455667788000493e0000493e000000000")


def test_known_bytes_decode_field_by_field() -> None:
    p = decode(UP_POLL)
    assert p == ControlPacket(
        version=1,
        diagnostic=Diagnostic.ControlDetectionTimeExpired,
        state=State.Up,
        poll=True,
        final=False,
        control_plane_independent=True,
        demand=False,
        detect_mult=3,
        my_discriminator=0x11223344,
        your_discriminator=0x55667788,
        desired_min_tx=300_000,
        required_min_rx=300_000,
        required_min_echo_rx=0,
    )
    assert p.encode() == UP_POLL


def test_every_flag_bit_lands_where_the_figure_puts_it() -> None:
    base = ControlPacket(state=State.Down, detect_mult=1, my_discriminator=1,
                         your_discriminator=0, desired_min_tx=1, required_min_rx=1)  # fmt: skip
    assert base.encode()[1] == 0x40  # Sta=Down in the top two bits, no flags
    variants = {
        0x20: dataclasses.replace(base, poll=True),
        0x10: dataclasses.replace(base, final=True),
        0x08: dataclasses.replace(base, control_plane_independent=True),
        0x02: dataclasses.replace(base, demand=True),
    }
    for bit, packet in variants.items():
        assert packet.encode()[1] == 0x40 | bit, packet
        assert decode(packet.encode()) == packet


def test_trailing_bytes_after_length_are_ignored() -> None:
    assert decode(UP_POLL + b"\0\0\0\0") == decode(UP_POLL)


def _bad(data: bytes) -> Malformed:
    with pytest.raises(BfdError) as info:
        decode(data)
    return info.value.reason


def _set(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    out[offset] = value
    return bytes(out)


def test_discard_rules() -> None:
    assert _bad(UP_POLL[:23]) is Malformed.Short
    assert _bad(_set(UP_POLL, 0, (2 << 5) | 1)) is Malformed.Version
    assert _bad(_set(UP_POLL, 3, 23)) is Malformed.Length
    assert _bad(_set(UP_POLL, 3, 28)) is Malformed.Length  # more than arrived
    assert _bad(_set(UP_POLL, 2, 0)) is Malformed.DetectMult
    assert _bad(_set(UP_POLL, 1, 0xE9)) is Malformed.Multipoint
    assert _bad(UP_POLL[:4] + b"\0\0\0\0" + UP_POLL[8:]) is Malformed.MyDiscriminator
    # Your Discriminator zero: only in Down or AdminDown.
    zero_your = UP_POLL[:8] + b"\0\0\0\0" + UP_POLL[12:]
    assert _bad(zero_your) is Malformed.YourDiscriminator
    assert _bad(_set(zero_your, 1, 0x80)) is Malformed.YourDiscriminator  # Init
    assert decode(_set(zero_your, 1, 0x40)).state is State.Down
    assert decode(_set(zero_your, 1, 0x00)).state is State.AdminDown


def test_authentication_section_is_decoded_not_trusted() -> None:
    auth = AuthSection(type=1, data=b"\x01secret")  # simple password: key id, password
    packet = ControlPacket(state=State.Down, detect_mult=3, my_discriminator=7,
                           your_discriminator=0, desired_min_tx=1_000_000,
                           required_min_rx=300_000, auth=auth)  # fmt: skip
    wire = packet.encode()
    assert wire[3] == 24 + 2 + 7 and wire[1] & 0x04
    assert decode(wire) == packet
    # A bit set but no room for the section, or an Auth Len past Length.
    no_room = _set(_set(UP_POLL, 1, UP_POLL[1] | 0x04), 3, 24)
    assert _bad(no_room) is Malformed.Length
    past = bytearray(wire)
    past[25] = 40
    assert _bad(bytes(past)) is Malformed.AuthLength
    short_len = bytearray(wire)
    short_len[25] = 1
    assert _bad(bytes(short_len)) is Malformed.AuthLength


def test_diagnostic_names() -> None:
    assert diagnostic_name(1) == "control-detection-time-expired"
    assert diagnostic_name(3) == "neighbor-signaled-session-down"
    assert diagnostic_name(31) == "diag-31"
    assert decode(_set(UP_POLL, 0, (1 << 5) | 31)).diagnostic == 31
