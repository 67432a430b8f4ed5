"""The desired-state schema `kubgp.io/speaker/v1`: every rule rejects with its key path, and the
canonical document round-trips."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speaker.api.schema import (
    Advertisement,
    Bfd,
    DesiredState,
    GracefulRestart,
    Listen,
    Peer,
    SchemaError,
    parse_desired_state,
)

FULL: dict[str, Any] = {
    "apiVersion": "kubgp.io/speaker/v1",
    "routerId": "192.0.2.11",
    "asn": 64512,
    "listen": {"address": "127.0.0.11", "port": 179},
    "peers": [
        {
            "name": "tor-a",
            "address": "127.0.0.2",
            "port": 179,
            "asn": 65000,
            "localAsn": 64512,
            "sourceAddress": "127.0.0.11",
            "passive": False,
            "holdTime": 90,
            "keepaliveTime": 30,
            "connectRetryTime": 5,
            "password": "s3cret",
            "ebgpMultihop": 1,
            "ttlSecurity": False,
            "gracefulRestart": {"enabled": True, "restartTime": 120},
            "families": ["ipv4-unicast", "ipv6-unicast"],
            "maxPrefixes": 0,
        }
    ],
    "advertisements": [
        {
            "prefix": "10.244.1.0/24",
            "peers": ["tor-a"],
            "nextHop": "self",
            "communities": ["64512:100", "no-export"],
            "largeCommunities": ["64512:1:2"],
            "localPreference": 100,
            "med": 0,
            "asPathPrepend": 0,
        }
    ],
}


def doc_with(path: str, value: object) -> dict[str, Any]:
    """FULL with one key set (value `...` deletes it). Path like `peers.0.holdTime`."""
    doc = copy.deepcopy(FULL)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return doc


def test_design_example_parses_to_the_values_it_says() -> None:
    state = parse_desired_state(FULL)
    assert state == DesiredState(
        router_id="192.0.2.11",
        asn=64512,
        listen=Listen(address="127.0.0.11", port=179),
        peers=(
            Peer(
                name="tor-a",
                address="127.0.0.2",
                asn=65000,
                local_asn=64512,
                source_address="127.0.0.11",
                password="s3cret",
                graceful_restart=GracefulRestart(enabled=True, restart_time=120),
                families=("ipv4-unicast", "ipv6-unicast"),
            ),
        ),
        advertisements=(
            Advertisement(
                prefix="10.244.1.0/24",
                peers=("tor-a",),
                communities=("64512:100", "no-export"),
                large_communities=("64512:1:2",),
                local_preference=100,
                med=0,
            ),
        ),
    )


def test_minimal_document_gets_the_documented_defaults() -> None:
    state = parse_desired_state(
        {
            "routerId": "192.0.2.1",
            "asn": 1,
            "peers": [
                {"name": "a", "address": "192.0.2.2", "asn": 2},
                {"name": "b", "address": "2001:db8::2", "asn": 2, "holdTime": 0},
                {"name": "c", "address": "192.0.2.3", "asn": 2, "holdTime": 9},
            ],
            "advertisements": [{"prefix": "10.0.0.0/8"}],
        }
    )
    a, b, c = state.peers
    assert state.listen is None
    assert (a.port, a.hold_time, a.keepalive_time, a.connect_retry_time) == (179, 90, 30, 5)
    assert (a.ebgp_multihop, a.passive, a.ttl_security, a.max_prefixes) == (1, False, False, 0)
    assert a.graceful_restart == GracefulRestart(enabled=False, restart_time=120)
    assert a.families == ("ipv4-unicast",)
    assert a.password is None and a.local_asn is None and a.source_address is None
    assert b.families == ("ipv6-unicast",)
    assert (b.hold_time, b.keepalive_time) == (0, 0)
    assert c.keepalive_time == 3
    (adv,) = state.advertisements
    assert adv == Advertisement(prefix="10.0.0.0/8")
    assert adv.peers is None and adv.next_hop == "self"


def test_peers_and_advertisements_are_empty_when_absent() -> None:
    state = parse_desired_state({"routerId": "192.0.2.1", "asn": 64512})
    assert state.peers == () and state.advertisements == ()


REJECTED: list[tuple[str, object, str]] = [
    ("apiVersion", "kubgp.io/speaker/v2", "apiVersion: must be"),
    ("routerId", ..., "routerId: required"),
    ("routerId", "2001:db8::1", "routerId: must be an IPv4 dotted quad"),
    ("routerId", "1.2.3", "routerId: must be an IPv4 dotted quad"),
    ("asn", ..., "asn: required"),
    ("asn", 0, "asn: must be between 1 and 4294967295"),
    ("asn", 4294967296, "asn: must be between 1 and 4294967295"),
    ("asn", "64512", "asn: must be an integer"),
    ("asn", True, "asn: must be an integer"),
    ("bogus", 1, "bogus: unknown key"),
    ("listen", "0.0.0.0", "listen: must be a mapping"),
    ("listen.address", "nope", "listen.address: must be an IPv4 or IPv6 address"),
    ("listen.port", 0, "listen.port: must be between 1 and 65535"),
    ("listen.extra", 1, "listen.extra: unknown key"),
    ("peers", {"name": "x"}, "peers: must be a list"),
    ("peers.0.name", ..., "peers[0].name: required"),
    ("peers.0.name", "", "peers[0].name: must not be empty"),
    ("peers.0.address", "300.1.1.1", "peers[0].address: must be an IPv4 or IPv6 address"),
    ("peers.0.port", 65536, "peers[0].port: must be between 1 and 65535"),
    ("peers.0.asn", 0, "peers[0].asn: must be between 1 and 4294967295"),
    ("peers.0.localAsn", 4294967296, "peers[0].localAsn: must be between 1 and 4294967295"),
    ("peers.0.sourceAddress", "x", "peers[0].sourceAddress: must be an IPv4 or IPv6 address"),
    ("peers.0.passive", "no", "peers[0].passive: must be true or false"),
    ("peers.0.holdTime", 2, "peers[0].holdTime: must be 0 or between 3 and 65535"),
    ("peers.0.holdTime", 65536, "peers[0].holdTime: must be between 0 and 65535"),
    ("peers.0.keepaliveTime", 90, "peers[0].keepaliveTime: must be between 1 and holdTime-1"),
    ("peers.0.keepaliveTime", 0, "peers[0].keepaliveTime: must be between 1 and holdTime-1"),
    ("peers.0.connectRetryTime", 0, "peers[0].connectRetryTime: must be between 1 and 65535"),
    ("peers.0.password", 5, "peers[0].password: must be a string"),
    ("peers.0.password", "x" * 81, "peers[0].password: must be at most 80 bytes"),
    ("peers.0.ebgpMultihop", 256, "peers[0].ebgpMultihop: must be between 1 and 255"),
    ("peers.0.ttlSecurity", 1, "peers[0].ttlSecurity: must be true or false"),
    ("peers.0.gracefulRestart.restartTime", 4096, "peers[0].gracefulRestart.restartTime:"),
    ("peers.0.gracefulRestart.on", True, "peers[0].gracefulRestart.on: unknown key"),
    ("peers.0.families", ["ipv4-flowspec"], "peers[0].families[0]: must be one of"),
    ("peers.0.families", [], "peers[0].families: must name at least one family"),
    ("peers.0.families", ["ipv4-unicast"] * 2, "peers[0].families[1]: duplicate"),
    ("peers.0.maxPrefixes", -1, "peers[0].maxPrefixes: must be between 0 and 4294967295"),
    ("peers.0.shutdown", True, "peers[0].shutdown: unknown key"),
    ("peers.0.bfd", "fast", "peers[0].bfd: must be a mapping"),
    ("peers.0.bfd", {"minTx": 49}, "peers[0].bfd.minTx: must be between 50 and 60000"),
    ("peers.0.bfd", {"minRx": 60001}, "peers[0].bfd.minRx: must be between 50 and 60000"),
    ("peers.0.bfd", {"multiplier": 1}, "peers[0].bfd.multiplier: must be between 2 and 255"),
    ("peers.0.bfd", {"minTx": "100"}, "peers[0].bfd.minTx: must be an integer"),
    ("peers.0.bfd", {"echo": True}, "peers[0].bfd.echo: unknown key"),
    ("advertisements.0.prefix", ..., "advertisements[0].prefix: required"),
    ("advertisements.0.prefix", "10.244.1.1/24", "advertisements[0].prefix: '10.244.1.1/24' has"),
    ("advertisements.0.prefix", "10.244.1.0", "advertisements[0].prefix: must be a CIDR"),
    ("advertisements.0.prefix", "10.244.1.0/33", "advertisements[0].prefix: must be a CIDR"),
    ("advertisements.0.peers", ["tor-b"], "advertisements[0].peers[0]: no peer named 'tor-b'"),
    ("advertisements.0.peers", "tor-a", "advertisements[0].peers: must be a list"),
    ("advertisements.0.nextHop", "2001:db8::1", "advertisements[0].nextHop: must be 'self' or"),
    ("advertisements.0.nextHop", "peer", "advertisements[0].nextHop: must be an IPv4 or IPv6"),
    ("advertisements.0.communities", ["65536:1"], "advertisements[0].communities[0]: must be"),
    ("advertisements.0.communities", ["no-such"], "advertisements[0].communities[0]: must be"),
    ("advertisements.0.communities", ["1:2:3"], "advertisements[0].communities[0]: must be"),
    ("advertisements.0.largeCommunities", ["1:2"], "advertisements[0].largeCommunities[0]"),
    ("advertisements.0.largeCommunities", ["1:2:4294967296"], "advertisements[0].largeCommunit"),
    ("advertisements.0.localPreference", -1, "advertisements[0].localPreference: must be"),
    ("advertisements.0.med", 4294967296, "advertisements[0].med: must be between 0 and"),
    ("advertisements.0.asPathPrepend", 33, "advertisements[0].asPathPrepend: must be between"),
    ("advertisements.0.aggregate", True, "advertisements[0].aggregate: unknown key"),
]


@pytest.mark.parametrize(("path", "value", "message"), REJECTED, ids=[r[0] for r in REJECTED])
def test_invalid_documents_are_rejected_with_their_key_path(
    path: str, value: object, message: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_desired_state(doc_with(path, value))
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_unmodified_full_document_is_valid() -> None:
    # The REJECTED table is only meaningful if each row's base document is itself valid.
    parse_desired_state(copy.deepcopy(FULL))


def test_duplicate_peer_names_are_rejected() -> None:
    doc = copy.deepcopy(FULL)
    doc["peers"].append({"name": "tor-a", "address": "127.0.0.3", "asn": 65000})
    with pytest.raises(SchemaError, match=r"^peers\[1\]\.name: duplicate peer name 'tor-a'"):
        parse_desired_state(doc)


def test_duplicate_prefixes_are_rejected_after_canonicalisation() -> None:
    doc = copy.deepcopy(FULL)
    doc["advertisements"] = [{"prefix": "2001:db8::/32"}, {"prefix": "2001:DB8:0::/32"}]
    with pytest.raises(SchemaError, match=r"^advertisements\[1\]\.prefix: duplicate prefix"):
        parse_desired_state(doc)


def test_keepalive_must_be_zero_when_hold_is_zero() -> None:
    doc = doc_with("peers.0.holdTime", 0)
    with pytest.raises(SchemaError, match=r"^peers\[0\]\.keepaliveTime: must be 0 when holdTime"):
        parse_desired_state(doc)
    doc["peers"][0]["keepaliveTime"] = 0
    assert parse_desired_state(doc).peers[0].hold_time == 0


@pytest.mark.parametrize(
    "community",
    [
        "no-export",
        "no-advertise",
        "no-export-subconfed",
        "no-peer",
        "blackhole",
        "graceful-shutdown",
        "llgr-stale",
        "no-llgr",
        "accept-own",
        "0:0",
        "65535:65535",
    ],
)
def test_accepted_communities(community: str) -> None:
    doc = doc_with("advertisements.0.communities", [community])
    assert parse_desired_state(doc).advertisements[0].communities == (community,)


def test_ipv6_next_hop_for_ipv6_prefix_and_canonical_spelling() -> None:
    doc = copy.deepcopy(FULL)
    doc["advertisements"] = [{"prefix": "2001:DB8:1::/48", "nextHop": "2001:DB8::0001"}]
    (adv,) = parse_desired_state(doc).advertisements
    assert (adv.prefix, adv.next_hop) == ("2001:db8:1::/48", "2001:db8::1")


def test_to_dict_is_canonical_and_round_trips() -> None:
    doc = copy.deepcopy(FULL)
    doc["peers"].insert(0, {"name": "z-tor", "address": "2001:db8::2", "asn": 65001})
    doc["advertisements"] += [
        {"prefix": "2001:db8::/64"},
        {"prefix": "10.2.0.0/16"},
        {"prefix": "9.0.0.0/8"},
    ]
    state = parse_desired_state(doc)
    out = state.to_dict()
    assert [p["name"] for p in out["peers"]] == ["tor-a", "z-tor"]  # type: ignore[attr-defined]
    assert [a["prefix"] for a in out["advertisements"]] == [  # type: ignore[attr-defined]
        "9.0.0.0/8",
        "10.2.0.0/16",
        "10.244.1.0/24",
        "2001:db8::/64",
    ]
    assert parse_desired_state(json.loads(json.dumps(out))) == state
    assert out == parse_desired_state(out).to_dict()


def test_construction_orders_peers_and_advertisements() -> None:
    a = DesiredState(
        router_id="192.0.2.1",
        asn=1,
        peers=(
            Peer(name="b", address="192.0.2.3", asn=2),
            Peer(name="a", address="192.0.2.2", asn=2),
        ),
        advertisements=(Advertisement(prefix="10.0.0.0/9"), Advertisement(prefix="10.0.0.0/8")),
    )
    assert [p.name for p in a.peers] == ["a", "b"]
    assert [x.prefix for x in a.advertisements] == ["10.0.0.0/8", "10.0.0.0/9"]


def test_bfd_is_absent_by_default_and_defaults_to_frr_timers() -> None:
    assert parse_desired_state(FULL).peers[0].bfd is None
    assert "bfd" not in parse_desired_state(FULL).to_dict()["peers"][0]  # type: ignore[index]
    state = parse_desired_state(doc_with("peers.0.bfd", {}))
    assert state.peers[0].bfd == Bfd(min_tx=300, min_rx=300, multiplier=3)
    state = parse_desired_state(doc_with("peers.0.bfd", {"minTx": 50, "multiplier": 255}))
    assert state.peers[0].bfd == Bfd(min_tx=50, min_rx=300, multiplier=255)
    peer_doc = state.to_dict()["peers"][0]  # type: ignore[index]
    assert peer_doc["bfd"] == {"minTx": 50, "minRx": 300, "multiplier": 255}
    assert parse_desired_state(state.to_dict()) == state


def test_peer_repr_hides_the_password() -> None:
    assert "s3cret" not in repr(parse_desired_state(FULL).peers[0])


# --- property: any valid state round-trips through its canonical document ------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=8)
ipv4 = st.integers(0, 2**32 - 1).map(
    lambda i: f"{i >> 24}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
)


@st.composite
def states(draw: st.DrawFn) -> DesiredState:
    peer_names = draw(st.lists(names, unique=True, max_size=4))
    peers = []
    for name in peer_names:
        hold = draw(st.sampled_from([0, 3, 9, 90, 65535]))
        keepalive = 0 if hold == 0 else draw(st.integers(1, hold - 1))
        peers.append(
            Peer(
                name=name,
                address=draw(ipv4),
                asn=draw(st.integers(1, 2**32 - 1)),
                hold_time=hold,
                keepalive_time=keepalive,
                password=draw(st.none() | st.text(min_size=1, max_size=10)),
                bfd=draw(
                    st.none()
                    | st.builds(
                        Bfd,
                        min_tx=st.integers(50, 60000),
                        min_rx=st.integers(50, 60000),
                        multiplier=st.integers(2, 255),
                    )
                ),
                families=draw(
                    st.sampled_from(
                        [("ipv4-unicast",), ("ipv6-unicast",), ("ipv4-unicast", "ipv6-unicast")]
                    )
                ),
            )
        )
    lengths = draw(st.lists(st.integers(8, 32), unique=True, max_size=6))
    advs = [
        Advertisement(
            prefix=f"10.0.0.0/{n}",
            peers=draw(
                st.none()
                | st.lists(st.sampled_from(peer_names), unique=True).map(
                    lambda xs: tuple(sorted(xs))
                )
            )
            if peer_names
            else None,
            communities=tuple(draw(st.lists(st.sampled_from(["1:2", "no-export"]), unique=True))),
            med=draw(st.none() | st.integers(0, 2**32 - 1)),
            as_path_prepend=draw(st.integers(0, 32)),
        )
        for n in lengths
    ]
    return DesiredState(
        router_id=draw(ipv4),
        asn=draw(st.integers(1, 2**32 - 1)),
        peers=tuple(peers),
        advertisements=tuple(advs),
    )


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_any_valid_state_round_trips(state: DesiredState) -> None:
    assert parse_desired_state(state.to_dict()) == state
