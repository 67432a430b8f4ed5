"""controller.agent.push against the real control server (speaker.control) over a real Unix
socket. The sink behind it is tests/control's RecordingSink: what these tests own is what the
agent sends and when (snapshot or delta, reconnects, re-sync), up to `StateSink.apply`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from controller.agent.push import PushLoop, delta_between
from controller.controller_metrics import AgentMetrics
from speaker.api.client import SpeakerClient
from speaker.api.ipc import AppliedState, StateVersion
from speaker.api.schema import DesiredState, parse_desired_state
from speaker.control import ControlServer, serve_control
from speaker.state_store import StateStore
from testing.wait import wait_for_async
from tests.speaker.control.helpers import STATE_DOC, RecordingSink, socket_dir

PEERS = STATE_DOC["peers"]


def state(*prefixes: str, **changes: Any) -> DesiredState:
    ads = [{"prefix": p, "communities": ["64512:100"]} for p in prefixes]
    return parse_desired_state({**STATE_DOC, "advertisements": ads, **changes})


@contextlib.asynccontextmanager
async def pushing(loop: PushLoop) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(loop.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def run(scenario: Callable[[Path], Awaitable[None]]) -> None:
    async def main() -> None:
        with socket_dir() as d:
            await asyncio.wait_for(scenario(d), 30)

    asyncio.run(main())


def test_delta_between_sends_deltas_only_for_small_advertisement_changes() -> None:
    base = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32")
    assert delta_between(None, base) is None
    d = delta_between(base, state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.4/32"))
    assert d is not None
    assert [a.prefix for a in d.add] == ["10.0.0.4/32"] and d.remove == ("10.0.0.3/32",)
    changed = parse_desired_state(
        {**STATE_DOC, "advertisements": [
            {"prefix": "10.0.0.1/32", "communities": ["64512:200"]},
            {"prefix": "10.0.0.2/32", "communities": ["64512:100"]},
            {"prefix": "10.0.0.3/32", "communities": ["64512:100"]},
        ]}
    )  # fmt: skip
    d = delta_between(base, changed)
    assert d is not None and [a.prefix for a in d.add] == ["10.0.0.1/32"] and d.remove == ()
    # A change to peers, ASN or router id goes as a snapshot; so does a delta as big as one.
    assert delta_between(base, state(*("10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"),
                                     asn=64513)) is None  # fmt: skip
    assert delta_between(base, state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32",
                                     peers=PEERS[:1])) is None  # fmt: skip
    assert delta_between(base, state("10.9.0.1/32")) is None


def test_snapshot_on_connect_then_deltas_then_snapshot_for_a_peer_change() -> None:
    async def scenario(d: Path) -> None:
        sink = RecordingSink()
        server = await serve_control(sink, d / "s.sock")
        metrics = AgentMetrics()
        loop = PushLoop(str(d / "s.sock"), metrics=metrics, status_interval=0.05)
        try:
            async with pushing(loop):
                first = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32")
                loop.offer(first, [asyncio.get_running_loop().time()])
                await wait_for_async(lambda: sink.current == first == loop.acked_state)
                second = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.4/32")
                loop.offer(second)
                await wait_for_async(lambda: sink.current == second == loop.acked_state)
                assert metrics.value("kubgp_agent_pushes_total", {"kind": "snapshot"}) == 1
                assert metrics.value("kubgp_agent_pushes_total", {"kind": "delta"}) == 1
                third = state("10.0.0.1/32", peers=PEERS[:1])
                loop.offer(third)
                await wait_for_async(lambda: sink.current == third == loop.acked_state)
                assert metrics.value("kubgp_agent_pushes_total", {"kind": "snapshot"}) == 2
                # The same state again sends nothing.
                loop.offer(third)
                await asyncio.sleep(0.2)
                assert len(sink.applied) == 3
                assert loop.acked_version == StateVersion(epoch=loop.epoch, generation=3)
                assert metrics.value("kubgp_agent_event_to_ack_seconds_count") == 1
                assert metrics.value("kubgp_agent_push_failures_total", {"reason": "nack"}) == 0
        finally:
            await server.close()

    run(scenario)


def test_waits_for_the_speaker_and_resyncs_with_a_snapshot_when_it_restarts_empty() -> None:
    async def scenario(d: Path) -> None:
        path = d / "s.sock"
        metrics = AgentMetrics()
        loop = PushLoop(str(path), metrics=metrics, status_interval=0.05, backoff_max=0.2)
        async with pushing(loop):
            first = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32")
            loop.offer(first)
            await asyncio.sleep(0.3)  # no speaker yet: the loop keeps trying
            sink = RecordingSink()
            server = await serve_control(sink, path)
            await wait_for_async(lambda: sink.current == first == loop.acked_state)
            await server.close()
            # A speaker that restarts without a saved state says so in its hello: the agent
            # sends a snapshot of what it has, unasked, and a later change can be a delta.
            sink2 = RecordingSink()
            server2 = await serve_control(sink2, path)
            try:
                await wait_for_async(
                    lambda: metrics.value("kubgp_agent_pushes_total", {"kind": "snapshot"}) == 2
                )
                assert sink2.current == first and loop.connections == 2
                second = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.5/32")
                loop.offer(second)
                await wait_for_async(lambda: sink2.current == second == loop.acked_state)
                assert metrics.value("kubgp_agent_pushes_total", {"kind": "delta"}) == 1
            finally:
                await server2.close()

    run(scenario)


def test_a_speaker_that_resumed_our_state_gets_deltas_and_another_epoch_gets_a_snapshot() -> None:
    async def scenario(d: Path) -> None:
        path = d / "s.sock"
        store = StateStore(d / "state")
        server = await serve_control(RecordingSink(), path, state_store=store)
        metrics = AgentMetrics()
        loop = PushLoop(str(path), metrics=metrics, status_interval=0.05, backoff_max=0.2)
        first = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32")
        async with pushing(loop):
            loop.offer(first)
            await wait_for_async(lambda: loop.acked_state == first)
            await server.close()
            # The speaker comes back with our applied state (its hello names our version):
            # nothing to re-send, and the next change is a delta on that base.
            sink = RecordingSink()
            server = await serve_control(sink, path, state_store=store)
            try:
                await wait_for_async(lambda: loop.connections == 2)
                await asyncio.sleep(0.1)
                assert sink.applied == [first]  # resumed from applied.json, nothing pushed
                second = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.6/32")
                loop.offer(second)
                await wait_for_async(lambda: sink.current == second == loop.acked_state)
                assert metrics.value("kubgp_agent_pushes_total", {"kind": "delta"}) == 1
                assert metrics.value("kubgp_agent_pushes_total", {"kind": "snapshot"}) == 1
            finally:
                await server.close()
        # Someone else (another agent process: another epoch) pushed in between: snapshot.
        store.save(AppliedState(version=StateVersion(epoch=1, generation=9), state=first))
        sink = RecordingSink()
        server = await serve_control(sink, path, state_store=store)
        try:
            async with pushing(loop):
                await wait_for_async(lambda: loop.connections == 3)
                third = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.7/32")
                loop.offer(third)
                await wait_for_async(lambda: sink.current == third == loop.acked_state)
                assert metrics.value("kubgp_agent_pushes_total", {"kind": "snapshot"}) == 2
        finally:
            await server.close()

    run(scenario)


def test_a_nack_is_counted_and_followed_by_a_snapshot() -> None:
    async def scenario(d: Path) -> None:
        sink = RecordingSink()
        server: ControlServer = await serve_control(sink, d / "s.sock")
        metrics = AgentMetrics()
        loop = PushLoop(str(d / "s.sock"), metrics=metrics, status_interval=0.05,
                        backoff_initial=0.01)  # fmt: skip
        try:
            async with pushing(loop):
                first = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32")
                loop.offer(first)
                await wait_for_async(lambda: sink.current == first == loop.acked_state)
                sink.fail = "netlink said no"  # the next apply fails: nack, nothing applied
                second = state("10.0.0.1/32", "10.0.0.2/32", "10.0.0.8/32")
                loop.offer(second, [0.0])
                await wait_for_async(lambda: sink.current == second == loop.acked_state)
                assert metrics.value("kubgp_agent_push_failures_total", {"reason": "nack"}) == 1
                # The delta was refused; the retry is a snapshot.
                assert metrics.value("kubgp_agent_pushes_total", {"kind": "snapshot"}) == 2
                assert metrics.value("kubgp_agent_pushes_total", {"kind": "delta"}) == 0
                # The event's latency is counted once, when its state was finally acked.
                assert metrics.value("kubgp_agent_event_to_ack_seconds_count") == 1
        finally:
            await server.close()

    run(scenario)


def test_status_reads_are_reported_only_for_our_applied_state() -> None:
    async def scenario(d: Path) -> None:
        sink = RecordingSink()
        server = await serve_control(sink, d / "s.sock")
        seen: list[tuple[DesiredState | None, StateVersion | None, int]] = []
        loop = PushLoop(
            str(d / "s.sock"),
            metrics=AgentMetrics(),
            status_interval=0.05,
            on_status=lambda s, v, peers, fib: seen.append((s, v, len(peers))),
        )
        try:
            async with pushing(loop):
                await asyncio.sleep(0.2)
                assert seen == []  # nothing of ours is applied yet
                first = state("10.0.0.1/32")
                loop.offer(first)
                await wait_for_async(lambda: len(seen) >= 3)
                assert all(s == first and v == loop.acked_version and n == 2
                           for s, v, n in seen)  # fmt: skip
        finally:
            await server.close()

    run(scenario)


def test_a_state_pushed_by_someone_else_is_overwritten_at_the_next_status_read() -> None:
    async def scenario(d: Path) -> None:
        sink = RecordingSink()
        server = await serve_control(sink, d / "s.sock")
        metrics = AgentMetrics()
        loop = PushLoop(str(d / "s.sock"), metrics=metrics, status_interval=0.05)
        try:
            async with pushing(loop):
                ours = state("10.0.0.1/32")
                loop.offer(ours)
                await wait_for_async(lambda: sink.current == ours == loop.acked_state)
                other = await SpeakerClient.connect(d / "s.sock")
                async with other:
                    theirs = state("10.9.9.9/32")
                    await other.snapshot(theirs, epoch=1, generation=1)
                await wait_for_async(
                    lambda: metrics.value("kubgp_agent_pushes_total", {"kind": "snapshot"}) == 2
                )
                assert sink.current == ours and len(sink.applied) == 3
        finally:
            await server.close()

    run(scenario)
