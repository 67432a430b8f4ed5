"""controller.agent.node_agent: feeding, coalescing and planning, pushed through a real
PushLoop to the real control server (RecordingSink behind it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from controller.agent.node_agent import NodeAgent, coalesce_deadline
from controller.agent.push import PushLoop
from controller.controller_metrics import AgentMetrics
from controller.domain.reasons import ObjectRef
from controller.domain.snapshot import parse
from speaker.control import serve_control
from testing.wait import wait_for_async
from tests.controller import manifests as m
from tests.speaker.control.helpers import RecordingSink, socket_dir


class FakeSecrets:
    """SecretSource: `secrets[(ns, name)]`; `errors` GETs fail first (an API outage)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.errors = 0
        self.gets = 0

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets += 1
        if self.errors:
            self.errors -= 1
            raise RuntimeError("503")
        return self.secrets.get((namespace, name))


@contextlib.asynccontextmanager
async def agent_with_speaker(
    *, quiet: float = 0.05, max_delay: float = 0.5, **options: Any
) -> AsyncIterator[tuple[NodeAgent, RecordingSink, AgentMetrics]]:
    with socket_dir() as d:
        sink = RecordingSink()
        server = await serve_control(sink, d / "s.sock")
        metrics = AgentMetrics()
        push = PushLoop(str(d / "s.sock"), metrics=metrics, status_interval=0.05)
        agent = NodeAgent(node_name="n1", push=push, metrics=metrics, quiet=quiet,
                          max_delay=max_delay, **options)  # fmt: skip
        task = asyncio.create_task(agent.run())
        try:
            yield agent, sink, metrics
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await server.close()


def prefixes(sink: RecordingSink) -> list[str]:
    assert sink.current is not None
    return [a.prefix for a in sink.current.advertisements]


def test_coalesce_deadline_is_quiet_after_the_last_change_but_bounded() -> None:
    assert coalesce_deadline(10.0, 10.0, quiet=0.25, max_delay=0.5) == 10.25
    assert coalesce_deadline(10.0, 10.125, quiet=0.25, max_delay=0.5) == 10.375
    assert coalesce_deadline(10.0, 10.375, quiet=0.25, max_delay=0.5) == 10.5


def test_nothing_is_planned_or_pushed_before_the_initial_listing_is_complete() -> None:
    async def main() -> None:
        async with agent_with_speaker() as (agent, sink, metrics):
            agent.upsert(m.node(), live=False)
            agent.upsert(m.peer(), live=False)
            await asyncio.sleep(0.2)
            assert agent.plans == 0 and sink.applied == []
            agent.resync([m.node(), m.peer(), m.advertisement(podCIDRs=True)])
            await wait_for_async(lambda: sink.current is not None)
            assert prefixes(sink) == ["10.244.1.0/24"]
            # Initial listings do not count as events for the event -> ack latency.
            assert metrics.value("kubgp_agent_event_to_ack_seconds_count") == 0
            assert metrics.value("kubgp_agent_plan_duration_seconds_count") == 1

    asyncio.run(main())


def test_a_burst_of_changes_is_planned_and_pushed_once() -> None:
    async def main() -> None:
        async with agent_with_speaker(quiet=0.1, max_delay=2.0) as (agent, sink, metrics):
            ad = m.advertisement(podCIDRs=True, serviceAddresses=["LoadBalancerIP"])
            agent.resync([m.node(), m.peer(), ad])
            await wait_for_async(lambda: sink.current is not None)
            for i in range(50):
                agent.upsert(m.service(f"s{i}", lb_ips=(f"203.0.113.{i + 1}",)))
            await wait_for_async(lambda: sink.current is not None and len(prefixes(sink)) == 51)
            await asyncio.sleep(0.2)
            assert agent.plans == 2 and len(sink.applied) == 2
            assert metrics.value("kubgp_agent_event_to_ack_seconds_count") == 50
            # Deleting objects plans too; a change that is nothing to this node pushes nothing.
            for i in range(50):
                agent.delete(m.service(f"s{i}"))
            await wait_for_async(lambda: prefixes(sink) == ["10.244.1.0/24"])
            agent.upsert(m.node("n2", ip="192.0.2.12"))
            await wait_for_async(lambda: agent.plans == 4)
            await asyncio.sleep(0.1)
            assert len(sink.applied) == 3

    asyncio.run(main())


def test_a_steady_stream_of_changes_is_planned_at_least_every_max_delay() -> None:
    async def main() -> None:
        async with agent_with_speaker(quiet=0.05, max_delay=0.15) as (agent, sink, _):
            ad = m.advertisement(podCIDRs=True, serviceAddresses=["LoadBalancerIP"])
            agent.resync([m.node(), m.peer(), ad])
            await wait_for_async(lambda: sink.current is not None)
            loop = asyncio.get_running_loop()
            start = loop.time()
            i = 0
            while loop.time() - start < 0.8:  # a change every 10 ms: never quiet for 50 ms
                i += 1
                agent.upsert(m.service("web", lb_ips=(f"203.0.113.{i % 250 + 1}",)))
                await asyncio.sleep(0.01)
            # Without the bound there would be no plan until the stream stops.
            assert 4 <= agent.plans - 1 <= 8, agent.plans
            await wait_for_async(lambda: f"203.0.113.{i % 250 + 1}/32" in prefixes(sink))

    asyncio.run(main())


def test_a_node_without_valid_state_sends_nothing() -> None:
    async def main() -> None:
        async with agent_with_speaker() as (agent, sink, _):
            agent.resync([m.node(), m.peer(), m.advertisement(podCIDRs=True)])
            await wait_for_async(lambda: sink.current is not None)
            # A broken ASN annotation: no state; the speaker keeps the last one.
            agent.upsert(m.node(annotations={"kubgp.io/asn": "not-a-number"}))
            await wait_for_async(lambda: agent.plans == 2)
            await asyncio.sleep(0.1)
            assert len(sink.applied) == 1
            agent.upsert(m.node(pod_cidrs=("10.244.9.0/24",)))
            await wait_for_async(
                lambda: sink.current is not None and prefixes(sink) == ["10.244.9.0/24"]
            )

    asyncio.run(main())


def test_referenced_secrets_are_read_before_the_first_plan_and_refreshed() -> None:
    source = FakeSecrets()
    source.secrets[("kubgp", "bgp-auth")] = m.secret(password="s3cret")
    source.errors = 2  # the API fails first: the plan waits rather than drop the peer

    async def main() -> None:
        async with agent_with_speaker(secrets=source, secret_refresh=0.1) as (agent, sink, _):
            ref = {"namespace": "kubgp", "name": "bgp-auth", "key": "password"}
            agent.resync([m.node(), m.peer(passwordSecretRef=ref)])
            await wait_for_async(lambda: sink.current is not None)
            assert sink.applied[0].peers[0].password == "s3cret"
            source.secrets[("kubgp", "bgp-auth")] = m.secret(password="rotated")
            await wait_for_async(lambda: sink.current is not None and
                        sink.current.peers[0].password == "rotated")  # fmt: skip
            # Deleted: the peer goes (never a session without its password).
            del source.secrets[("kubgp", "bgp-auth")]
            await wait_for_async(lambda: sink.current is not None and sink.current.peers == ())
            # A peer pointing at a Secret that does not exist has no session from the start.
            agent.upsert(m.peer("tor-b", passwordSecretRef={**ref, "name": "nope"}))
            await asyncio.sleep(0.3)
            assert sink.current is not None and sink.current.peers == ()

    asyncio.run(main())


def test_sweep_forgets_only_what_a_listing_missed_and_nothing_fed_since() -> None:
    async def main() -> None:
        async with agent_with_speaker() as (agent, sink, _):
            ad = m.advertisement(podCIDRs=True, serviceAddresses=["LoadBalancerIP"])
            agent.resync([m.node(), m.peer(), ad, m.service("a", lb_ips=("203.0.113.1",))])
            await wait_for_async(lambda: sink.current is not None)
            assert not agent.was_fed(m.service("a"))
            agent.upsert(m.service("b", lb_ips=("203.0.113.2",)))
            await wait_for_async(lambda: len(prefixes(sink)) == 3)
            assert agent.was_fed(m.service("b"))
            since = agent.now()
            agent.upsert(m.service("c", lb_ips=("203.0.113.3",)))  # after the LIST began
            # The LIST returned only b: a vanished unseen; c is newer than the LIST.
            listed = [ObjectRef("Service", "default", "b")]
            assert agent.sweep("Service", listed, listed_since=since) == 1
            await wait_for_async(lambda: prefixes(sink) == ["10.244.1.0/24", "203.0.113.2/32",
                                                  "203.0.113.3/32"])  # fmt: skip
            assert agent.known("Service") == {
                ObjectRef("Service", "default", "b"), ObjectRef("Service", "default", "c"),
            }  # fmt: skip
            assert agent.sweep("Service", listed, listed_since=since) == 0
            assert agent.sweep("BGPPeer", [], listed_since=agent.now()) == 1

    asyncio.run(main())


def test_what_was_fed_before_the_listing_completed_is_planned_once_it_has() -> None:
    async def main() -> None:
        async with agent_with_speaker() as (agent, sink, metrics):
            ad = m.advertisement(podCIDRs=True, serviceAddresses=["LoadBalancerIP"])
            for obj in (
                m.node(),
                m.peer(),
                ad,
                m.service("a"),
                m.service("b", lb_ips=("203.0.113.2",)),
            ):
                agent.upsert(obj)
            agent.delete(m.service("a"))
            assert agent.was_listed(ObjectRef("Service", "default", "a"))  # deleted: fed too
            assert not agent.was_listed(ObjectRef("Service", "default", "c"))
            await asyncio.sleep(0.2)
            assert agent.plans == 0 and sink.applied == []
            agent.listed()
            await wait_for_async(lambda: sink.current is not None)
            assert prefixes(sink) == ["10.244.1.0/24", "203.0.113.2/32"]
            # Events fed while it was listing are no latency to measure.
            assert metrics.value("kubgp_agent_event_to_ack_seconds_count") == 0

    asyncio.run(main())


def test_an_object_fed_again_unchanged_is_no_change() -> None:
    async def main() -> None:
        async with agent_with_speaker() as (agent, sink, _):
            ad = m.advertisement(podCIDRs=True, serviceAddresses=["LoadBalancerIP"])
            agent.resync([m.node(), m.peer(), ad, m.service("a")])
            await wait_for_async(lambda: sink.current is not None and agent.plans == 1)
            # kopf delivers the listing again (after a 410, or its own initial listing after
            # the agent's): equal objects wake nothing.
            for obj in (m.node(), m.peer(), ad, m.service("a")):
                agent.upsert(parse(obj), live=False)
            await asyncio.sleep(0.3)
            assert agent.plans == 1
            agent.upsert(m.service("a", lb_ips=("203.0.113.9",)))
            await wait_for_async(lambda: prefixes(sink) == ["10.244.1.0/24", "203.0.113.9/32"])

    asyncio.run(main())
