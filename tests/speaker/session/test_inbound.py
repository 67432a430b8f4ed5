"""A received UPDATE on its way into the Adj-RIB-In (speaker/bgp/session/inbound.py): RFC 7606
outcomes reported, AS loops and families not negotiated ignored, never a session reset."""

from __future__ import annotations

from speaker.bgp.rib.adj_rib_out import PathAttributes
from speaker.bgp.session.fsm import Session, State, UpdateOutcome
from speaker.bgp.session.inbound import Outcome
from speaker.bgp.wire.attributes import AsPathAttribute, OriginAttribute
from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST
from speaker.bgp.wire.framing import UPDATE
from tests.speaker.session.back_to_back import Wire
from tests.speaker.session.test_fsm import ATTRS, hosts, pair, table
from tests.speaker.wire.hexmsg import NEXT_HOP_192_0_2_1, msg, update

# a is AS 65001, b is AS 65002 (tests.speaker.session.test_fsm.pair)
ORIGIN_BAD = "40 01 01 07"  # ORIGIN 7: treat-as-withdraw (RFC 7606 §7.1)
AS_PATH_A = "40 02 06 02 01 0000fde9"  # SEQUENCE [65001]
ATOMIC_AGGREGATE_BAD = "40 06 01 00"  # length 1: attribute discard (RFC 7606 §7.6)
P24 = bytes((24, 10, 0, 1))
V6_REACH = "800e 1e 0002 01 10 20010db8000000000000000000000001 00 40 20010db800000001"
V6 = bytes.fromhex("40 20010db800000001")


def outcomes(wire: Wire, s: Session) -> list[UpdateOutcome]:
    return [e for e in wire.of(s) if isinstance(e, UpdateOutcome)]


def test_treat_as_withdraw_is_reported_with_the_error_the_nlri_and_the_update() -> None:
    wire, a, b = pair()
    body = update(attrs_hex=ORIGIN_BAD + AS_PATH_A + NEXT_HOP_192_0_2_1, nlri_hex="18 0a0001")
    wire.inject(a, msg(UPDATE, body.hex()))
    (outcome,) = outcomes(wire, b)
    assert outcome.outcome is Outcome.TreatAsWithdraw
    assert "UPDATEMessageError/InvalidORIGINAttribute" in outcome.error
    assert outcome.nlri == ((IPV4_UNICAST, (P24,)),)
    assert outcome.update == body
    assert b.rib_in.count(IPV4_UNICAST) == 0 and b.state is State.Established
    counts = b.inbound.counts
    assert (counts.updates[Outcome.TreatAsWithdraw], counts.prefixes[Outcome.TreatAsWithdraw]) == (
        1,
        1,
    )


def test_attribute_discard_is_reported_and_the_route_kept_without_it() -> None:
    wire, a, b = pair()
    attrs = "40 01 01 00" + AS_PATH_A + NEXT_HOP_192_0_2_1 + ATOMIC_AGGREGATE_BAD
    body = update(attrs_hex=attrs, nlri_hex="18 0a0001")
    wire.inject(a, msg(UPDATE, body.hex()))
    (outcome,) = outcomes(wire, b)
    assert outcome.outcome is Outcome.AttributeDiscard
    assert outcome.nlri == ((IPV4_UNICAST, (P24,)),) and outcome.update == body
    path = b.rib_in.routes[IPV4_UNICAST][P24]
    assert [a.type_code for a in path.attributes] == [1, 2, 3]
    assert b.inbound.counts.updates[Outcome.AttributeDiscard] == 1


def test_ebgp_first_as_failure_is_reported_as_treat_as_withdraw() -> None:
    wire, a, b = pair()
    foreign = PathAttributes((OriginAttribute(0), AsPathAttribute.sequence(65099, 65001)))
    wire.feed(a, a.set_routes(table(hosts(3), foreign)))
    (outcome,) = outcomes(wire, b)
    assert outcome.outcome is Outcome.TreatAsWithdraw and "AS 65099" in outcome.error
    assert b.rib_in.count(IPV4_UNICAST) == 0
    assert b.inbound.counts.prefixes[Outcome.TreatAsWithdraw] == 3


def test_a_path_through_our_own_as_is_not_stored_nor_counted_and_replaces_the_old_route() -> None:
    wire, a, b = pair(b_kw={"max_prefixes": 2})
    wire.feed(a, a.set_routes(table(hosts(2), ATTRS)))
    assert b.rib_in.count(IPV4_UNICAST) == 2
    looped = PathAttributes((OriginAttribute(0), AsPathAttribute.sequence(65001, 65002)))
    # The same two prefixes now loop, and ten more that would exceed max-prefixes if stored.
    routes = (
        table(hosts(2), looped)[IPV4_UNICAST] | table(hosts(10, 0x0B000000), looped)[IPV4_UNICAST]
    )
    wire.feed(a, a.set_routes({IPV4_UNICAST: routes}))
    assert len(b.rib_in) == 0 and b.state is State.Established
    (outcome,) = outcomes(wire, b)
    assert outcome.outcome is Outcome.AsLoop and "65002" in outcome.error
    assert sum(len(p) for _, p in outcome.nlri) == 12
    assert b.inbound.counts.prefixes[Outcome.AsLoop] == 12
    assert b.last_reason is None


def test_loop_detection_uses_the_sessions_local_asn_override() -> None:
    # b speaks as AS 65010 on this session (a localAsn override); a expects 65010.
    wire, a, b = pair(a_kw={"peer_asn": 65010}, b_kw={"local_asn": 65010})
    assert b.state is State.Established
    via_65002 = PathAttributes((OriginAttribute(0), AsPathAttribute.sequence(65001, 65002)))
    via_65010 = PathAttributes((OriginAttribute(0), AsPathAttribute.sequence(65001, 65010)))
    wire.feed(a, a.set_routes(table(hosts(3), via_65002)))
    assert b.rib_in.count(IPV4_UNICAST) == 3  # 65002 is not this session's AS
    wire.feed(a, a.set_routes(table(hosts(3), via_65010)))
    assert b.rib_in.count(IPV4_UNICAST) == 0
    assert [o.outcome for o in outcomes(wire, b)] == [Outcome.AsLoop]


def test_nlri_of_a_family_not_negotiated_is_ignored_without_a_reset() -> None:
    # a offers IPv4 and IPv6, b only IPv4: IPv6 is not negotiated; a sends it anyway.
    wire, a, b = pair(
        a_kw={"families": frozenset({IPV4_UNICAST, IPV6_UNICAST})}, b_kw={"max_prefixes": 1}
    )
    assert b.families == {IPV4_UNICAST}
    attrs = V6_REACH + "40 01 01 00" + AS_PATH_A + NEXT_HOP_192_0_2_1
    body = update(attrs_hex=attrs, nlri_hex="18 0a0001")
    wire.inject(a, msg(UPDATE, body.hex()))
    assert b.rib_in.count(IPV6_UNICAST) == 0 and b.rib_in.count(IPV4_UNICAST) == 1
    assert b.state is State.Established
    (outcome,) = outcomes(wire, b)
    assert outcome.outcome is Outcome.FamilyNotNegotiated
    assert outcome.nlri == ((IPV6_UNICAST, (V6,)),) and "ipv6-unicast" in outcome.error
    # A withdrawal of that family is ignored too.
    unreach = "800f 0c 0002 01 40 20010db800000001"
    wire.inject(a, msg(UPDATE, update(attrs_hex=unreach).hex()))
    assert b.inbound.counts.updates[Outcome.FamilyNotNegotiated] == 2
    assert b.inbound.counts.prefixes[Outcome.FamilyNotNegotiated] == 2


def test_a_clean_update_has_no_outcome() -> None:
    wire, a, b = pair()
    wire.feed(a, a.set_routes(table(hosts(1000), ATTRS)))
    assert outcomes(wire, b) == [] and b.rib_in.count(IPV4_UNICAST) == 1000
    assert not b.inbound.counts.updates and not b.inbound.counts.prefixes
