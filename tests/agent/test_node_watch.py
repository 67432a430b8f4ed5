"""The node agent fed by the real kopf (controller.kube.node_watch) from the emulated API
server, pushing to the real control server: the first state it pushes is the whole cluster,
and a password Secret it may not read costs that peer its session, not the node its plan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest

from controller.agent.node_agent import NodeAgent, unreadable_detail
from controller.agent.node_status import NodeStatusReporter
from controller.agent.push import PushLoop
from controller.controller_metrics import AgentMetrics
from controller.domain.reasons import ObjectRef, ReasonCode
from controller.kube import node_watch
from controller.kube.client import api_client, kopf_login
from controller.kube.user_agent import NODE_AGENT
from speaker.control import serve_control
from testing.kube.emulator import KubeAPI
from testing.wait import wait_for_async
from tests.controller import manifests as m
from tests.speaker.control.helpers import RecordingSink, socket_dir

SECRETS = "kubgp"
REF = {"namespace": SECRETS, "key": "password"}


@contextlib.asynccontextmanager
async def running_agent(
    kube_api: KubeAPI, **options: Any
) -> AsyncIterator[tuple[NodeAgent, RecordingSink]]:
    """The agent for node n1 with its kopf glue, as `kubgp-controller node` runs it."""
    with socket_dir() as d:
        sink = RecordingSink()
        server = await serve_control(sink, d / "s.sock")
        metrics = AgentMetrics()
        client = api_client(NODE_AGENT, kubeconfig=str(kube_api.kubeconfig))
        peer_uids = node_watch.PeerUids()
        writer = node_watch.KubeNodeStateWriter(client, node_name="n1", peer_uids=peer_uids)
        reporter = NodeStatusReporter(node_name="n1", writer=writer, metrics=metrics,
                                      min_interval=0.1)  # fmt: skip
        push = PushLoop(str(d / "s.sock"), metrics=metrics, status_interval=0.1,
                        on_status=lambda state, applied, peers, fib: reporter.observe(
                            state=state, applied=applied, peers=peers))  # fmt: skip
        agent = NodeAgent(node_name="n1", push=push, metrics=metrics, reporter=reporter,
                          secrets=node_watch.KubeSecretSource(client), **options)  # fmt: skip
        stop = asyncio.Event()
        sweeper = node_watch.Sweeper(client, agent)
        task = asyncio.create_task(
            node_watch.run_operator(
                agent, peer_uids, login=kopf_login(client), sweeper=sweeper, stop=stop
            )
        )
        try:
            yield agent, sink
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=30)
            await server.close()
            client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def kubeconfig(kube_api: KubeAPI) -> Path:
    logging.getLogger("kopf").setLevel(logging.WARNING)
    return kube_api.kubeconfig


def kopf_list(request: kmock.Request) -> bool:
    """A LIST (not a watch) made by kopf."""
    agent = request.headers.get("User-Agent", "")
    return agent.startswith("kopf/") and request.params.get("watch") not in ("true", "1")


def prefixes(sink: RecordingSink, index: int = -1) -> set[str]:
    return {a.prefix for a in sink.applied[index].advertisements}


@pytest.mark.slow  # the real kopf against the emulated API server
def test_the_first_state_pushed_is_the_whole_cluster(kube_api: KubeAPI, kubeconfig: Path) -> None:
    kube_api.apply(m.node())
    kube_api.apply(m.peer())
    kube_api.apply(m.advertisement(podCIDRs=True, serviceAddresses=["LoadBalancerIP"]))
    services = 150
    for i in range(services):
        kube_api.apply(m.service(f"s{i}", lb_ips=(f"203.0.113.{i + 1}",)))
    expected = {"10.244.1.0/24"} | {f"203.0.113.{i + 1}/32" for i in range(services)}
    # kopf's own LIST of Services fails a few times (it retries after a backoff), so the
    # agent has everything else long before kopf delivers the Services.
    kube_api.handler["get /api/v1/services"][kopf_list][:3] << 500

    async def main() -> None:
        async with running_agent(kube_api) as (agent, sink):
            await wait_for_async(lambda: sink.applied, "the first push", timeout=60)
            # Never a partial state: the first state is the whole cluster, not what kopf had
            # delivered by the time some handler ran.
            assert prefixes(sink, 0) == expected
            assert agent.plans >= 1
            # A change after that is planned and pushed as usual.
            kube_api.apply(m.service("late", lb_ips=("198.51.100.7",)))
            await wait_for_async(lambda: "198.51.100.7/32" in prefixes(sink), "the late Service")

    asyncio.run(main())
    # The agent listed every kind itself (names only) to know when kopf had delivered them.
    listed = {
        r.url.path
        for r in kube_api.requests
        if r.method.value.upper() == "GET"
        and "watch" not in r.params
        and r.headers.get("User-Agent", "").startswith("kubgp-node-agent/")
    }
    assert "/api/v1/services" in listed and "/apis/kubgp.io/v1alpha1/bgppeers" in listed


@pytest.mark.slow  # the real kopf against the emulated API server
def test_an_unreadable_peer_secret_costs_that_peer_its_session_not_the_node_its_plan(
    kube_api: KubeAPI, kubeconfig: Path
) -> None:
    kube_api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SECRETS}})
    kube_api.apply(m.node())
    kube_api.apply(m.peer("tor-a"))
    kube_api.apply(m.peer("tor-b", peerAddress="192.0.2.2",
                          passwordSecretRef={**REF, "name": "tor-b-password"}))  # fmt: skip
    kube_api.apply(m.peer("tor-c", peerAddress="192.0.2.3",
                          passwordSecretRef={**REF, "name": "tor-c-password"}))  # fmt: skip
    kube_api.apply(m.advertisement(podCIDRs=True))
    kube_api.apply(m.secret("tor-b-password", SECRETS, password="b-secret"))
    kube_api.apply(m.secret("tor-c-password", SECRETS, password="c-secret"))
    # The chart's RBAC does not list tor-b's Secret: every GET is 403 at first. tor-c's GETs
    # fail with 500 a few times (an API hiccup): that holds the plan back, as before.
    secret_path = f"get /api/v1/namespaces/{SECRETS}/secrets"
    kube_api.handler[f"{secret_path}/tor-b-password"][:3] << 403
    kube_api.handler[f"{secret_path}/tor-c-password"][:2] << 500

    async def main() -> None:
        async with running_agent(kube_api, secret_refresh=0.3) as (agent, sink):
            await wait_for_async(lambda: sink.applied, "the first push", timeout=60)
            first = sink.applied[0]
            # tor-a and tor-c (with its password, after the 500s) got sessions; tor-b none.
            assert [(p.name, p.password) for p in first.peers] == [
                ("tor-a", None), ("tor-c", "c-secret")
            ]  # fmt: skip
            assert prefixes(sink, 0) == {"10.244.1.0/24"}
            detail = unreadable_detail(SECRETS, "tor-b-password")
            assert any(
                r.code is ReasonCode.PeerSecretMissing
                and r.ref == ObjectRef("BGPPeer", "", "tor-b")
                and r.detail == detail
                for r in agent._reasons
            ), agent._reasons
            # Once the Secret is readable (the RBAC was fixed), the next refresh brings the
            # peer in, with its password.
            await wait_for_async(
                lambda: [p.name for p in sink.applied[-1].peers] == ["tor-a", "tor-b", "tor-c"],
                "tor-b's session once its Secret is readable",
            )
            assert sink.applied[-1].peers[1].password == "b-secret"

    asyncio.run(main())
    # The node told the BGPPeer, once, why it has no session there.
    events = [
        e
        for e in kube_api.objects("Event", "default")
        if e.get("involvedObject", {}).get("name") == "tor-b"
    ]
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "PeerSecretUnreadable")]
    assert unreadable_detail(SECRETS, "tor-b-password") in events[0]["message"]
    assert "n1" in events[0]["message"]


class ScriptedListing(node_watch.InitialListing):
    """InitialListing whose LISTs return what the test says (one list per call)."""

    def __init__(self, agent: NodeAgent, lists: list[list[ObjectRef]]) -> None:
        super().__init__(client=None, agent=agent, stall=0.3)
        self.script = lists

    async def _list(self, watched: node_watch.Watched) -> list[ObjectRef]:
        listed = self.script[min(self.lists, len(self.script) - 1)]
        return [ref for ref in listed if ref.kind == watched.kind]


def test_the_agent_is_listed_once_the_watches_delivered_everything_a_list_saw() -> None:
    a, b, gone = (ObjectRef("Service", "default", n) for n in ("a", "b", "gone"))

    async def main() -> None:
        with socket_dir() as d:
            metrics = AgentMetrics()
            agent = NodeAgent(node_name="n1", metrics=metrics,
                              push=PushLoop(str(d / "none.sock"), metrics=metrics))  # fmt: skip
            # The first LIST saw an object the watches will never deliver (deleted after that
            # LIST, before kopf's own): when nothing arrives for `stall`, it lists again.
            listing = ScriptedListing(agent, [[a, b, gone], [a, b]])
            task = asyncio.create_task(listing.run())
            agent.upsert(m.service("a"))
            await asyncio.sleep(0.1)
            assert not agent.synced  # b is still to come
            agent.upsert(m.service("b"))
            await wait_for_async(lambda: agent.synced, "the agent listed", timeout=10)
            assert listing.lists == 2
            await task

    asyncio.run(main())
