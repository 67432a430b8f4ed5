"""speaker.api.routes: the fast prefix reader says exactly what `ipaddress` says for every text
it accepts, and refuses (leaves to the exact reader) everything else; keys turn back into
canonical text; a family's counts follow its routes."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speaker.api.routes import (
    FAMILY_IPV4,
    FAMILY_IPV6,
    FamilyRoutes,
    RouteAttributes,
    fast_nlri,
    nlri_sort_key,
    nlri_text,
)


def _expected(text: str) -> tuple[str, bytes] | None:
    """What `ipaddress` (strict) makes of a text, as (family, NLRI key)."""
    try:
        net = ipaddress.ip_network(text)
    except (ValueError, TypeError):
        return None
    family = FAMILY_IPV4 if net.version == 4 else FAMILY_IPV6
    octets = net.network_address.packed[: (net.prefixlen + 7) // 8]
    return family, bytes((net.prefixlen,)) + octets


def _agrees(text: str) -> None:
    found = fast_nlri(text)
    if found is not None:
        # Whatever the fast path accepts, ipaddress accepts with the same value.
        assert found == _expected(text), text


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 40),
    st.sampled_from(["", "0", "00", " ", "+"]),
)
def test_ipv4_texts_agree_with_ipaddress(value: int, length: int, pad: str) -> None:
    address = str(ipaddress.IPv4Address(value))
    for text in (f"{address}/{length}", f"{address}/{pad}{length}", f"{pad}{address}/{length}"):
        _agrees(text)
    net = ipaddress.ip_network(f"{address}/{min(length, 32)}", strict=False)
    assert fast_nlri(str(net)) == _expected(str(net))  # canonical text: always the fast path


@given(st.integers(0, 2**128 - 1), st.integers(0, 130))
def test_ipv6_texts_agree_with_ipaddress(value: int, length: int) -> None:
    address = ipaddress.IPv6Address(value)
    for text in (f"{address}/{length}", f"{address.exploded}/{length}",
                 f"{str(address).upper()}/{length}"):  # fmt: skip
        _agrees(text)
    net = ipaddress.ip_network(f"{address}/{min(length, 128)}", strict=False)
    assert fast_nlri(str(net)) == _expected(str(net))


@given(st.text(alphabet="0123456789abcdef.:/ x%\0\u0661", max_size=45))
def test_any_text_agrees_with_ipaddress(text: str) -> None:
    _agrees(text)


@pytest.mark.parametrize(
    "text",
    ["10.0.0.1/24", "1.2.3.04/32", "01.2.3.4/32", "10.0.0.0/08", "10.0.0.0/255.0.0.0",
     "10.0.0.0", "10.0.0.0/33", "fe80::1%eth0/128", "::/129", "1.2.3.4/32 ", "1.2.3/24"],
)  # fmt: skip
def test_texts_left_to_the_exact_reader(text: str) -> None:
    assert fast_nlri(text) is None


@pytest.mark.parametrize(
    "text", ["10.0.0.0/8", "0.0.0.0/0", "10.128.0.1/32", "2001:db8::/32", "::/0",
             "2001:db8::1/128", "::ffff:102:304/128"],
)  # fmt: skip
def test_keys_back_to_canonical_text_and_numeric_order(text: str) -> None:
    found = fast_nlri(text)
    assert found is not None
    assert nlri_text(*found) == text
    keys = [fast_nlri(t) for t in ("10.0.0.0/8", "9.0.0.0/8", "10.0.0.0/7", "10.0.0.0/16")]
    ordered = sorted((k for k in keys if k), key=lambda fk: nlri_sort_key(fk[1]))
    assert [nlri_text(*k) for k in ordered] == ["9.0.0.0/8", "10.0.0.0/7", "10.0.0.0/8",
                                                "10.0.0.0/16"]  # fmt: skip


def test_family_counts_follow_set_and_remove() -> None:
    a, b = RouteAttributes(), RouteAttributes(med=5)
    table = FamilyRoutes()
    assert table.set(b"\x20\x0a\0\0\1", a) is None
    assert table.set(b"\x20\x0a\0\0\2", a) is None
    assert table.set(b"\x20\x0a\0\0\2", b) is a
    assert table.set(b"\x20\x0a\0\0\2", b) is b  # unchanged
    assert dict(table.counts) == {a: 1, b: 1}
    assert table.remove(b"\x20\x0a\0\0\1") is a
    assert table.remove(b"\x20\x0a\0\0\1") is None
    assert dict(table.counts) == {b: 1}


def test_equal_attribute_sets_hash_alike_and_differ_by_type() -> None:
    assert RouteAttributes(med=1) == RouteAttributes(med=1)
    assert hash(RouteAttributes(med=1)) == hash(RouteAttributes(med=1))
    assert RouteAttributes(med=1) != RouteAttributes(med=2)
    assert RouteAttributes(peers=("a",)) != RouteAttributes(peers=None)
