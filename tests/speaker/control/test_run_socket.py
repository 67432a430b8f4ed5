"""`kubgp-speaker run --socket --state-dir`, a real process, driven by the real client, with a
real BIRD as the peer: what the node agent relies on.

Snapshot -> ack -> routes at BIRD; delta; a gap and garbage get nacks while the session and
routes stay; the agent going away changes nothing; a status reader sees the session; a
speaker killed with -9 and started again resumes the persisted state with no agent at all.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from speaker.api.client import NackError, SpeakerClient, new_epoch
from speaker.api.schema import DesiredState, parse_desired_state
from testing.procs import SpeakerProcess
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, PeerSpec, Route

pytestmark = pytest.mark.lab

Factory = Callable[..., SpeakerProcess]


def _state(me: str, tor_address: str, prefixes: list[str]) -> DesiredState:
    return parse_desired_state(
        {
            "routerId": "192.0.2.11",
            "asn": 64512,
            "peers": [
                {
                    "name": "tor",
                    "address": tor_address,
                    "asn": 65000,
                    "sourceAddress": me,
                    "holdTime": 9,
                    "connectRetryTime": 1,
                    "ebgpMultihop": 255,
                }
            ],
            "advertisements": [{"prefix": p, "communities": ["64512:100"]} for p in prefixes],
        }
    )


def _prefixes(routes: list[Route]) -> set[str]:
    return {r.prefix for r in routes}


def _raw_exchange(path: Path, payload: bytes) -> list[str]:
    """Sends raw bytes on a fresh connection; returns the lines read back (hello first)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(payload)
        data = b""
        while data.count(b"\n") < 2:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode().splitlines()


def test_agent_protocol_end_to_end_with_bird(
    lab: Lab, speaker_factory: Factory, tmp_path: Path
) -> None:
    me = lab.address()
    tor = lab.bird(asn=65000)
    tor.peers["node"] = PeerSpec(name="node", address=me, asn=64512, hold_time=9)
    tor.start()
    sock_path = tmp_path / "speaker.sock"
    state_dir = tmp_path / "state"
    spk = speaker_factory()
    spk.start(None, "--socket", str(sock_path), "--state-dir", str(state_dir))
    spk.wait_file(sock_path)
    first = ["10.244.1.0/24", "198.51.100.7/32", "198.51.100.8/32"]
    epoch = new_epoch()

    async def drive() -> None:
        async with await SpeakerClient.connect(sock_path, timeout=10) as agent:
            assert agent.hello.applied is None
            ack = await agent.snapshot(_state(me, tor.address, first), epoch=epoch, generation=1)
            assert (ack.epoch, ack.generation) == (epoch, 1)
            tor.wait_routes("node", lambda rs: _prefixes(rs) == set(first))

            from speaker.api.schema import Advertisement

            added = Advertisement(prefix="198.51.100.9/32", communities=("64512:200",))
            await agent.delta(epoch=epoch, generation=2, base=1, add=(added,),
                              remove=("198.51.100.8/32",))  # fmt: skip
            routes = tor.wait_routes(
                "node",
                lambda rs: _prefixes(rs) == {"10.244.1.0/24", "198.51.100.7/32", "198.51.100.9/32"},
            )
            by_prefix = {r.prefix: r for r in routes}
            assert by_prefix["198.51.100.9/32"].communities == ("64512:200",)
            assert by_prefix["198.51.100.9/32"].as_path == (64512,)

            # A generation gap: nack asking for a snapshot; nothing changes.
            with pytest.raises(NackError) as gap:
                await agent.delta(epoch=epoch, generation=9, base=7, remove=("10.244.1.0/24",))
            assert gap.value.want == "snapshot"

            # A second client reads status while the agent stays connected.
            async with await SpeakerClient.connect(sock_path, timeout=10) as reader:
                status = await reader.status()
            (peer,) = status.peers
            assert (peer.name, peer.state, peer.prefixes_advertised) == ("tor", ESTABLISHED, 3)
            assert status.applied is not None and status.applied.generation == 2

    asyncio.run(drive())

    # Garbage and an oversized line on their own connections: nacks, state untouched.
    hello, nack = _raw_exchange(sock_path, b"{not json\n")
    assert '"type":"hello"' in hello.replace(" ", "") and '"nack"' in nack
    expected = {"10.244.1.0/24", "198.51.100.7/32", "198.51.100.9/32"}
    # The agent is gone now: the speaker keeps advertising its last state.
    time.sleep(1.0)
    assert tor.session_state("node") == ESTABLISHED
    assert _prefixes(tor.received_routes("node")) == expected

    # kill -9 and start again with no agent and no --config: the persisted state comes back.
    spk.signal(signal.SIGKILL)
    assert spk.proc is not None
    spk.proc.wait(timeout=10)
    tor.wait_routes("node", lambda rs: not rs, timeout=30)  # no graceful restart yet
    sock_path.unlink(missing_ok=True)
    again = speaker_factory()
    again.start(None, "--socket", str(sock_path), "--state-dir", str(state_dir))
    again.wait_file(sock_path)
    tor.wait_established("node", timeout=30)
    tor.wait_routes("node", lambda rs: _prefixes(rs) == expected)

    async def hello_after_restart() -> None:
        async with await SpeakerClient.connect(sock_path, timeout=10) as agent:
            assert agent.hello.applied is not None
            assert (agent.hello.applied.epoch, agent.hello.applied.generation) == (epoch, 2)

    asyncio.run(hello_after_restart())


def test_run_needs_a_config_or_a_socket(speaker_factory: Factory) -> None:
    spk = speaker_factory()
    spk.start(None)
    assert spk.proc is not None
    assert spk.proc.wait(timeout=20) == 2
    assert "needs --config FILE, --socket PATH, or both" in spk.log()
