"""The node agent's /readyz and /livez: the readiness rule (pure), the agent's facts feeding it
against the real control server, and the HTTP endpoint through a real HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest

from controller.agent.health import LiveReason, ReadyReason, readiness
from controller.agent.node_agent import NodeAgent
from controller.agent.push import PushLoop
from controller.controller_metrics import AgentMetrics
from controller.health_endpoint import Health, HealthServer
from speaker.control import serve_control
from testing.wait import wait_for_async
from tests.controller import manifests as m
from tests.speaker.control.helpers import RecordingSink, socket_dir


@pytest.mark.parametrize(
    ("facts", "ok", "reason"),
    [
        ((False, 0, False, False), False, ReadyReason.NotListed),
        ((True, 0, False, False), False, ReadyReason.NotPlanned),
        ((True, 1, True, False), False, ReadyReason.NotAcked),
        ((True, 1, True, True), True, ReadyReason.Acked),
        ((True, 1, False, False), True, ReadyReason.NothingToSend),
        # A state acked, the latest plan had none to offer: the speaker runs ours.
        ((True, 2, False, True), True, ReadyReason.Acked),
    ],
)
def test_readiness_rule(facts: tuple[bool, int, bool, bool], ok: bool, reason: ReadyReason) -> None:
    synced, plans, offered, acked = facts
    health = readiness(synced=synced, plans=plans, offered=offered, acked=acked)
    assert (health.ok, health.reason) == (ok, reason)


@contextlib.asynccontextmanager
async def agent_without_speaker() -> AsyncIterator[tuple[NodeAgent, str]]:
    """An agent whose speaker socket has nobody listening yet (start one at the path)."""
    with socket_dir() as d:
        metrics = AgentMetrics()
        path = str(d / "s.sock")
        push = PushLoop(path, metrics=metrics, status_interval=0.05, backoff_max=0.05)
        agent = NodeAgent(node_name="n1", push=push, metrics=metrics, quiet=0.01)
        task = asyncio.create_task(agent.run())
        try:
            yield agent, path
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_ready_only_after_the_speaker_acked_the_first_state_and_then_stays_ready() -> None:
    async def main() -> None:
        async with agent_without_speaker() as (agent, path):
            await wait_for_async(lambda: agent.liveness().ok)
            assert agent.readiness().reason == ReadyReason.NotListed
            agent.upsert(m.node(), live=False)  # initial listing in progress: not synced
            await asyncio.sleep(0.05)
            assert agent.readiness().reason == ReadyReason.NotListed
            agent.resync([m.node(), m.peer(), m.advertisement(podCIDRs=True)])
            await wait_for_async(lambda: agent.plans == 1)
            await asyncio.sleep(0.2)  # the push loop keeps failing to connect
            assert agent.readiness() == Health(
                False, ReadyReason.NotAcked, "waiting for the speaker to acknowledge"
            )
            sink = RecordingSink()
            server = await serve_control(sink, path)
            try:
                await wait_for_async(lambda: agent.readiness().ok)
                assert sink.current is not None  # ready means the speaker has it
                assert agent.readiness().reason == ReadyReason.Acked
            finally:
                await server.close()
            # The speaker gone and a change it cannot get: still ready (latched).
            agent.upsert(m.node(pod_cidrs=("10.244.9.0/24",)))
            await wait_for_async(lambda: agent.plans == 2)
            assert agent.readiness().reason == ReadyReason.Acked

    asyncio.run(main())


def test_ready_without_a_speaker_when_there_is_no_state_to_send() -> None:
    async def main() -> None:
        async with agent_without_speaker() as (agent, _):
            broken = m.node(annotations={"kubgp.io/asn": "not-a-number"})
            agent.resync([broken, m.peer(), m.advertisement(podCIDRs=True)])
            await wait_for_async(lambda: agent.plans == 1)
            assert agent.readiness().reason == ReadyReason.NothingToSend
            assert agent.readiness().ok
            # The node fixed, a state the speaker (absent) cannot ack: ready stays latched.
            agent.upsert(m.node())
            await wait_for_async(lambda: agent.plans == 2)
            assert readiness(synced=True, plans=2, offered=True, acked=False).ok is False
            assert agent.readiness().reason == ReadyReason.NothingToSend

    asyncio.run(main())


def get(url: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as rsp:
            return rsp.status, rsp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_the_http_endpoint_answers_from_the_agent_loop() -> None:
    async def main() -> None:
        async with agent_without_speaker() as (agent, path):
            server = HealthServer(ready=agent.readiness, live=agent.liveness)
            host, port = await server.start("127.0.0.1:0")
            base = f"http://{host}:{port}"
            try:
                await wait_for_async(lambda: agent.liveness().ok)
                assert await asyncio.to_thread(get, f"{base}/livez") == (200, "Running\n")
                assert await asyncio.to_thread(get, f"{base}/readyz") == (
                    503, "NotListed: waiting for the initial listings\n",
                )  # fmt: skip
                agent.resync([m.node(), m.peer(), m.advertisement(podCIDRs=True)])
                speaker = await serve_control(RecordingSink(), path)
                try:
                    await wait_for_async(lambda: agent.readiness().ok)
                finally:
                    await speaker.close()
                status, body = await asyncio.to_thread(get, f"{base}/readyz?verbose")
                assert (status, body.split(":")[0]) == (200, "Acked")
                assert await asyncio.to_thread(get, f"{base}/readyz", "HEAD") == (200, "")
                assert (await asyncio.to_thread(get, f"{base}/metrics"))[0] == 404
                assert (await asyncio.to_thread(get, f"{base}/livez", "POST"))[0] == 405
            finally:
                await server.close()

        # The agent's loops ended: /livez says so.
        assert agent.liveness() == Health(
            False, LiveReason.Stopped, "the agent's loops are not running"
        )

    asyncio.run(main())


def test_a_blocked_event_loop_does_not_answer_livez() -> None:
    """The server runs on the agent's loop: a wedged loop times the probe out."""

    async def main() -> None:
        server = HealthServer(ready=lambda: Health(True, "x"), live=lambda: Health(True, "y"))
        host, port = await server.start("127.0.0.1:0")
        outcome: list[object] = []

        def ask() -> None:
            try:
                outcome.append(get(f"http://{host}:{port}/livez", timeout=0.5))
            except TimeoutError as err:
                outcome.append(err)

        try:
            answered = threading.Thread(target=ask)
            answered.start()
            time.sleep(1.0)  # the loop is blocked: the request is not answered in time
            answered.join(5)
            assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError), outcome
            # The loop runs again: the next probe is answered.
            assert await asyncio.to_thread(get, f"http://{host}:{port}/livez") == (200, "y\n")
        finally:
            await server.close()

    asyncio.run(main())


def test_a_bad_address_is_refused() -> None:
    async def main() -> None:
        server = HealthServer(ready=lambda: Health(True, "x"), live=lambda: Health(True, "y"))
        with pytest.raises(ValueError, match="HOST:PORT"):
            await server.start("127.0.0.1")

    asyncio.run(main())
