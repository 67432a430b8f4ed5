"""Import policy: each match kind, first match wins, default reject, actions, the per-path cache."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speaker.api.communities import community_value, large_community_value
from speaker.bgp.rib.policy import NO_MATCH, Action, ImportPolicy, ImportRule, PrefixMatch
from speaker.bgp.rib.received_attributes import communities, large_communities, local_pref
from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6
from speaker.bgp.wire.nlri import prefix_from_int
from tests.speaker.rib.paths import path, pfx

ACCEPT, REJECT = Action.ACCEPT, Action.REJECT


def pm(text: str, ge: int | None = None, le: int | None = None) -> PrefixMatch:
    net = ipaddress.ip_network(text)
    return PrefixMatch(
        afi=AFI_IPV4 if net.version == 4 else AFI_IPV6,
        network=int(net.network_address),
        length=net.prefixlen,
        ge=net.prefixlen if ge is None else ge,
        le=(net.prefixlen if ge is None else net.max_prefixlen) if le is None else le,
    )


def afi(text: str) -> int:
    return AFI_IPV6 if ":" in text else AFI_IPV4


def verdict_of(policy: ImportPolicy, prefix: str, received: object = None) -> int | None:
    """The index of the deciding rule if accepted, -1 if rejected by a rule, None if no match."""
    p = path() if received is None else received
    v = policy.evaluate(afi(prefix), pfx(prefix), p)  # type: ignore[arg-type]
    if v.rule is None:
        assert not v.accepted
        return None
    return v.rule if v.accepted else -1


def test_no_rules_rejects_everything() -> None:
    policy = ImportPolicy([])
    assert policy.evaluate(AFI_IPV4, pfx("0.0.0.0/0"), path()) is NO_MATCH
    assert not NO_MATCH.accepted


def test_no_matching_rule_rejects() -> None:
    policy = ImportPolicy([ImportRule(action=ACCEPT, prefix=pm("10.0.0.0/8", le=24))])
    assert verdict_of(policy, "192.0.2.0/24") is None
    assert verdict_of(policy, "10.1.0.0/16") == 0


@pytest.mark.parametrize(
    ("rule", "prefix", "matches"),
    [
        # exact length only without ge/le
        (pm("10.0.0.0/8"), "10.0.0.0/8", True),
        (pm("10.0.0.0/8"), "10.1.0.0/16", False),
        (pm("10.0.0.0/8"), "11.0.0.0/8", False),
        # ge/le range inside the covering prefix
        (pm("10.0.0.0/8", ge=16, le=24), "10.1.0.0/16", True),
        (pm("10.0.0.0/8", ge=16, le=24), "10.1.2.0/24", True),
        (pm("10.0.0.0/8", ge=16, le=24), "10.1.2.0/25", False),
        (pm("10.0.0.0/8", ge=16, le=24), "10.0.0.0/8", False),
        (pm("10.0.0.0/8", ge=16, le=24), "10.0.0.0/15", False),
        (pm("10.0.0.0/8", ge=16, le=24), "11.1.0.0/16", False),
        # le only: from the prefix's own length up to le
        (pm("10.0.0.0/8", le=16), "10.0.0.0/8", True),
        (pm("10.0.0.0/8", le=16), "10.255.0.0/16", True),
        (pm("10.0.0.0/8", le=16), "10.255.255.0/24", False),
        # ge only: up to the family's maximum
        (pm("10.0.0.0/8", ge=32), "10.9.9.9/32", True),
        (pm("10.0.0.0/8", ge=32), "10.9.9.8/31", False),
        # the default route, and "anything" (/0 le 32)
        (pm("0.0.0.0/0"), "0.0.0.0/0", True),
        (pm("0.0.0.0/0"), "10.0.0.0/8", False),
        (pm("0.0.0.0/0", le=32), "203.0.113.7/32", True),
        # lengths not on an octet boundary
        (pm("10.128.0.0/9", le=32), "10.128.0.0/9", True),
        (pm("10.128.0.0/9", le=32), "10.200.1.0/24", True),
        (pm("10.128.0.0/9", le=32), "10.127.255.0/24", False),
        (pm("192.0.2.128/25", le=32), "192.0.2.129/32", True),
        (pm("192.0.2.128/25", le=32), "192.0.2.127/32", False),
        # IPv6, and a rule of one family never matches the other
        (pm("2001:db8::/32", le=64), "2001:db8:1::/48", True),
        (pm("2001:db8::/32", le=64), "2001:db9::/32", False),
        (pm("2001:db8::/32", le=64), "2001:db8::/65", False),
        (pm("::/0"), "::/0", True),
        (pm("::/0"), "0.0.0.0/0", False),
        (pm("0.0.0.0/0", le=32), "::/0", False),
    ],
)
def test_prefix_match(rule: PrefixMatch, prefix: str, matches: bool) -> None:
    policy = ImportPolicy([ImportRule(action=ACCEPT, prefix=rule)])
    assert (verdict_of(policy, prefix) == 0) is matches
    assert rule.matches(afi(prefix), pfx(prefix)) is matches


@given(
    net=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)),
    route=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)),
    extra=st.tuples(st.integers(0, 32), st.integers(0, 32)),
)
def test_prefix_match_agrees_with_ipaddress(
    net: tuple[int, int], route: tuple[int, int], extra: tuple[int, int]
) -> None:
    (net_value, net_len), (route_value, route_len), (ge_extra, le_extra) = net, route, extra
    network = ipaddress.IPv4Network((net_value, net_len), strict=False)
    routed = ipaddress.IPv4Network((route_value, route_len), strict=False)
    ge = min(32, net_len + ge_extra)
    le = min(32, ge + le_extra)
    rule = PrefixMatch(
        afi=AFI_IPV4, network=int(network.network_address), length=net_len, ge=ge, le=le
    )
    policy = ImportPolicy([ImportRule(action=ACCEPT, prefix=rule)])
    wire = prefix_from_int(int(routed.network_address), route_len, 32)
    expected = routed.subnet_of(network) and ge <= route_len <= le
    assert policy.evaluate(AFI_IPV4, wire, path()).accepted is expected


@pytest.mark.parametrize(
    ("wanted", "carried", "matches"),
    [
        (("65000:10",), ("65000:10",), True),
        (("65000:10",), ("65000:11", "65000:10"), True),
        (("65000:10",), ("65000:11",), False),
        (("65000:10",), (), False),
        (("65000:10", "65000:20"), ("65000:20", "65000:10", "1:1"), True),
        (("65000:10", "65000:20"), ("65000:20",), False),  # every listed one must be there
        (("no-export",), ("no-export",), True),
    ],
)
def test_communities_match(
    wanted: tuple[str, ...], carried: tuple[str, ...], matches: bool
) -> None:
    rule = ImportRule(action=ACCEPT, communities=frozenset(community_value(c) for c in wanted))
    received = path(communities=carried)
    assert (verdict_of(ImportPolicy([rule]), "10.0.0.0/8", received) == 0) is matches


@pytest.mark.parametrize(
    ("wanted", "carried", "matches"),
    [
        (("65000:1:2",), ("65000:1:2",), True),
        (("65000:1:2",), ("65000:1:3",), False),
        (("65000:1:2", "4200000000:7:7"), ("4200000000:7:7", "65000:1:2"), True),
        (("65000:1:2", "4200000000:7:7"), ("65000:1:2",), False),
        (("65000:1:2",), (), False),
    ],
)
def test_large_communities_match(
    wanted: tuple[str, ...], carried: tuple[str, ...], matches: bool
) -> None:
    rule = ImportRule(
        action=ACCEPT,
        large_communities=frozenset(large_community_value(c) for c in wanted),
    )
    received = path(large=carried)
    assert (verdict_of(ImportPolicy([rule]), "10.0.0.0/8", received) == 0) is matches


@pytest.mark.parametrize(
    ("contains", "as_path", "as_set", "matches"),
    [
        ((65002,), (65001, 65002, 65003), (), True),
        ((65002,), (65001, 65003), (), False),
        ((65002,), (65001,), (65002, 65009), True),  # inside an AS_SET counts
        ((65001, 65003), (65001, 65002, 65003), (), True),
        ((65001, 65004), (65001, 65002, 65003), (), False),  # every listed ASN must appear
        ((65001,), (), (), False),
    ],
)
def test_as_path_contains(
    contains: tuple[int, ...], as_path: tuple[int, ...], as_set: tuple[int, ...], matches: bool
) -> None:
    rule = ImportRule(action=ACCEPT, as_path_contains=frozenset(contains))
    received = path(as_path=as_path, as_set=as_set)
    assert (verdict_of(ImportPolicy([rule]), "10.0.0.0/8", received) == 0) is matches


@pytest.mark.parametrize(
    ("origin", "as_path", "as_set", "matches"),
    [
        (65003, (65001, 65002, 65003), (), True),
        (65001, (65001, 65002, 65003), (), False),  # the neighbour is not the origin
        (65001, (65001,), (), True),
        (65001, (), (), False),  # our own AS's route: no origin AS
        (65002, (65001, 65002), (65002,), False),  # ends in an AS_SET: an aggregate
    ],
)
def test_origin_asn(
    origin: int, as_path: tuple[int, ...], as_set: tuple[int, ...], matches: bool
) -> None:
    rule = ImportRule(action=ACCEPT, origin_asn=origin)
    received = path(as_path=as_path, as_set=as_set)
    assert (verdict_of(ImportPolicy([rule]), "10.0.0.0/8", received) == 0) is matches


def test_all_conditions_of_a_rule_must_hold() -> None:
    rule = ImportRule(
        action=ACCEPT,
        prefix=pm("10.0.0.0/8", le=24),
        communities=frozenset({community_value("65000:10")}),
        origin_asn=65009,
    )
    policy = ImportPolicy([rule])
    good = path(as_path=(65001, 65009), communities=("65000:10",))
    assert verdict_of(policy, "10.1.0.0/16", good) == 0
    assert verdict_of(policy, "11.1.0.0/16", good) is None
    assert verdict_of(policy, "10.1.0.0/16", path(as_path=(65001, 65009))) is None
    assert verdict_of(policy, "10.1.0.0/16", path(communities=("65000:10",))) is None


def test_first_match_wins() -> None:
    policy = ImportPolicy(
        [
            ImportRule(action=REJECT, prefix=pm("10.66.0.0/16", le=32)),
            ImportRule(action=ACCEPT, prefix=pm("10.0.0.0/8", le=32), set_local_preference=50),
            ImportRule(action=ACCEPT, prefix=pm("10.66.1.0/24"), set_local_preference=999),
            ImportRule(action=ACCEPT),
        ]
    )
    assert verdict_of(policy, "10.66.1.0/24") == -1  # rule 0 rejects before rule 2 could
    v = policy.evaluate(AFI_IPV4, pfx("10.1.0.0/16"), path())
    assert v.rule == 1 and v.path is not None and local_pref(v.path.attributes) == 50
    assert verdict_of(policy, "192.0.2.0/24") == 3
    assert verdict_of(policy, "2001:db8::/32") == 3  # a rule without a prefix: any family


def test_reject_rule_stops_a_later_accept_for_matching_communities_only() -> None:
    policy = ImportPolicy(
        [
            ImportRule(action=REJECT, communities=frozenset({community_value("65000:666")})),
            ImportRule(action=ACCEPT),
        ]
    )
    assert verdict_of(policy, "10.0.0.0/8", path(communities=("65000:666",))) == -1
    assert verdict_of(policy, "10.0.0.0/8", path(communities=("65000:1",))) == 1


def test_actions_set_local_pref_and_add_communities() -> None:
    rule = ImportRule(
        action=ACCEPT,
        set_local_preference=200,
        add_communities=(community_value("65000:1"), community_value("65000:2")),
        add_large_communities=(large_community_value("65000:0:1"),),
    )
    received = path(local_pref=70, communities=("65000:2", "1:1"))
    v = ImportPolicy([rule]).evaluate(AFI_IPV4, pfx("10.0.0.0/8"), received)
    assert v.path is not None
    attrs = v.path.attributes
    assert local_pref(attrs) == 200
    assert communities(attrs) == tuple(community_value(c) for c in ("65000:2", "1:1", "65000:1"))
    assert large_communities(attrs) == (large_community_value("65000:0:1"),)
    assert [a.type_code for a in attrs] == sorted(a.type_code for a in attrs)
    assert sum(1 for a in attrs if a.type_code == 5) == 1
    assert v.path.next_hop == received.next_hop
    # the received path itself is unchanged
    assert local_pref(received.attributes) == 70


def test_accept_without_actions_imports_the_received_path_itself() -> None:
    received = path()
    v = ImportPolicy([ImportRule(action=ACCEPT)]).evaluate(AFI_IPV4, pfx("10.0.0.0/8"), received)
    assert v.path is received


def test_one_verdict_object_per_path_and_rule() -> None:
    """Every prefix of one UPDATE shares one path: they must share the imported copy too (the
    Loc-RIB interns candidates by it)."""
    policy = ImportPolicy([ImportRule(action=ACCEPT, set_local_preference=300)])
    received = path()
    a = policy.evaluate(AFI_IPV4, pfx("10.0.0.0/24"), received)
    b = policy.evaluate(AFI_IPV4, pfx("10.0.1.0/24"), received)
    assert a is b and a.path is b.path
    other = policy.evaluate(AFI_IPV4, pfx("10.0.1.0/24"), path())
    assert other is not a and other.path is not None
    assert local_pref(other.path.attributes) == 300


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="cannot set"):
        ImportRule(action=REJECT, set_local_preference=10)
    with pytest.raises(ValueError, match="ge"):
        PrefixMatch(afi=AFI_IPV4, network=0x0A000000, length=8, ge=7, le=8)
    with pytest.raises(ValueError, match="ge"):
        PrefixMatch(afi=AFI_IPV4, network=0x0A000000, length=8, ge=8, le=33)
    with pytest.raises(ValueError, match="host bits"):
        PrefixMatch(afi=AFI_IPV4, network=0x0A000001, length=8, ge=8, le=8)


# --- exact-prefix rules are looked up by prefix: the same first match as a scan -------------

_NETS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.3.0/24", "10.2.0.0/16", "0.0.0.0/0"]
_COMM = "65000:10"


@st.composite
def _rules(draw: st.DrawFn) -> list[ImportRule]:
    out = []
    for _ in range(draw(st.integers(0, 8))):
        net = draw(st.sampled_from([*_NETS, None]))
        kind = draw(st.sampled_from(["exact", "range"]))
        prefix = None
        if net is not None:
            length = ipaddress.ip_network(net).prefixlen
            prefix = pm(net) if kind == "exact" else pm(net, ge=length, le=32)
        action = draw(st.sampled_from([ACCEPT, REJECT]))
        conditional = draw(st.booleans())
        out.append(ImportRule(
            action=action, prefix=prefix,
            communities=frozenset({community_value(_COMM)}) if conditional else frozenset(),
            set_local_preference=draw(st.sampled_from([None, 200])) if action is ACCEPT else None,
        ))  # fmt: skip
    return out


def _reference(rules: list[ImportRule], prefix: str, carried: bool) -> int | None:
    for index, rule in enumerate(rules):
        if rule.prefix is not None and not rule.prefix.matches(afi(prefix), pfx(prefix)):
            continue
        if rule.communities and not carried:
            continue
        return index if rule.action is ACCEPT else -1
    return None


@given(
    rules=_rules(),
    prefix=st.sampled_from([*_NETS[:-1], "10.1.2.128/25", "192.0.2.0/24"]),
    carried=st.booleans(),
)
def test_exact_rules_by_prefix_agree_with_first_match_in_order(
    rules: list[ImportRule], prefix: str, carried: bool
) -> None:
    policy = ImportPolicy(rules)
    received = path(communities=(_COMM,) if carried else ())
    assert verdict_of(policy, prefix, received) == _reference(rules, prefix, carried)
    # and the verdict is made once per path and rule
    again = policy.evaluate(afi(prefix), pfx(prefix), received)
    assert again is policy.evaluate(afi(prefix), pfx(prefix), received)


def test_many_exact_rules_single_prefix_paths() -> None:
    """A node's peering with other nodes: one rule per pod CIDR, one path per prefix."""
    rules = [ImportRule(action=ACCEPT, prefix=pm(f"10.{i // 256}.{i % 256}.0/24"))
             for i in range(300)]  # fmt: skip
    policy = ImportPolicy(rules)
    for i in range(300):
        received = path(next_hop=f"192.0.2.{i % 250 + 1}")
        v = policy.evaluate(AFI_IPV4, pfx(f"10.{i // 256}.{i % 256}.0/24"), received)
        assert v.rule == i and v.path is received
    assert policy.evaluate(AFI_IPV4, pfx("10.0.0.0/23"), path()) is NO_MATCH
