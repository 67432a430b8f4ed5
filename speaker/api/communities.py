"""BGP communities as text, in one place: `a:b` (RFC 1997), the well-known names (RFC 1997,
3765, 7999, 8326, 9494) and `a:b:c` large communities (RFC 8092).

Read by the desired-state schema and the controller's BGPAdvertisement view (as canonical
text), turned into values by the speaker's UPDATE builder (speaker.session_inputs) and back
into text by `kubgp-speaker decode`. It lives in the contract both sides import because both
sides read the text; the BGP core imports nothing of the project and only encodes the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from speaker.api.fields import FieldError, string

WELL_KNOWN: Final[Mapping[str, int]] = {
    "graceful-shutdown": 0xFFFF0000,
    "accept-own": 0xFFFF0001,
    "llgr-stale": 0xFFFF0006,
    "no-llgr": 0xFFFF0007,
    "blackhole": 0xFFFF029A,
    "no-export": 0xFFFFFF01,
    "no-advertise": 0xFFFFFF02,
    "no-export-subconfed": 0xFFFFFF03,
    "no-peer": 0xFFFFFF04,
}
WELL_KNOWN_NAMES: Final[Mapping[int, str]] = {v: k for k, v in WELL_KNOWN.items()}

UINT16_MAX: Final = 0xFFFF
UINT32_MAX: Final = 0xFFFFFFFF

LargeCommunity = tuple[int, int, int]


def _numbers(text: str, count: int, limit: int) -> tuple[int, ...] | None:
    parts = text.split(":")
    if len(parts) != count or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    values = tuple(int(p) for p in parts)
    return values if all(v <= limit for v in values) else None


def community_value(text: str) -> int:
    """'64512:100' or a well-known name ('no-export') as its 32-bit value; ValueError if
    neither."""
    named = WELL_KNOWN.get(text)
    if named is not None:
        return named
    pair = _numbers(text, 2, UINT16_MAX)
    if pair is None:
        raise ValueError(f"not a community: {text!r}")
    return pair[0] << 16 | pair[1]


def community_text(value: int) -> str:
    """The well-known name, else 'a:b'."""
    return WELL_KNOWN_NAMES.get(value) or f"{value >> 16}:{value & UINT16_MAX}"


def large_community_value(text: str) -> LargeCommunity:
    """'a:b:c' as three 32-bit values; ValueError if it is not one."""
    values = _numbers(text, 3, UINT32_MAX)
    if values is None:
        raise ValueError(f"not a large community: {text!r}")
    return values[0], values[1], values[2]


def community(value: object, path: str) -> str:
    """A community field, in canonical text (a name as it is, 'a:b' without leading zeros)."""
    text = string(value, path)
    if text in WELL_KNOWN:
        return text
    pair = _numbers(text, 2, UINT16_MAX)
    if pair is None:
        raise FieldError(
            path, f"must be 'a:b' (0..65535 each) or a well-known community name, not {text!r}"
        )
    return f"{pair[0]}:{pair[1]}"


def large_community(value: object, path: str) -> str:
    """A large community field, in canonical text."""
    text = string(value, path)
    values = _numbers(text, 3, UINT32_MAX)
    if values is None:
        raise FieldError(path, f"must be 'a:b:c' (0..4294967295 each), not {text!r}")
    return ":".join(map(str, values))
