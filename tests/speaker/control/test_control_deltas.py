"""The control server with a sink that applies deltas in place (the runtime's way): the delta
reaches the sink as a delta, the applied state moves forward without being rebuilt, a delta that
does not apply is refused with nothing changed, deltas are journaled and resumed, and the journal
is compacted once it outgrows the base."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from speaker.api.schema import DesiredState
from speaker.control import serve_control
from speaker.state_store import FILE_NAME, JOURNAL_NAME, StateStore
from tests.speaker.control.helpers import Conn, DeltaSink, delta, snapshot, socket_dir


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def test_deltas_in_place_journaled_resumed_and_compacted(tmp_path: Path) -> None:
    async def main() -> None:
        with socket_dir() as d:
            path = d / "speaker.sock"
            sink = DeltaSink()
            store = StateStore(tmp_path)
            server = await serve_control(sink, path, state_store=store)
            agent = await Conn.open(path)
            await agent.recv()
            assert (await agent.ask(snapshot(5, 1)))["type"] == "ack"
            state = sink.current
            assert state is not None and os.listdir(tmp_path) == [FILE_NAME]
            reply = await agent.ask(delta(5, 2, 1, add=[{"prefixes": ["10.9.0.0/16"]}],
                                          remove=["10.244.1.0/24"]))  # fmt: skip
            assert reply == {"type": "ack", "epoch": 5, "generation": 2}
            assert len(sink.applied) == 1 and len(sink.deltas) == 1  # no rebuilt state
            assert server.applied is not None and server.applied.state is state
            assert [a.prefix for a in state.advertisements] == ["10.9.0.0/16", "198.51.100.7/32"]
            assert sorted(os.listdir(tmp_path)) == [FILE_NAME, JOURNAL_NAME]
            # A delta that does not apply: refused, nothing changed, nothing journaled.
            size = os.path.getsize(tmp_path / JOURNAL_NAME)
            refused = await agent.ask(delta(5, 3, 2, add=[{"prefix": "10.8.0.0/16"}],
                                            remove=["10.244.1.0/24"]))  # fmt: skip
            assert refused["type"] == "nack" and "is not advertised" in refused["reason"]
            assert [a.prefix for a in state.advertisements] == ["10.9.0.0/16", "198.51.100.7/32"]
            assert os.path.getsize(tmp_path / JOURNAL_NAME) == size
            # Enough deltas and the journal outgrows the base: a new base, the journal gone
            # (then started afresh by the next delta).
            generation, largest = 2, 0
            while (size := _size(tmp_path / JOURNAL_NAME)) >= largest:
                largest = size
                generation += 1
                community = f"64512:{generation}"
                reply = await agent.ask(delta(5, generation, generation - 1,
                                              add=[{"prefix": "10.9.0.0/16",
                                                    "communities": [community]}]))  # fmt: skip
                assert reply["type"] == "ack", reply
                assert generation < 2000
            assert largest > 64 * 1024
            await agent.close()
            await server.close()
            # A restart resumes the last generation, exactly.
            resumed_sink = DeltaSink()
            server = await serve_control(resumed_sink, path, state_store=StateStore(tmp_path))
            agent = await Conn.open(path)
            assert (await agent.recv())["applied"] == {"epoch": 5, "generation": generation}
            assert resumed_sink.current == state
            reply = await agent.ask(delta(5, generation + 1, generation,
                                          remove=["198.51.100.7/32"]))  # fmt: skip
            assert reply["type"] == "ack"
            await agent.close()
            await server.close()
            final = StateStore(tmp_path).load().applied
            assert final is not None and isinstance(final.state, DesiredState)
            assert [a.prefix for a in final.state.advertisements] == ["10.9.0.0/16"]

    asyncio.run(asyncio.wait_for(main(), 60))
