"""A `listen` change that cannot be bound, against a real BIRD that connects to our listener
(our peer is `passive: true`): the change is refused, nothing changes, and BIRD can connect
again, as often as it likes; sending the same failing state again is refused again.

Both ways a state arrives: a snapshot over the control socket (the agent), and SIGHUP on a
`--config` file (standalone, with `--socket` beside it for status). Each failure is one log
line, without a traceback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from speaker.api.client import NackError, SpeakerClient, new_epoch
from speaker.api.schema import Advertisement, parse_desired_state
from testing.procs import SpeakerProcess
from testing.routers.bird import Bird
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, PeerSpec, Route

pytestmark = pytest.mark.lab

Factory = Callable[..., SpeakerProcess]
NOT_LOCAL = "192.0.2.1"  # TEST-NET-1, no address of this host: bind() fails, nothing is sent
FIRST = ["10.244.1.0/24", "198.51.100.7/32"]


def _doc(me: str, tor: Bird, prefixes: list[str], *, listen: str) -> dict[str, object]:
    return {
        "routerId": "192.0.2.11",
        "asn": 64512,
        "listen": {"address": listen, "port": 179},
        "peers": [{"name": "tor", "address": tor.address, "asn": tor.asn, "sourceAddress": me,
                   "holdTime": 9, "passive": True, "ebgpMultihop": 255}],
        "advertisements": [{"prefix": p} for p in prefixes],
    }  # fmt: skip


def _prefixes(routes: list[Route]) -> set[str]:
    return {r.prefix for r in routes}


def _tor(lab: Lab, me: str) -> Bird:
    tor = lab.bird(asn=65000)
    tor.peers["node"] = PeerSpec(name="node", address=me, asn=64512, hold_time=9)
    tor.start()
    return tor


def _reconnects(tor: Bird, sp: SpeakerProcess, expected: set[str]) -> None:
    """BIRD drops the session and connects again: only our listener can take it."""
    at = len(sp.log())
    tor.birdc("restart", tor.protocol("node"))
    sp.wait_log("-> Established", after=at, timeout=60)
    tor.wait_established("node", timeout=60)
    tor.wait_routes("node", lambda rs: _prefixes(rs) == expected, timeout=60)


def test_agent_snapshot_with_an_unbindable_listen_keeps_passive_peers_connecting(
    lab: Lab, speaker_factory: Factory, tmp_path: Path
) -> None:
    me = lab.address()
    tor = _tor(lab, me)
    sock = tmp_path / "speaker.sock"
    sp = speaker_factory()
    sp.start(None, "--socket", str(sock), "--state-dir", str(tmp_path / "state"))
    sp.wait_file(sock)
    epoch = new_epoch()
    good = parse_desired_state(_doc(me, tor, FIRST, listen=me))
    moved = parse_desired_state(_doc(me, tor, [*FIRST, "198.51.100.8/32"], listen=NOT_LOCAL))

    async def send(generation: int, *, expect_nack: bool) -> None:
        async with await SpeakerClient.connect(sock, timeout=10) as agent:
            if not expect_nack:
                await agent.snapshot(good, epoch=epoch, generation=generation)
                return
            with pytest.raises(NackError) as nack:
                await agent.snapshot(moved, epoch=epoch, generation=generation)
            assert f"cannot listen on {NOT_LOCAL} port 179" in nack.value.reason
            status = await agent.status()
            assert status.applied is not None and status.applied.generation == 1
            assert [(p.state, p.prefixes_advertised) for p in status.peers] == [
                (ESTABLISHED, len(FIRST))
            ]

    asyncio.run(send(1, expect_nack=False))
    tor.wait_established("node", timeout=60)
    tor.wait_routes("node", lambda rs: _prefixes(rs) == set(FIRST), timeout=60)
    for generation in (2, 3):  # the same state twice: refused both times
        asyncio.run(send(generation, expect_nack=True))
        _reconnects(tor, sp, set(FIRST))

    async def delta_on_generation_1() -> None:
        # Nothing changed, so generation 1 is still a valid base.
        async with await SpeakerClient.connect(sock, timeout=10) as agent:
            assert agent.hello.applied is not None and agent.hello.applied.generation == 1
            added = Advertisement(prefix="198.51.100.9/32")
            await agent.delta(epoch=epoch, generation=4, base=1, add=(added,))

    asyncio.run(delta_on_generation_1())
    tor.wait_routes("node", lambda rs: _prefixes(rs) == {*FIRST, "198.51.100.9/32"}, timeout=60)
    log = sp.log()
    refusals = [ln for ln in log.splitlines() if "refused, the running state is unchanged" in ln]
    assert len(refusals) == 2 and all(f"cannot listen on {NOT_LOCAL}" in ln for ln in refusals)
    assert "Traceback" not in log


def test_sighup_with_a_listen_address_in_use_keeps_passive_peers_connecting(
    lab: Lab, speaker_factory: Factory, tmp_path: Path
) -> None:
    me = lab.address()
    tor = _tor(lab, me)
    sock = tmp_path / "speaker.sock"
    sp = speaker_factory()
    sp.start(_doc(me, tor, FIRST, listen=me), "--socket", str(sock))
    tor.wait_established("node", timeout=60)
    tor.wait_routes("node", lambda rs: _prefixes(rs) == set(FIRST), timeout=60)

    # BIRD listens on its own address, port 179: taken. It is our listener's port too, so the
    # speaker tries it as an overlapping change (old listener closed, new bind tried, old one
    # bound again): the old listener must be back, accepting.
    taken = _doc(me, tor, [*FIRST, "198.51.100.8/32"], listen=tor.address)
    for _ in range(2):
        at = len(sp.log())
        sp.reload(taken)
        text = sp.wait_log("keeping the running state", after=at)
        assert f"SIGHUP: cannot apply {sp.config}: cannot listen on {tor.address} port 179" in text
        _reconnects(tor, sp, set(FIRST))

    status = subprocess.run(
        [sys.executable, "-m", "speaker.cli.kubgp_speaker", "status", "--socket", str(sock),
         "-o", "json"], capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    (peer,) = json.loads(status.stdout)["peers"]
    assert (peer["state"], peer["prefixesAdvertised"]) == (ESTABLISHED, len(FIRST))

    at = len(sp.log())
    sp.reload(_doc(me, tor, [*FIRST, "198.51.100.9/32"], listen=me))
    sp.wait_log("SIGHUP: applied", after=at)
    tor.wait_routes("node", lambda rs: _prefixes(rs) == {*FIRST, "198.51.100.9/32"}, timeout=60)
    assert "Traceback" not in sp.log()
    sp.signal(signal.SIGTERM)
    assert sp.proc is not None and sp.proc.wait(timeout=30) == 0
