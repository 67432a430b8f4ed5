"""controller.agent.node_status: the BGPNodeState document, what counts as a change, the rate
limit, and which session transitions become Events — with an in-memory KubeWriter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from controller.agent.node_status import (
    EventType,
    NodeStatusReporter,
    SessionEvent,
    SessionReason,
    build_status,
    rfc3339,
    session_events,
)
from controller.controller_metrics import AgentMetrics
from controller.domain.node_peering import NodeSessions
from controller.domain.planner import NodePlanner
from controller.domain.snapshot import Snapshot
from speaker.api.client import BfdStatus, FibSummary, PeerStatus, RouteNote, StateVersion
from speaker.api.schema import parse_desired_state
from testing.kube.crd_schema import admit
from testing.wait import wait_for_async
from tests.controller.manifests import RR_SELECTOR, cluster_nodes, node_peering
from tests.speaker.control.helpers import STATE_DOC

STATE = parse_desired_state(STATE_DOC)
V1 = StateVersion(epoch=7, generation=1)
T0 = 1_700_000_000.0


def peer(name: str, state: str, since: float = T0, **kw: Any) -> PeerStatus:
    return PeerStatus(name=name, address=f"127.0.0.{len(name)}", state=state, since=since, **kw)


class MemoryWriter:
    def __init__(self, stored: Mapping[str, Any] | None = None) -> None:
        self.stored = stored
        self.writes: list[Mapping[str, Any]] = []
        self.events: list[SessionEvent] = []
        self.fail_writes = 0
        self.fail_events = 0

    async def read_node_state(self) -> Mapping[str, Any] | None:
        return self.stored

    async def write_node_state(self, status: Mapping[str, Any]) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise RuntimeError("503 Service Unavailable")
        self.writes.append(status)
        self.stored = status

    async def post_event(self, event: SessionEvent) -> None:
        if self.fail_events:
            self.fail_events -= 1
            raise RuntimeError("503 Service Unavailable")
        self.events.append(event)


def run_reporter(
    writer: MemoryWriter,
    scenario: Callable[[NodeStatusReporter], Awaitable[None]],
    **options: Any,
) -> None:
    async def main() -> None:
        reporter = NodeStatusReporter(
            node_name="n1", writer=writer, metrics=AgentMetrics(), **options
        )
        task = asyncio.create_task(reporter.run())
        try:
            await wait_for_async(lambda: reporter.written is not None or writer.stored is None)
            await asyncio.sleep(0.01)  # let load() finish
            await asyncio.wait_for(scenario(reporter), 20)
        finally:
            task.cancel()

    asyncio.run(main())


def test_build_status_carries_route_import_counts_and_a_bounded_route_summary() -> None:
    fib = FibSummary(
        state="on", table=254, protocol=179, metric=20, max_paths=8, selected=3, installed=2,
        failed=1, not_installed=(RouteNote(prefix="198.51.100.0/24", text="x" * 600),),
        installed_sample=(RouteNote(prefix="0.0.0.0/0", text="via 192.0.2.2, 192.0.2.3"),),
    )  # fmt: skip
    peers = [peer("tor-a", "Established", prefixes_received=4, prefixes_accepted=3,
                  prefixes_best=2, prefixes_installed=2), peer("tor-b", "Idle")]  # fmt: skip
    doc = build_status(state=STATE, applied=V1, peers=peers, fib=fib)
    a, b = doc["peers"]
    assert (a["prefixesAccepted"], a["prefixesBest"], a["prefixesInstalled"]) == (3, 2, 2)
    assert "prefixesAccepted" not in b  # a speaker without route import sends none
    assert doc["routes"] == {
        "state": "on", "table": 254, "protocol": 179, "metric": 20, "maxPaths": 8,
        "selected": 3, "installed": 2, "failed": 1,
        "notInstalled": [{"prefix": "198.51.100.0/24", "reason": "x" * 512}],
        "installedRoutes": [{"prefix": "0.0.0.0/0", "via": "192.0.2.2, 192.0.2.3"}],
    }  # fmt: skip
    node_state = {"apiVersion": "kubgp.io/v1alpha1", "kind": "BGPNodeState",
                  "metadata": {"name": "n1"}, "status": doc}  # fmt: skip
    assert admit("bgpnodestates.yaml", node_state) == []
    off = build_status(state=STATE, applied=V1, peers=peers, fib=FibSummary(state="off"))
    assert off["routes"]["state"] == "off" and "table" not in off["routes"]
    assert "routes" not in build_status(state=STATE, applied=V1, peers=peers)


def test_build_status_fills_every_field_and_keeps_a_wobbling_since() -> None:
    peers = [
        peer("tor-b", "Active", since=T0 + 5, last_error="x" * 2000),
        peer("tor-a", "Established", prefixes_advertised=2, prefixes_received=1),
    ]
    doc = build_status(state=STATE, applied=V1, peers=peers)
    assert doc == {
        "routerId": "192.0.2.11",
        "asn": 64512,
        "advertisedPrefixes": 2,
        "appliedEpoch": 7,
        "appliedGeneration": 1,
        "configuredPeers": 2,
        "establishedPeers": 1,
        "peers": [
            {"name": "tor-a", "address": "127.0.0.5", "state": "Established",
             "since": rfc3339(T0), "prefixesAdvertised": 2, "prefixesReceived": 1},
            {"name": "tor-b", "address": "127.0.0.5", "state": "Active",
             "since": rfc3339(T0 + 5), "prefixesAdvertised": 0, "prefixesReceived": 0,
             "lastError": "x" * 1024},
        ],
    }  # fmt: skip
    # The speaker's `since` is now - age: it moves a little between reads, across a second
    # boundary too. Within the tolerance it is the same state; a real change is not.
    again = build_status(state=STATE, applied=V1, previous=doc,
                         peers=[peer("tor-b", "Active", since=T0 + 5.9, last_error="x" * 2000),
                                peer("tor-a", "Established", since=T0 + 0.999,
                                     prefixes_advertised=2, prefixes_received=1)])  # fmt: skip
    assert again == doc
    moved = build_status(state=STATE, applied=V1, previous=doc, peers=[peer("tor-a", "Idle")])
    assert moved["peers"][0]["since"] == rfc3339(T0) and moved["establishedPeers"] == 0


def test_session_events_up_down_flap_and_gone() -> None:
    def doc(*peers: PeerStatus) -> dict[str, Any]:
        return build_status(state=STATE, applied=V1, peers=peers)

    up = doc(peer("tor-a", "Established"))
    events = session_events("n1", None, up)
    assert [(e.peer, e.type, e.reason) for e in events] == [
        ("tor-a", EventType.Normal, SessionReason.SessionEstablished)
    ]
    assert "node n1" in events[0].message and "127.0.0.5" in events[0].message
    assert session_events("n1", up, up) == []
    assert session_events("n1", doc(peer("tor-a", "Active")), doc(peer("tor-a", "Connect"))) == []

    down = doc(peer("tor-a", "Idle", since=T0 + 10, last_error="hold timer expired"))
    [event] = session_events("n1", up, down)
    assert event.reason is SessionReason.SessionDown and event.type is EventType.Warning
    assert event.message.endswith("went down: hold timer expired")

    flapped = doc(peer("tor-a", "Established", since=T0 + 60))
    flap = session_events("n1", up, flapped)
    assert [e.reason for e in flap] == [
        SessionReason.SessionDown, SessionReason.SessionEstablished,
    ]  # fmt: skip
    assert f"re-established at {rfc3339(T0 + 60)}" in flap[0].message

    # Gone from the speaker: reported while its BGPPeer exists, not after it was deleted.
    gone = doc()
    [event] = session_events("n1", up, gone, configured=lambda name: True)
    assert "no longer configured" in event.message
    assert session_events("n1", up, gone, configured=lambda name: False) == []


def test_bfd_in_the_node_state_and_its_events() -> None:
    def doc(state: str, flaps: int = 0, **kw: Any) -> dict[str, Any]:
        bfd = BfdStatus(state=state, since=T0 + flaps, flaps=flaps, **kw)
        return build_status(state=STATE, applied=V1, peers=[peer("tor-a", "Established",
                                                                 bfd=bfd)])  # fmt: skip

    assert "bfd" not in build_status(state=STATE, applied=V1, peers=[peer("a", "Idle")])["peers"][0]
    up = doc("Up")
    assert up["peers"][0]["bfd"] == {"state": "Up", "flaps": 0, "bgpHeld": False}
    assert doc("Up", 3) == doc("Up", 3)  # no `since`: nothing wobbles
    long = doc("Down", 1, last_diagnostic="d" * 400, bgp_held=True)["peers"][0]["bfd"]
    assert long == {"state": "Down", "flaps": 1, "bgpHeld": True, "lastDiagnostic": "d" * 256}

    first = session_events("n1", None, up)
    assert [e.reason for e in first] == [SessionReason.BfdUp, SessionReason.SessionEstablished]
    down = doc("Down", 1, last_diagnostic="control-detection-time-expired", bgp_held=True)
    [event] = session_events("n1", up, down)
    assert (event.reason, event.type) == (SessionReason.BfdDown, EventType.Warning)
    assert event.message == (
        "BFD session from node n1 to 127.0.0.5 went down: control-detection-time-expired; "
        "BGP is held down until BFD is Up again"
    )
    # Down and Up again between two reads: the flap count says so.
    flap = session_events("n1", up, doc("Up", 1))
    assert [e.reason for e in flap] == [SessionReason.BfdDown, SessionReason.BfdUp]
    assert session_events("n1", up, doc("Init")) != []
    assert session_events("n1", doc("Down"), doc("Init")) == []


def test_writes_only_on_change_and_at_most_once_per_interval() -> None:
    writer = MemoryWriter()

    async def scenario(reporter: NodeStatusReporter) -> None:
        reporter.observe(state=STATE, applied=V1, peers=[peer("tor-a", "Active")])
        await wait_for_async(lambda: len(writer.writes) == 1)  # the first write is immediate
        for _ in range(20):  # a quiet speaker: nothing to write
            reporter.observe(state=STATE, applied=V1, peers=[peer("tor-a", "Active")])
            await asyncio.sleep(0.005)
        assert len(writer.writes) == 1
        # Changes within the interval fold into one write of the latest document.
        reporter.observe(state=STATE, applied=V1, peers=[peer("tor-a", "Connect")])
        reporter.observe(state=STATE, applied=V1, peers=[peer("tor-a", "OpenSent")])
        reporter.observe(state=STATE, applied=V1, peers=[peer("tor-a", "Established")])
        await wait_for_async(lambda: len(writer.writes) == 2)
        await asyncio.sleep(0.1)
        assert len(writer.writes) == 2
        assert writer.writes[1]["peers"][0]["state"] == "Established"
        assert writer.writes[1]["establishedPeers"] == 1
        assert [e.reason for e in writer.events] == [SessionReason.SessionEstablished]

    run_reporter(writer, scenario, min_interval=0.3)


def test_a_restarted_agent_neither_rewrites_nor_reannounces() -> None:
    stored = build_status(state=STATE, applied=V1, peers=[peer("tor-a", "Established")])
    writer = MemoryWriter(stored)

    async def scenario(reporter: NodeStatusReporter) -> None:
        await wait_for_async(lambda: reporter.written == stored)
        reporter.observe(state=STATE, applied=V1,
                         peers=[peer("tor-a", "Established", since=T0 + 0.5)])  # fmt: skip
        await asyncio.sleep(0.2)
        assert writer.writes == [] and writer.events == []
        # A new epoch is a change worth one write, still no Event.
        reporter.observe(state=STATE, applied=StateVersion(epoch=8, generation=1),
                         peers=[peer("tor-a", "Established")])  # fmt: skip
        await wait_for_async(lambda: len(writer.writes) == 1)
        assert writer.writes[0]["appliedEpoch"] == 8 and writer.events == []

    run_reporter(writer, scenario, min_interval=0.05)


def test_failed_writes_and_events_are_retried() -> None:
    writer = MemoryWriter()
    writer.fail_writes = 2
    writer.fail_events = 1

    async def scenario(reporter: NodeStatusReporter) -> None:
        reporter.observe(state=STATE, applied=V1, peers=[peer("tor-a", "Established")])
        await wait_for_async(lambda: len(writer.writes) == 1 and len(writer.events) == 1)
        assert writer.writes[0]["establishedPeers"] == 1

    run_reporter(writer, scenario, min_interval=0.01, retry_interval=0.05)


def test_node_agent_fib_flags_become_the_states_fib_or_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from controller.cli.kubgp_controller import build_parser
    from controller.cli.node_cmd import fib_settings
    from speaker.api.schema import Fib

    def settings(*flags: str) -> Fib | None:
        return fib_settings(build_parser().parse_args(["node", "--node-name", "n1", *flags]))

    assert settings() is None
    assert settings("--fib") == Fib()
    assert settings("--fib", "--fib-table=1000", "--fib-max-paths=2") == Fib(
        table=1000, max_paths=2
    )
    with pytest.raises(SystemExit) as exit_:
        settings("--fib", "--fib-table=255")
    assert exit_.value.code == 2
    assert "--fib-table: table 255 is the kernel's local table" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        settings("--fib", "--fib-protocol=3")
    assert "--fib-protocol: must be between 5 and 255" in capsys.readouterr().err


# --- sessions to other nodes (BGPNodePeering) ----------------------------------------------


def _reflector_sessions() -> NodeSessions:
    reflectors = {"nodeSelector": RR_SELECTOR, "clusterId": "192.0.2.250"}
    snapshot = Snapshot.build(
        [*cluster_nodes(3, reflectors=(1, 2)), node_peering("rr", routeReflectors=reflectors)]
    )
    planner = NodePlanner("n1")
    planner.plan(snapshot)
    return planner.node_sessions


def test_node_sessions_carry_the_other_node_and_its_role_and_a_peering_summary() -> None:
    sessions = _reflector_sessions()
    doc = build_status(
        state=STATE,
        applied=V1,
        peers=[peer("node/n2", "Established"), peer("node/n3", "Active"), peer("tor", "Idle")],
        node_sessions=sessions,
    )
    by_name = {p["name"]: p for p in doc["peers"]}
    assert (by_name["node/n2"]["node"], by_name["node/n2"]["role"]) == ("n2", "RouteReflector")
    assert (by_name["node/n3"]["node"], by_name["node/n3"]["role"]) == (
        "n3",
        "RouteReflectorClient",
    )
    assert "node" not in by_name["tor"] and "role" not in by_name["tor"]
    assert doc["nodePeering"] == {
        "name": "rr",
        "mode": "RouteReflection",
        "routeReflector": True,
        "clusterId": "192.0.2.250",
        "sessions": 2,
        "establishedSessions": 1,
    }
    plain = build_status(state=STATE, applied=V1, peers=[peer("tor", "Idle")])
    assert "nodePeering" not in plain


def test_events_about_node_sessions_go_on_the_node_peering() -> None:
    sessions = _reflector_sessions()
    before = build_status(state=STATE, applied=V1, peers=[peer("node/n2", "Active"),
                          peer("tor", "Active")], node_sessions=sessions)  # fmt: skip
    after = build_status(state=STATE, applied=V1, peers=[peer("node/n2", "Established"),
                         peer("tor", "Established")], node_sessions=sessions)  # fmt: skip
    events = {e.peer: e for e in session_events("n1", before, after)}
    assert (events["node/n2"].kind, events["node/n2"].object_name) == ("BGPNodePeering", "rr")
    assert (events["tor"].kind, events["tor"].object_name) == ("BGPPeer", "tor")
    assert all(e.reason is SessionReason.SessionEstablished for e in events.values())


def test_node_session_metrics_and_events_on_the_peering() -> None:
    writer = MemoryWriter()
    metrics = AgentMetrics()

    def count(name: str, role: str) -> float:
        return metrics.value(name, {"role": role})

    async def main() -> None:
        reporter = NodeStatusReporter(node_name="n1", writer=writer, metrics=metrics)
        task = asyncio.create_task(reporter.run())
        try:
            await wait_for_async(lambda: reporter.written is not None or writer.stored is None)
            await asyncio.sleep(0.01)
            reporter.node_sessions = _reflector_sessions()
            peers = [peer("node/n2", "Established"), peer("node/n3", "Active")]
            reporter.observe(state=STATE, applied=V1, peers=peers)
            await wait_for_async(lambda: len(writer.writes) == 1)
            assert count("kubgp_agent_node_sessions", "RouteReflector") == 1
            assert count("kubgp_agent_node_sessions_established", "RouteReflector") == 1
            assert count("kubgp_agent_node_sessions", "RouteReflectorClient") == 1
            assert count("kubgp_agent_node_sessions_established", "RouteReflectorClient") == 0
            assert count("kubgp_agent_node_sessions", "Mesh") == 0
            assert metrics.value("kubgp_agent_route_reflector") == 1
            await wait_for_async(lambda: len(writer.events) == 1)
            (event,) = writer.events
            assert (event.peer, event.kind, event.object_name) == (
                "node/n2",
                "BGPNodePeering",
                "rr",
            )
        finally:
            task.cancel()

    asyncio.run(main())
