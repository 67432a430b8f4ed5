"""speaker.api.communities: the one text form of communities, read by the schema and the
controller, turned into values for the UPDATE builder and back into text by `decode`."""

from __future__ import annotations

import pytest

from speaker.api.communities import (
    WELL_KNOWN,
    community,
    community_text,
    community_value,
    large_community,
    large_community_value,
)
from speaker.api.fields import FieldError


def test_values_and_text() -> None:
    assert community_value("no-export") == 0xFFFFFF01
    assert community_value("no-peer") == 0xFFFFFF04  # RFC 3765 NOPEER, as the schema spells it
    assert community_value("64512:100") == 64512 << 16 | 100
    assert community_text(0xFFFF029A) == "blackhole"
    assert community_text(64512 << 16 | 100) == "64512:100"
    assert large_community_value("64512:1:2") == (64512, 1, 2)
    for name in WELL_KNOWN:
        assert community_text(community_value(name)) == name


@pytest.mark.parametrize("bad", ["65536:1", "x", "1:2:3", "1:", "NO-EXPORT", "\u00b2:1", "-1:2"])
def test_not_a_community(bad: str) -> None:
    with pytest.raises(ValueError, match="not a community"):
        community_value(bad)
    with pytest.raises(FieldError) as caught:
        community(bad, "communities[0]")
    assert str(caught.value) == (
        f"communities[0]: must be 'a:b' (0..65535 each) or a well-known community name, not {bad!r}"
    )


@pytest.mark.parametrize("bad", ["1:2", "4294967296:1:1", "a:b:c", "1:2:3:4"])
def test_not_a_large_community(bad: str) -> None:
    with pytest.raises(ValueError, match="not a large community"):
        large_community_value(bad)
    with pytest.raises(FieldError, match=r"^x: must be 'a:b:c' \(0\.\.4294967295 each\)"):
        large_community(bad, "x")


def test_canonical_text() -> None:
    assert community("065:007", "c") == "65:7"
    assert community("no-export", "c") == "no-export"
    assert large_community("01:2:0003", "c") == "1:2:3"
    with pytest.raises(FieldError, match=r"^c: must not be empty"):
        community("", "c")
    with pytest.raises(FieldError, match=r"^c: must be a string, not integer"):
        community(5, "c")
