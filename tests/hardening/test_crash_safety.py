"""Crash safety of the node: the speaker killed with -9 at random moments while an agent streams
snapshots and deltas, again and again, with a real BIRD as the ToR.

Each iteration, the test (playing the node agent: one epoch, generations counting up) streams
requests back to back (a delta mostly, a snapshot one time in five, each changing a random
handful of ~300 advertisements and their communities) and SIGKILLs the speaker after a random
delay; one iteration in ten kills it instead at a random moment of its start-up (while it
resumes). A new speaker is then started on the same `--state-dir`, and:

- its `hello` names the last acked generation, or the one in flight when it was killed (saved,
  its ack lost with the process), never anything older and never nothing;
- a delta on that generation is acked (the speaker runs that generation's exact state, or the
  delta would give another one), and the ToR ends with exactly the routes of the state the
  agent wants, prefixes and communities, after graceful restart and End-of-RIB have run their
  course (BIRD keeps our routes as stale across each kill).

What is tested is behaviour (versions, routes at the ToR), not how the state is stored.
`KUBGP_CRASH_ITERATIONS` (default 10; 100 for the full run) and `KUBGP_CRASH_SEED` (printed)
steer it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from speaker.api.client import SpeakerClient, SpeakerError, new_epoch
from speaker.api.ipc import StateVersion
from speaker.api.schema import Advertisement, DesiredState, parse_desired_state
from testing.procs import SpeakerProcess
from testing.routers.bird import Bird
from testing.routers.lab import Lab
from testing.routers.model import PeerSpec, Route

pytestmark = [pytest.mark.lab, pytest.mark.slow]

Factory = Callable[..., SpeakerProcess]
ITERATIONS = int(os.environ.get("KUBGP_CRASH_ITERATIONS", "10"))
SEED = int(os.environ.get("KUBGP_CRASH_SEED", str(time.time_ns() % 2**32)))
UNIVERSE = [f"10.244.{i // 250}.{i % 250}/32" for i in range(2000)]
SIZE = 300
KILL_WITHIN = 0.4  # seconds into a stream; an apply + save takes a few ms here

Table = dict[str, str]  # prefix -> its community


@dataclass
class Agent:
    """What the node agent knows: the last acked version and state, and the request in flight."""

    me: str
    tor: Bird
    epoch: int = field(default_factory=new_epoch)
    generation: int = 0
    acked: tuple[int, Table] | None = None
    inflight: tuple[int, Table] | None = None

    def state(self, table: Table) -> DesiredState:
        return parse_desired_state({
            "routerId": "192.0.2.11", "asn": 64512,
            "peers": [{"name": "tor", "address": self.tor.address, "asn": self.tor.asn,
                       "sourceAddress": self.me, "holdTime": 9, "connectRetryTime": 1,
                       "ebgpMultihop": 255,
                       "gracefulRestart": {"enabled": True, "restartTime": 120}}],
            "advertisements": [{"prefix": p, "communities": [c]} for p, c in sorted(table.items())],
        })  # fmt: skip

    async def send(self, client: SpeakerClient, rng: random.Random, *, base: int | None) -> None:
        """One request: a delta on `base` (the applied generation), else a snapshot."""
        self.generation += 1
        current = {} if self.acked is None else self.acked[1]
        if base is None or rng.random() < 0.2:
            table = {p: _community(rng) for p in rng.sample(UNIVERSE, SIZE)}
            self.inflight = (self.generation, table)
            await client.snapshot(self.state(table), epoch=self.epoch, generation=self.generation)
        else:
            table = dict(current)
            removed = rng.sample(sorted(table), rng.randint(0, 20))
            for prefix in removed:
                del table[prefix]
            fresh = [p for p in rng.sample(UNIVERSE, 40) if p not in current][: rng.randint(0, 20)]
            changed = rng.sample(sorted(table), rng.randint(0, 5))
            for prefix in fresh + changed:
                table[prefix] = _community(rng)
            self.inflight = (self.generation, table)
            add = [Advertisement(prefix=p, communities=(table[p],)) for p in fresh + changed]
            await client.delta(epoch=self.epoch, generation=self.generation, base=base,
                               add=add, remove=removed)  # fmt: skip
        self.acked, self.inflight = self.inflight, None


def _community(rng: random.Random) -> str:
    return f"64512:{rng.randint(1, 60000)}"


def _routes(routes: list[Route]) -> Table:
    assert all(len(r.communities) == 1 for r in routes), routes[:3]
    return {r.prefix: r.communities[0] for r in routes}


@dataclass
class Figures:
    kills_in_stream: int = 0
    kills_at_start: int = 0
    acked_requests: int = 0
    resumed_in_flight: int = 0
    resume_seconds: list[float] = field(default_factory=list)


def test_kill_9_during_a_stream_resumes_the_last_acked_generation_and_the_tor_converges(
    lab: Lab, speaker_factory: Factory, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    print(f"\ncrash safety: {ITERATIONS} iterations, KUBGP_CRASH_SEED={SEED}")
    me = lab.address()
    tor = lab.bird(asn=65000)
    tor.peers["node"] = PeerSpec(name="node", address=me, asn=64512, hold_time=9,
                                 graceful_restart=True, restart_time=120)  # fmt: skip
    tor.start()
    sock = tmp_path / "speaker.sock"
    args = ("--socket", str(sock), "--state-dir", str(tmp_path / "state"), "--log-level", "info")
    sp = speaker_factory()
    agent = Agent(me=me, tor=tor)
    figures = Figures()

    async def stream_until_killed() -> None:
        assert sp.proc is not None
        pid = sp.proc.pid
        loop = asyncio.get_running_loop()
        killed = asyncio.Event()

        def kill() -> None:
            os.kill(pid, signal.SIGKILL)
            killed.set()

        async with await SpeakerClient.connect(sock, timeout=60) as client:
            applied = client.hello.applied
            loop.call_later(rng.uniform(0, KILL_WITHIN), kill)
            try:
                while True:
                    await agent.send(client, rng, base=None if applied is None else
                                     agent.generation)  # fmt: skip
                    applied = StateVersion(epoch=agent.epoch, generation=agent.generation)
                    figures.acked_requests += 1
            except SpeakerError:
                assert killed.is_set(), f"the speaker went away by itself:\n{sp.log()[-3000:]}"

    async def resume_and_converge() -> None:
        started = time.monotonic()
        async with await SpeakerClient.connect(sock, timeout=120) as client:
            figures.resume_seconds.append(time.monotonic() - started)
            resumed = client.hello.applied
            assert agent.acked is not None
            candidates = {agent.acked[0]: agent.acked[1]}
            if agent.inflight is not None:
                candidates[agent.inflight[0]] = agent.inflight[1]
            assert resumed is not None, "resumed nothing"
            assert resumed.epoch == agent.epoch
            assert resumed.generation in set(candidates), (
                f"resumed generation {resumed.generation}; acked {agent.acked[0]}, in flight "
                f"{agent.inflight[0] if agent.inflight else None}"
            )
            if resumed.generation != agent.acked[0]:
                figures.resumed_in_flight += 1
            agent.acked, agent.inflight = (resumed.generation, candidates[resumed.generation]), None
            (peer,) = (await client.status()).peers
            assert peer.prefixes_advertised == len(agent.acked[1])
            agent.generation = resumed.generation
            # A delta on the resumed generation: right only if that generation's state runs.
            await agent.send(client, rng, base=resumed.generation)
        want = agent.acked[1]
        tor.wait_routes("node", lambda rs: _routes(rs) == want, timeout=120,
                        what=f"generation {agent.generation}'s {len(want)} routes")  # fmt: skip

    sp.start(None, *args)

    # The first state, so that there is something to resume.
    async def first() -> None:
        async with await SpeakerClient.connect(sock, timeout=60) as client:
            await agent.send(client, rng, base=None)

    asyncio.run(first())
    for iteration in range(ITERATIONS):
        if rng.random() < 0.1:
            # Killed while starting up: reading the saved state, applying it, or just after.
            sp.signal(signal.SIGKILL)
            assert sp.proc is not None and sp.proc.wait(timeout=30) == -signal.SIGKILL
            sp.start(None, *args)
            time.sleep(rng.uniform(0, 1.5))  # the random moment is the test's input
            sp.signal(signal.SIGKILL)
            figures.kills_at_start += 1
        else:
            asyncio.run(stream_until_killed())
            figures.kills_in_stream += 1
        assert sp.proc is not None and sp.proc.wait(timeout=30) == -signal.SIGKILL, iteration
        sp.start(None, *args)
        asyncio.run(resume_and_converge())

    assert "Traceback" not in sp.log()
    assert sp.stop() == 0
    waits = sorted(figures.resume_seconds)
    print(
        f"crash safety: {figures.kills_in_stream} kills in a stream, {figures.kills_at_start} "
        f"during start-up; {figures.acked_requests} requests acked; resumed the in-flight "
        f"generation (ack lost) {figures.resumed_in_flight} times; socket back after a restart "
        f"in {waits[len(waits) // 2]:.2f} s median, {waits[-1]:.2f} s max"
    )
