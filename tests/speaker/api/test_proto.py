"""Proto 2 on the socket, both sides: the client sends advertisements grouped by attribute set
only to a speaker whose hello says proto 2 (to a proto 1 speaker, one entry per prefix, as
before); the speaker reads both forms into the same state; and a grouped request's errors
name the whole key path, unknown keys included, in the nack."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from speaker.api.client import SpeakerClient
from speaker.api.ipc import PROTO, Ack
from speaker.api.schema import Advertisement, parse_desired_state
from speaker.control import serve_control
from tests.speaker.control.helpers import (
    STATE_DOC,
    Conn,
    DeltaSink,
    delta,
    snapshot,
    socket_dir,
)

HOSTS = [f"10.0.0.{i}/32" for i in range(1, 41)]
DOC: dict[str, Any] = {
    **STATE_DOC,
    "advertisements": [{"prefix": p, "communities": ["64512:1"]} for p in HOSTS],
}


async def _recording_speaker(path: Path, proto: int, lines: list[dict[str, Any]]) -> Any:
    """A speaker that says `proto` in hello, records each request line and acks it."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(json.dumps({"type": "hello", "proto": proto, "applied": None}).encode())
        writer.write(b"\n")
        while line := await reader.readline():
            doc = json.loads(line)
            lines.append(doc)
            ack = {"type": "ack", "epoch": doc["epoch"], "generation": doc["generation"]}
            writer.write(json.dumps(ack).encode() + b"\n")
        writer.close()

    return await asyncio.start_unix_server(serve, path=str(path), limit=1 << 24)


@pytest.mark.parametrize("proto", [1, 2])
def test_the_client_groups_only_for_a_speaker_that_reads_proto_2(proto: int) -> None:
    state = parse_desired_state(DOC)

    async def main() -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        with socket_dir() as d:
            server = await _recording_speaker(d / "s", proto, lines)
            async with await SpeakerClient.connect(d / "s") as client:
                assert client.compact is (proto >= 2)
                assert await client.snapshot(state, epoch=3, generation=1) == Ack(
                    epoch=3, generation=1
                )
                add = [Advertisement(prefix=f"10.1.0.{i}/32", med=4) for i in range(3)]
                await client.delta(epoch=3, generation=2, base=1, add=add, remove=HOSTS[:2])
            server.close()
            await server.wait_closed()
        return lines

    snap, change = asyncio.run(asyncio.wait_for(main(), 30))
    entries = snap["state"]["advertisements"]
    if proto == 1:  # one entry per prefix, every field: what a proto 1 speaker reads
        assert [e["prefix"] for e in entries] == HOSTS
        assert all("prefixes" not in e for e in entries + change["add"])
        assert [e["prefix"] for e in change["add"]] == [f"10.1.0.{i}/32" for i in range(3)]
    else:  # one group per attribute set, defaults left out
        assert entries == [{"prefixes": HOSTS, "communities": ["64512:1"]}]
        assert change["add"] == [{"prefixes": [f"10.1.0.{i}/32" for i in range(3)], "med": 4}]
    assert change["remove"] == HOSTS[:2]
    assert parse_desired_state(snap["state"]) == state


def test_the_speaker_says_proto_2_and_reads_either_form() -> None:
    grouped = {**DOC, "advertisements": [{"prefixes": HOSTS, "communities": ["64512:1"]}]}

    async def main() -> None:
        with socket_dir() as d:
            sink = DeltaSink()
            server = await serve_control(sink, d / "s")
            agent = await Conn.open(d / "s")
            assert (await agent.recv())["proto"] == PROTO == 2
            assert (await agent.ask(snapshot(4, 1, DOC)))["type"] == "ack"
            one_by_one = sink.current
            assert (await agent.ask(snapshot(4, 2, grouped)))["type"] == "ack"
            assert sink.current == one_by_one == parse_desired_state(DOC)
            # A delta adds in either form, in one request.
            reply = await agent.ask(delta(4, 3, 2, add=[
                {"prefix": "10.1.0.1/32", "med": 4},
                {"prefixes": ["10.1.0.2/32", "10.1.0.3/32"], "med": 4},
            ]))  # fmt: skip
            assert reply["type"] == "ack", reply
            assert sink.current is not None
            added = [a for a in sink.current.advertisements if a.prefix.startswith("10.1.")]
            assert [(a.prefix, a.med) for a in added] == [
                ("10.1.0.1/32", 4), ("10.1.0.2/32", 4), ("10.1.0.3/32", 4)
            ]  # fmt: skip
            await agent.close()
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize(
    ("request_doc", "reason"),
    [
        (snapshot(4, 1, {**DOC, "advertisements": [{"prefixes": [*HOSTS, "10.0.0.x/32"]}]}),
         "state.advertisements[0].prefixes[40]: must be a CIDR prefix, not '10.0.0.x/32'"),
        (snapshot(4, 1, {**DOC, "advertisements": [{"prefixes": HOSTS, "colour": "red"}]}),
         "state.advertisements[0].colour: unknown key"),
        (snapshot(4, 1, {**DOC, "advertisements": [{"prefixes": HOSTS[:3]},
                                                    {"prefixes": HOSTS[2:4], "med": 1}]}),
         "state.advertisements[1].prefixes[0]: duplicate prefix 10.0.0.3/32"),
        (delta(4, 2, 1, add=[{"prefixes": ["10.1.0.1/32"], "peers": ["tor-c"]}]),
         "add[0].peers[0]: no peer named 'tor-c'"),
        (delta(4, 2, 1, add=[{"prefixes": ["10.1.0.1/32", "10.1.0.2/33"]}]),
         "add[0].prefixes[1]: must be a CIDR prefix, not '10.1.0.2/33'"),
        (delta(4, 2, 1, add=[{"prefixes": ["10.1.0.1/32"], "weight": 3}]),
         "add[0].weight: unknown key"),
    ],
)  # fmt: skip
def test_a_grouped_request_s_errors_name_the_key_path(
    request_doc: dict[str, Any], reason: str
) -> None:
    async def main() -> None:
        with socket_dir() as d:
            sink = DeltaSink()
            server = await serve_control(sink, d / "s")
            agent = await Conn.open(d / "s")
            await agent.recv()
            if request_doc["type"] == "delta":
                assert (await agent.ask(snapshot(4, 1, DOC)))["type"] == "ack"
            before = sink.current
            reply = await agent.ask(request_doc)
            assert reply["type"] == "nack"
            assert reply["reason"] == reason
            assert sink.current is before and len(sink.deltas) == 0  # nothing changed
            await agent.close()
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))
