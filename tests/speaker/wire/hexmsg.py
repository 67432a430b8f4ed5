"""Helpers to write wire bytes by hand in tests, field by field as the RFCs draw them."""

from __future__ import annotations

MARKER = "ff" * 16


def msg(msg_type: int, body_hex: str = "") -> bytes:
    """A whole message: marker, 2-octet length, type, body (RFC 4271 §4.1)."""
    body = bytes.fromhex(body_hex.replace(" ", ""))
    return bytes.fromhex(MARKER) + (19 + len(body)).to_bytes(2, "big") + bytes((msg_type,)) + body


def update(withdrawn_hex: str = "", attrs_hex: str = "", nlri_hex: str = "") -> bytes:
    """An UPDATE body from its three variable fields (RFC 4271 §4.3)."""
    w = bytes.fromhex(withdrawn_hex.replace(" ", ""))
    a = bytes.fromhex(attrs_hex.replace(" ", ""))
    n = bytes.fromhex(nlri_hex.replace(" ", ""))
    return len(w).to_bytes(2, "big") + w + len(a).to_bytes(2, "big") + a + n


# Small, valid shared attributes: ORIGIN IGP, AS_PATH SEQUENCE [64512] (4-octet), NEXT_HOP 192.0.2.1
ORIGIN_IGP = "40 01 01 00"
AS_PATH_64512 = "40 02 06 02 01 0000fc00"
NEXT_HOP_192_0_2_1 = "40 03 04 c0000201"
BASIC = ORIGIN_IGP + AS_PATH_64512 + NEXT_HOP_192_0_2_1
