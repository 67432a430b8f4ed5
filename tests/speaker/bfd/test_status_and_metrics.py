"""Where BFD shows: the speaker's Prometheus metrics after a known scenario (in one event loop,
on loopback), `kubgp-speaker status`'s table, `kubectl kubgp status`'s table and view, and the
BGPNodeState CRD's schema for it."""

from __future__ import annotations

import asyncio
import datetime
import socket

import pytest

from controller.cli.kubectl_views import status_table, status_view
from speaker.api.ipc import BfdStatus, PeerStatus, StateVersion, Status
from speaker.bfd.packet import ControlPacket, State
from speaker.cli.control_cmd import format_status_table
from speaker.speaker_metrics import SpeakerMetrics
from testing.kube.crd_schema import admit
from testing.routers.lab import loopback_address
from testing.wait import wait_for_async
from tests.speaker.bfd.test_runtime import Pair, _established, _silence, _status, run


@pytest.mark.slow  # real sockets and BFD timers: seconds of waiting
def test_metrics_follow_a_bfd_down_and_up(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = Pair(loopback_address(), loopback_address())

    async def body() -> None:
        registry = SpeakerMetrics(pair.a).registry

        def value(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, labels)

        try:
            await pair.start()
            assert pair.responder is not None
            address = pair.b_addr
            await wait_for_async(lambda: value("kubgp_bfd_session_up", peer="b",
                                               address=address) == 1.0, "BFD Up")  # fmt: skip
            assert value("kubgp_bfd_session_state", peer="b", address=address, state="Up") == 1.0
            assert value("kubgp_bfd_session_state", peer="b", address=address, state="Init") == 0
            assert value("kubgp_bfd_bgp_held", peer="b") == 0.0
            # Both directions leave the slow (1 s) timers once each Poll has its Final.
            await wait_for_async(
                lambda: (
                    value("kubgp_bfd_tx_interval_seconds", peer="b") == 0.2
                    and value("kubgp_bfd_detection_time_seconds", peer="b") == pytest.approx(0.6)
                ),
                "fast timers both ways",
            )
            with monkeypatch.context() as m:
                _silence(m, pair.responder, "a")
                await wait_for_async(lambda: value("kubgp_bfd_bgp_held", peer="b") == 1.0, "held")
                assert value("kubgp_bfd_session_flaps_total", peer="b") == 1.0
                diag = "control-detection-time-expired"
                assert value("kubgp_bfd_last_diagnostic_info", peer="b", diagnostic=diag) == 1.0
                assert value("kubgp_bgp_session_last_error_info", peer="b",
                             reason="bfd-down") == 1.0  # fmt: skip
            await wait_for_async(lambda: _established(pair.a, "b"), "Established")
            assert pair.a.bfd is not None
            session = pair.a.bfd.session("b")
            assert session is not None and session.sent > 3 and session.received > 3
            assert value("kubgp_bfd_packets_sent_total", peer="b") == session.sent
            assert value("kubgp_bfd_packets_received_total", peer="b") == session.received
            # Every timer that fired is in the lateness histogram.
            count = value("kubgp_bfd_timer_lateness_seconds_count") or 0
            inf = value("kubgp_bfd_timer_lateness_seconds_bucket", le="+Inf")
            assert count == pair.a.bfd.lateness.count > 0 and inf == count
            worst = value("kubgp_bfd_timer_lateness_max_seconds")
            assert worst == pair.a.bfd.lateness.max and worst is not None and worst >= 0
            # A stray packet from an address with no session is counted as dropped.
            await _stray(pair.a_addr)
            await wait_for_async(lambda: (value("kubgp_bfd_packets_dropped_total",
                                                reason="no-session") or 0) >= 1,
                                 "dropped")  # fmt: skip
            assert _status(pair.a, "b").bfd is not None
        finally:
            await pair.close()

    run(body)


async def _stray(to: str) -> None:
    packet = ControlPacket(state=State.Down, detect_mult=3, my_discriminator=5,
                           your_discriminator=0, desired_min_tx=1, required_min_rx=1)  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        s.bind((loopback_address(), 0))
        s.sendto(packet.encode(), (to, 3784))
    await asyncio.sleep(0)


STATUS = Status(
    peers=(
        PeerStatus(name="tor-a", address="192.0.2.1", state="Established", since=0.0,
                   bfd=BfdStatus(state="Up", flaps=2)),
        PeerStatus(name="tor-b", address="192.0.2.2", state="Idle", last_error="sent x",
                   bfd=BfdStatus(state="Down", last_diagnostic="control-detection-time-expired",
                                 bgp_held=True)),
        PeerStatus(name="tor-c", address="192.0.2.3", state="Active"),
    ),
    applied=StateVersion(epoch=1, generation=2),
)  # fmt: skip


def test_speaker_status_table_has_a_bfd_column_only_with_bfd() -> None:
    lines = format_status_table(STATUS).splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "STATE", "SINCE", "ADVERTISED", "RECEIVED",
                                "BFD", "LAST", "ERROR"]  # fmt: skip
    assert lines[1].split()[6] == "Up"
    assert lines[2].split()[6:] == ["Down(control-detection-time-expired),bgp-held", "sent", "x"]
    assert lines[3].split()[6] == "-"
    without = Status(peers=STATUS.peers[2:], applied=None)
    assert "BFD" not in format_status_table(without).splitlines()[0]


def test_kubectl_status_shows_bfd_from_the_node_states() -> None:
    node_state = {
        "metadata": {"name": "n1"},
        "status": {"peers": [
            {"name": "tor-a", "address": "192.0.2.1", "state": "Idle",
             "bfd": {"state": "Down", "flaps": 1, "bgpHeld": True,
                     "lastDiagnostic": "neighbor-signaled-session-down"}},
            {"name": "tor-b", "address": "192.0.2.2", "state": "Established"},
        ]},
    }  # fmt: skip
    view = status_view([node_state], [{"metadata": {"name": "n1"}}])
    assert view["nodes"][0]["peers"][0]["bfd"]["bgpHeld"] is True
    assert "bfd" not in view["nodes"][0]["peers"][1]
    now = datetime.datetime.now(tz=datetime.UTC)
    lines = status_table(view, now).splitlines()
    assert lines[0].split()[7] == "BFD"
    assert lines[1].split()[7] == "Down(neighbor-signaled-session-down),bgp-held"
    assert lines[2].split()[7] == "-"
    plain = status_view([{"metadata": {"name": "n1"}, "status": {"peers": [
        {"name": "tor-b", "address": "192.0.2.2", "state": "Established"}]}}], [])  # fmt: skip
    assert "BFD" not in status_table(plain, now).splitlines()[0]


@pytest.mark.parametrize(
    ("bfd", "error"),
    [
        ({"state": "Up", "flaps": 0, "bgpHeld": False}, None),
        ({"state": "Down", "lastDiagnostic": "control-detection-time-expired"}, None),
        ({"state": "Established"}, "must be one of"),
        ({"flaps": 1}, "required"),
        ({"state": "Down", "lastDiagnostic": "x" * 257}, "longer than 256"),
        ({"state": "Up", "echo": True}, "unknown field"),
    ],
)
def test_node_state_crd_takes_bfd(bfd: dict[str, object], error: str | None) -> None:
    obj = {"apiVersion": "kubgp.io/v1alpha1", "kind": "BGPNodeState", "metadata": {"name": "n1"},
           "status": {"peers": [{"name": "tor-a", "state": "Idle", "bfd": bfd}]}}  # fmt: skip
    errors = admit("bgpnodestates.yaml", obj)
    if error is None:
        assert errors == []
    else:
        assert any(error in e for e in errors), errors
