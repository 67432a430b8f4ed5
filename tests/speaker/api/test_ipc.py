"""speaker.api.ipc: every message round-trips through its line; every malformed line becomes an
IpcError with a reason naming what is wrong; the epoch/generation/delta rules of `accept`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from speaker.api.ipc import (
    MAX_COUNTER,
    Ack,
    AppliedState,
    BfdStatus,
    Delta,
    Hello,
    IpcError,
    Message,
    Nack,
    PeerStatus,
    Snapshot,
    StateVersion,
    Status,
    StatusRequest,
    accept,
    encode,
    parse_reply,
    parse_request,
)
from speaker.api.schema import Advertisement, parse_desired_state
from tests.speaker.control.helpers import STATE, STATE_DOC, delta, snapshot, state_with

V = StateVersion(epoch=7, generation=3)

REQUESTS: list[Message] = [
    Snapshot(epoch=7, generation=3, state=STATE),
    Delta(
        epoch=7,
        generation=4,
        base=3,
        add=(Advertisement(prefix="10.1.0.0/16", peers=("tor-a",), communities=("no-export",)),),
        remove=("10.244.1.0/24",),
    ),
    StatusRequest(),
]
REPLIES: list[Message] = [
    Hello(applied=None),
    Hello(applied=V),
    Ack(epoch=7, generation=3),
    Nack(reason="no", want="snapshot"),
    Nack(reason="uid 1 may not use this socket", want=None),
    Status(peers=(), applied=None),
    Status(
        peers=(
            PeerStatus(name="a", address="::1", state="Established", since=1.5, last_error="x"),
        ),
        applied=V,
    ),
    Status(
        peers=(
            PeerStatus(
                name="b",
                address="192.0.2.1",
                state="Idle",
                bfd=BfdStatus(
                    state="Down",
                    since=2.5,
                    flaps=3,
                    last_diagnostic="control-detection-time-expired",
                    bgp_held=True,
                ),
            ),
            PeerStatus(name="c", address="192.0.2.2", state="Idle", bfd=BfdStatus(state="Init")),
        ),
        applied=V,
    ),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
def test_request_round_trip(message: Message) -> None:
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b'{"type":"')
    assert parse_request(line) == message


@pytest.mark.parametrize("message", REPLIES, ids=lambda m: type(m).__name__)
def test_reply_round_trip(message: Message) -> None:
    assert parse_reply(encode(message)) == message


def test_wire_shapes_follow_design() -> None:
    assert json.loads(encode(Hello(applied=V))) == {
        "type": "hello",
        "proto": 2,
        "applied": {"epoch": 7, "generation": 3},
    }
    assert json.loads(encode(Nack(reason="r"))) == {
        "type": "nack",
        "reason": "r",
        "want": "snapshot",
    }
    status = json.loads(encode(REPLIES[-2]))
    assert list(status["peers"][0]) == [
        "name",
        "address",
        "state",
        "since",
        "prefixesAdvertised",
        "prefixesReceived",
        "lastError",
    ]


def test_bfd_status_is_written_only_for_peers_with_bfd() -> None:
    # A peer without BFD looks exactly as before BFD existed (an older agent reads it).
    assert "bfd" not in json.loads(encode(REPLIES[-2]))["peers"][0]
    status = json.loads(encode(REPLIES[-1]))
    assert status["peers"][0]["bfd"] == {
        "state": "Down",
        "since": 2.5,
        "flaps": 3,
        "lastDiagnostic": "control-detection-time-expired",
        "bgpHeld": True,
    }


def test_newline_inside_a_string_stays_escaped() -> None:
    line = encode(Nack(reason="two\nlines"))
    assert line.count(b"\n") == 1
    assert parse_reply(line) == Nack(reason="two\nlines")


def _line(doc: Any) -> bytes:
    return json.dumps(doc).encode() + b"\n"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"garbage\n", "malformed JSON"),
        (b'{"type":"status"\n', "malformed JSON"),
        (b"\xff\xfe\n", "not UTF-8"),
        (b'{"type":"snapshot","epoch":NaN}\n', "NaN is not a JSON number"),
        (b"[1,2]\n", "must be a JSON object, not array"),
        (b'{"epoch":1}\n', "type: required"),
        (b'{"type":5}\n', "type: must be a string"),
        (b'{"type":"hello","proto":2,"applied":null}\n', "unknown request type 'hello'"),
        (_line({"type": "status", "x": 1}), "x: unknown key"),
        (_line({**snapshot(1, 1), "extra": True}), "extra: unknown key"),
        (_line({"type": "snapshot", "epoch": 1, "state": STATE_DOC}), "generation: required"),
        (_line(snapshot(True, 1)), "epoch: must be an integer, not boolean"),
        (
            _line(snapshot(1, "2")),  # type: ignore[arg-type]
            "generation: must be an integer, not string",
        ),
        (_line(snapshot(-1, 1)), "epoch: must be between 0"),
        (_line(snapshot(MAX_COUNTER + 1, 1)), "epoch: must be between 0"),
        (_line(snapshot(1, 1, [])), "state: must be an object, not array"),
        (
            _line(snapshot(1, 1, {**STATE_DOC, "asn": 0})),
            "state.asn: must be between 1 and 4294967295",
        ),
        (
            _line(snapshot(1, 1, {**STATE_DOC, "advertisements": [{"prefix": "10.0.0.1/8"}]})),
            "state.advertisements[0].prefix: '10.0.0.1/8' has host bits set",
        ),
        (
            _line(
                snapshot(
                    1,
                    1,
                    {**STATE_DOC, "advertisements": [{"prefix": "10.0.0.0/8", "peers": ["x"]}]},
                )
            ),
            "state.advertisements[0].peers[0]: no peer named 'x'",
        ),
        (_line(delta(1, 2, 1, add=[{"prefix": "10.0.0.0/8", "med": -1}])), "add[0].med: must be"),
        (
            _line(delta(1, 2, 1, add=[{"prefix": "10.0.0.0/8", "bogus": 1}])),
            "add[0].bogus: unknown key",
        ),
        (_line(delta(1, 2, 1, add=["10.0.0.0/8"])), "add[0]: must be an object, not string"),
        (
            _line(delta(1, 2, 1, add=[{"prefix": "10.0.0.0/8", "peers": "tor-a"}])),
            "add[0].peers: must be a list",
        ),
        (_line(delta(1, 2, 1, remove=["10.0.0.1"])), "remove[0]: must be a CIDR prefix"),
        (
            _line(delta(1, 2, 1, add=[{"prefix": "10.0.0.0/8"}], remove=["10.0.0.0/8"])),
            "remove[0]: prefix 10.0.0.0/8 is also in add[0]",
        ),
        (
            _line(delta(1, 2, 1, add=[{"prefix": "10.0.0.0/8"}, {"prefix": "10.0.0.0/8"}])),
            "add[1]: prefix 10.0.0.0/8 is also in add[0]",
        ),
        (_line({**delta(1, 2, 1), "add": {}}), "add: must be an array, not object"),
    ],
)
def test_malformed_requests_name_the_problem(line: bytes, reason: str) -> None:
    with pytest.raises(IpcError) as info:
        parse_request(line)
    assert reason in info.value.reason
    assert info.value.want == "snapshot"


def test_line_over_the_limit() -> None:
    line = encode(StatusRequest())
    assert parse_request(line, max_line=len(line) - 1) == StatusRequest()
    with pytest.raises(IpcError, match="line of 17 bytes is over the limit of 16 bytes"):
        parse_request(line, max_line=len(line) - 2)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"type": "ack", "epoch": 1}, "generation: required"),
        ({"type": "nack", "reason": "r", "want": "delta"}, "want: must be 'snapshot' or null"),
        (
            {"type": "status", "peers": [{"name": "a"}], "applied": None},
            "peers[0].address: required",
        ),
        ({"type": "status", "peers": [], "applied": {"epoch": 1}}, "applied.generation: required"),
        (
            {
                "type": "status",
                "applied": None,
                "peers": [
                    {
                        "name": "a",
                        "address": "::1",
                        "state": "Idle",
                        "since": None,
                        "prefixesAdvertised": 0,
                        "prefixesReceived": 0,
                        "lastError": None,
                        "bfd": {"state": "Up", "since": None, "flaps": 0, "lastDiagnostic": None},
                    }
                ],
            },
            "peers[0].bfd.bgpHeld: required",
        ),
        (
            {
                "type": "status",
                "applied": None,
                "peers": [
                    {
                        "name": "a",
                        "address": "::1",
                        "state": "Idle",
                        "since": None,
                        "prefixesAdvertised": 0,
                        "prefixesReceived": 0,
                        "lastError": None,
                        "bfd": {
                            "state": "Up",
                            "since": None,
                            "flaps": 0,
                            "lastDiagnostic": None,
                            "bgpHeld": 1,
                        },
                    }
                ],
            },
            "peers[0].bfd.bgpHeld: must be true or false",
        ),
        ({"type": "snapshot"}, "unknown reply type 'snapshot'"),
    ],
)
def test_malformed_replies(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(IpcError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_reply(_line(doc))


# --- accept: epoch, generation and delta rules ---------------------------------------------

APPLIED = AppliedState(version=V, state=STATE)


def _delta(epoch: int = 7, generation: int = 4, base: int = 3, **kw: Any) -> Delta:
    msg = parse_request(_line(delta(epoch, generation, base, **kw)))
    assert isinstance(msg, Delta)
    return msg


def test_first_snapshot_and_new_epoch_are_accepted() -> None:
    first = accept(None, Snapshot(epoch=7, generation=0, state=STATE))
    assert first == AppliedState(version=StateVersion(epoch=7, generation=0), state=STATE)
    other = state_with(asn=64513)
    # A new agent: any other epoch, even a smaller one and generation 1.
    assert accept(APPLIED, Snapshot(epoch=2, generation=1, state=other)).state == other


def test_snapshot_generation_must_increase_within_an_epoch() -> None:
    assert accept(APPLIED, Snapshot(epoch=7, generation=9, state=STATE)).version.generation == 9
    for generation in (3, 2):
        with pytest.raises(IpcError, match=f"generation {generation} is not after the applied"):
            accept(APPLIED, Snapshot(epoch=7, generation=generation, state=STATE))


@pytest.mark.parametrize(
    ("applied", "message", "reason"),
    [
        (None, _delta(), "no state is applied yet"),
        (APPLIED, _delta(epoch=8), "a new epoch starts with a snapshot"),
        (APPLIED, _delta(base=2), "delta base 2 is not the applied generation 3"),
        (APPLIED, _delta(generation=3), "delta generation 3 is not after its base 3"),
        (APPLIED, _delta(remove=["10.9.0.0/16"]), r"remove\[0\]: 10.9.0.0/16 is not advertised"),
        (
            APPLIED,
            _delta(add=[{"prefix": "10.9.0.0/16", "peers": ["tor-c"]}]),
            r"add\[0\].peers\[0\]: no peer named 'tor-c'",
        ),
    ],
)
def test_delta_refusals(applied: AppliedState | None, message: Delta, reason: str) -> None:
    with pytest.raises(IpcError, match=reason) as info:
        accept(applied, message)
    assert info.value.want == "snapshot"


def test_delta_adds_replaces_and_removes_by_prefix() -> None:
    message = _delta(
        add=[
            {"prefix": "10.9.0.0/16", "peers": ["tor-b", "tor-a"]},
            {"prefix": "198.51.100.7/32", "med": 5},  # replaces the entry of that prefix
        ],
        remove=["10.244.1.0/24"],
    )
    result = accept(APPLIED, message)
    assert result.version == StateVersion(epoch=7, generation=4)
    expected = state_with(
        advertisements=[
            {"prefix": "10.9.0.0/16", "peers": ["tor-a", "tor-b"]},
            {"prefix": "198.51.100.7/32", "med": 5},
        ]
    )
    assert result.state == expected
    # The merged state is a valid state: it survives the schema's own round trip.
    assert parse_desired_state(result.state.to_dict()) == result.state
