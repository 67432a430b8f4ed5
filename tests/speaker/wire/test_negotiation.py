"""Negotiated session parameters from two OPENs."""

from __future__ import annotations

from speaker.bgp.session.open import negotiate
from speaker.bgp.wire.capabilities import (
    AddPathCapability,
    Capability,
    ExtendedMessageCapability,
    GracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
)
from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST
from speaker.bgp.wire.messages import Open


def _open(*caps: Capability, hold: int = 90, four: bool = True) -> Open:
    if four:
        return Open.create(asn=64512, hold_time=hold, bgp_id=1, capabilities=caps)
    return Open(my_as=64512, hold_time=hold, bgp_id=1, capabilities=caps)


def test_everything_both_sides_offer() -> None:
    v4, v6 = MultiprotocolCapability(1, 1), MultiprotocolCapability(2, 1)
    gr = GracefulRestartCapability(restart_time=120, families=((1, 1, 0x80),))
    local = _open(
        v4, v6, RouteRefreshCapability(), ExtendedMessageCapability(),
        AddPathCapability(((1, 1, 1), (2, 1, 2))),
    )  # fmt: skip
    remote = _open(
        v4, v6, RouteRefreshCapability(), ExtendedMessageCapability(), gr,
        AddPathCapability(((1, 1, 2), (2, 1, 1))), hold=30,
    )  # fmt: skip
    agreed = negotiate(local, remote)
    assert agreed.families == {IPV4_UNICAST, IPV6_UNICAST}
    assert agreed.rx.add_path == {IPV4_UNICAST} and agreed.tx.add_path == {IPV6_UNICAST}
    assert agreed.rx.four_octet_as and agreed.rx.extended_message
    assert agreed.rx.max_message == 65535
    assert agreed.hold_time == 30 and agreed.route_refresh
    assert not agreed.enhanced_route_refresh
    assert agreed.peer_graceful_restart == gr


def test_defaults_when_the_peer_offers_nothing() -> None:
    agreed = negotiate(_open(MultiprotocolCapability(2, 1)), _open(four=False))
    assert agreed.families == frozenset()  # we only do IPv6, they only (implicitly) IPv4
    assert not agreed.rx.four_octet_as and not agreed.rx.extended_message
    assert agreed.rx.max_message == 4096
    assert negotiate(_open(), _open(four=False)).families == {IPV4_UNICAST}
