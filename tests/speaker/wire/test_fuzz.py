"""Property tests (h11's fuzz invariant): any bytes give messages or BGPError and nothing else,
the same whether fed whole or one byte at a time; every encoded message decodes to itself."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speaker.bgp.wire.attributes import (
    ATTRIBUTES,
    AggregatorAttribute,
    As4AggregatorAttribute,
    As4PathAttribute,
    AsPathAttribute,
    AtomicAggregateAttribute,
    Attribute,
    ClusterListAttribute,
    CommunitiesAttribute,
    ExtendedCommunitiesAttribute,
    LargeCommunitiesAttribute,
    LocalPrefAttribute,
    MpReachNlriAttribute,
    MpUnreachNlriAttribute,
    MultiExitDiscAttribute,
    NextHopAttribute,
    OriginatorIdAttribute,
    OriginAttribute,
    UnknownAttribute,
)
from speaker.bgp.wire.capabilities import (
    CAPABILITIES,
    AddPathCapability,
    Capability,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    FourOctetASCapability,
    FQDNCapability,
    GracefulRestartCapability,
    LongLivedGracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
    UnknownCapability,
)
from speaker.bgp.wire.context import IPV4_UNICAST, IPV6_UNICAST, DecodeContext
from speaker.bgp.wire.errors import BGPError
from speaker.bgp.wire.framing import Framer
from speaker.bgp.wire.messages import (
    Keepalive,
    Message,
    Notification,
    Open,
    RouteRefresh,
    Update,
    decode_message,
)
from speaker.bgp.wire.nlri import Prefix, prefix_from_int
from tests.speaker.wire.hexmsg import msg

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Outcome = tuple[str, object]


def run(chunks: Iterable[bytes], ctx: DecodeContext) -> list[Outcome]:
    """Feed chunks; collect messages and errors. Only BGPError may escape the codec."""
    framer = Framer(max_size=ctx.max_message)
    out: list[Outcome] = []
    for chunk in chunks:
        framer.feed(chunk)
        while True:
            try:
                item = framer.next_message()
            except BGPError as exc:
                out.append(("framing", (exc.code, exc.subcode, exc.data)))
                return out
            if item is None:
                break
            try:
                out.append(("message", decode_message(item[0], item[1], ctx)))
            except BGPError as exc:
                out.append(("error", (exc.code, exc.subcode, exc.data, exc.action)))
    return out


contexts = st.builds(
    DecodeContext,
    four_octet_as=st.booleans(),
    add_path=st.sets(st.sampled_from([IPV4_UNICAST, IPV6_UNICAST])).map(frozenset),
    extended_message=st.booleans(),
    ebgp=st.booleans(),
)


def _check_whole_vs_bytewise(data: bytes, ctx: DecodeContext) -> None:
    whole = run([data], ctx)
    bytewise = run([data[i : i + 1] for i in range(len(data))], ctx)
    assert whole == bytewise


@FUZZ
@given(st.binary(max_size=200), contexts)
def test_arbitrary_bytes_give_messages_or_bgp_error(data: bytes, ctx: DecodeContext) -> None:
    _check_whole_vs_bytewise(data, ctx)


@FUZZ
@given(st.lists(st.tuples(st.integers(1, 5), st.binary(max_size=120)), max_size=4), contexts)
def test_arbitrary_bodies_behind_valid_headers(
    bodies: list[tuple[int, bytes]], ctx: DecodeContext
) -> None:
    stream = b"".join(msg(t, b.hex()) for t, b in bodies)
    _check_whole_vs_bytewise(stream, ctx)


# Attribute-shaped garbage reaches deep into the UPDATE decoder, not just its length checks.
raw_attribute = st.builds(
    lambda flags, code, value, ext: (
        bytes((flags | (0x10 if ext else 0), code))
        + (len(value).to_bytes(2, "big") if ext else bytes((len(value) & 0xFF,)))
        + value
    ),
    st.sampled_from([0x00, 0x40, 0x80, 0xC0, 0xE0, 0x60]),
    st.sampled_from([*ATTRIBUTES, 0, 99, 255]),
    st.binary(max_size=40),
    st.booleans(),
)


@FUZZ
@given(
    st.binary(max_size=20),
    st.lists(raw_attribute, max_size=6),
    st.binary(max_size=30),
    contexts,
)
def test_attribute_shaped_updates_give_an_update_or_bgp_error(
    withdrawn: bytes, attrs: list[bytes], nlri: bytes, ctx: DecodeContext
) -> None:
    blob = b"".join(attrs)
    body = len(withdrawn).to_bytes(2, "big") + withdrawn + len(blob).to_bytes(2, "big") + blob
    _check_whole_vs_bytewise(msg(2, (body + nlri).hex()), ctx)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20)), max_size=6))
def test_capability_shaped_opens_give_an_open_or_bgp_error(caps: list[tuple[int, bytes]]) -> None:
    params = b"".join(bytes((2, len(v) + 2, code, len(v))) + v for code, v in caps)
    body = bytes.fromhex("04 fc00 005a c000020b") + bytes((len(params) & 0xFF,)) + params
    _check_whole_vs_bytewise(msg(1, body.hex()), DecodeContext())


# --- round trips ---------------------------------------------------------------------------


def prefixes(bits: int, max_size: int = 8) -> st.SearchStrategy[tuple[Prefix, ...]]:
    one = st.builds(
        lambda length, value: prefix_from_int(value, length, bits),
        st.integers(0, bits),
        st.integers(0, (1 << bits) - 1),
    )
    return st.lists(one, max_size=max_size).map(tuple)


u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
asn32 = st.integers(1, 0xFFFFFFFF)  # AS 0 is malformed (RFC 7607)
ipv4_host = st.builds(
    lambda a, b: bytes((a,)) + b, st.integers(1, 223), st.binary(min_size=3, max_size=3)
)


def _mp_reach(afi: int, ctx: DecodeContext) -> st.SearchStrategy[MpReachNlriAttribute]:
    bits = 32 if afi == 1 else 128
    nh_len = st.sampled_from([4, 16, 32] if afi == 1 else [16, 32])
    return st.builds(
        lambda nh, nlri, ids: MpReachNlriAttribute(
            afi=afi,
            next_hop=nh,
            nlri=nlri,
            path_ids=tuple(ids[: len(nlri)]) if (afi, 1) in ctx.add_path else (),
        ),
        nh_len.flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        prefixes(bits),
        st.lists(u32, min_size=8, max_size=8),
    )


def optional_attributes(ctx: DecodeContext) -> st.SearchStrategy[list[Attribute]]:
    asn = st.integers(1, 0xFFFFFFFF if ctx.four_octet_as else 0xFFFF)
    choices: list[st.SearchStrategy[Attribute]] = [
        st.builds(MultiExitDiscAttribute, u32),
        st.builds(LocalPrefAttribute, u32),
        st.just(AtomicAggregateAttribute()),
        st.builds(AggregatorAttribute, asn, st.binary(min_size=4, max_size=4)),
        st.builds(CommunitiesAttribute, st.lists(u32, min_size=1, max_size=5).map(tuple)),
        st.builds(OriginatorIdAttribute, u32),
        st.builds(ClusterListAttribute, st.lists(u32, min_size=1, max_size=5).map(tuple)),
        st.builds(
            ExtendedCommunitiesAttribute,
            st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=3).map(tuple),
        ),
        st.builds(
            As4PathAttribute,
            st.lists(
                st.tuples(st.integers(1, 2), st.lists(asn32, min_size=1, max_size=4).map(tuple)),
                max_size=2,
            ).map(tuple),
        ),
        st.builds(As4AggregatorAttribute, asn32, st.binary(min_size=4, max_size=4)),
        st.builds(
            LargeCommunitiesAttribute,
            st.lists(st.tuples(u32, u32, u32), min_size=1, max_size=3).map(tuple),
        ),
        st.builds(
            UnknownAttribute,
            type_code=st.integers(19, 31),
            flags=st.sampled_from([0x80, 0xC0, 0xE0, 0xA0]),
            value=st.binary(max_size=300),
        ),
        _mp_reach(1, ctx),
        _mp_reach(2, ctx),
        st.builds(
            lambda w: MpUnreachNlriAttribute(
                afi=2,
                withdrawn=w,
                path_ids=tuple(range(len(w))) if IPV6_UNICAST in ctx.add_path else (),
            ),
            prefixes(128),
        ),
    ]
    return st.lists(st.one_of(choices), max_size=6, unique_by=lambda a: a.type_code)


@st.composite
def updates(draw: st.DrawFn, ctx: DecodeContext) -> Update:
    mandatory: list[Attribute] = [
        OriginAttribute(draw(st.integers(0, 2))),
        AsPathAttribute(
            tuple(
                (t, tuple(a if ctx.four_octet_as else a % 0xFFFF + 1 for a in asns))
                for t, asns in draw(
                    st.lists(
                        st.tuples(st.integers(1, 4), st.lists(asn32, min_size=1, max_size=5)),
                        max_size=3,
                    )
                )
            )
        ),
        NextHopAttribute(draw(ipv4_host)),
    ]
    attrs = draw(st.permutations(mandatory + draw(optional_attributes(ctx))))
    withdrawn = draw(prefixes(32))
    nlri = draw(prefixes(32))
    v4_add_path = IPV4_UNICAST in ctx.add_path
    ids = draw(st.lists(u32, min_size=16, max_size=16))
    return Update(
        withdrawn=withdrawn,
        attributes=tuple(attrs),
        nlri=nlri,
        withdrawn_path_ids=tuple(ids[: len(withdrawn)]) if v4_add_path else (),
        nlri_path_ids=tuple(ids[8 : 8 + len(nlri)]) if v4_add_path else (),
    )


@ROUND
@given(contexts.flatmap(lambda c: st.tuples(st.just(c), updates(c))))
def test_every_encoded_update_decodes_to_an_equal_value(case: tuple[DecodeContext, Update]) -> None:
    ctx, update = case
    ctx = DecodeContext(
        four_octet_as=ctx.four_octet_as, add_path=ctx.add_path, extended_message=True
    )
    wire = update.encode(ctx)
    assert run([wire], ctx) == [("message", update)]


def capabilities() -> st.SearchStrategy[Capability]:
    family3 = st.tuples(u16, u8, u8)
    return st.one_of(
        st.builds(MultiprotocolCapability, u16, u8),
        st.just(RouteRefreshCapability()),
        st.builds(
            ExtendedNextHopCapability,
            st.lists(st.tuples(u16, u16, u16), min_size=1, max_size=4).map(tuple),
        ),
        st.just(ExtendedMessageCapability()),
        st.builds(
            GracefulRestartCapability,
            flags=st.integers(0, 15),
            restart_time=st.integers(0, 4095),
            families=st.lists(family3, max_size=4).map(tuple),
        ),
        st.builds(FourOctetASCapability, asn32),
        st.builds(AddPathCapability, st.lists(family3, min_size=1, max_size=4).map(tuple)),
        st.just(EnhancedRouteRefreshCapability()),
        st.builds(
            LongLivedGracefulRestartCapability,
            st.lists(st.tuples(u16, u8, u8, st.integers(0, 2**24 - 1)), max_size=3).map(tuple),
        ),
        st.builds(FQDNCapability, st.text(max_size=20), st.text(max_size=20)).filter(
            lambda c: len(c.encode_value()) < 200
        ),
        st.builds(
            UnknownCapability,
            st.integers(0, 255).filter(lambda c: c not in CAPABILITIES),
            st.binary(max_size=30),
        ),
    )


messages = st.one_of(
    st.builds(
        Open,
        my_as=st.integers(1, 0xFFFF),
        hold_time=st.one_of(st.just(0), st.integers(3, 0xFFFF)),
        bgp_id=st.integers(1, 0xFFFFFFFF),
        capabilities=st.lists(capabilities(), max_size=60).map(tuple),
    ).filter(lambda o: len(o.encode_body(DecodeContext())) < 4000),
    st.builds(Notification, code=u8, subcode=u8, data=st.binary(max_size=100)),
    st.just(Keepalive()),
    st.builds(RouteRefresh, afi=u16, safi=u8, subtype=u8),
)


@ROUND
@given(st.lists(messages, max_size=4))
def test_every_encoded_message_decodes_to_an_equal_value(sent: list[Message]) -> None:
    ctx = DecodeContext()
    wire = b"".join(m.encode(ctx) for m in sent)
    expected = [("message", m) for m in sent]
    assert run([wire], ctx) == expected
    assert run([wire[i : i + 7] for i in range(0, len(wire), 7)], ctx) == expected
