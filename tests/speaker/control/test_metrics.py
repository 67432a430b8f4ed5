"""`kubgp-speaker run --metrics-address`: the metrics scraped over HTTP after a known scenario,
with a real speaker process and real BIRD peers (one good, one that refuses our AS)."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from speaker.api.client import SpeakerClient, new_epoch
from speaker.api.schema import parse_desired_state
from testing.procs import SpeakerProcess
from testing.routers.lab import Lab
from testing.routers.model import PeerSpec
from testing.wait import wait_for

pytestmark = pytest.mark.lab

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _peer(name: str, address: str, me: str) -> dict[str, object]:
    return {"name": name, "address": address, "asn": 65000, "sourceAddress": me,
            "holdTime": 9, "connectRetryTime": 1, "ebgpMultihop": 255}  # fmt: skip


def test_metrics_after_a_known_scenario(
    lab: Lab, speaker_factory: Callable[..., SpeakerProcess], tmp_path: Path
) -> None:
    me = lab.address()
    good = lab.bird(asn=65000)
    good.peers["node"] = PeerSpec(name="node", address=me, asn=64512, hold_time=9)
    bad = lab.bird(asn=65000)  # expects AS 64999: refuses our OPEN with Bad Peer AS
    bad.peers["node"] = PeerSpec(name="node", address=me, asn=64999, hold_time=9, passive=True)
    good.start()
    bad.start()
    sock = tmp_path / "speaker.sock"
    url = f"http://{me}:9473/metrics"
    spk = speaker_factory()
    spk.start(None, "--socket", str(sock), "--metrics-address", f"{me}:9473")
    spk.wait_file(sock)
    epoch = new_epoch()
    prefixes = ["10.244.1.0/24", "198.51.100.7/32", "198.51.100.8/32"]

    def state(peers: list[dict[str, object]]) -> object:
        return parse_desired_state(
            {
                "routerId": "192.0.2.11",
                "asn": 64512,
                "peers": peers,
                "advertisements": [{"prefix": p} for p in prefixes],
            }
        )

    async def push(generation: int, peers: list[dict[str, object]]) -> None:
        async with await SpeakerClient.connect(sock, timeout=10) as agent:
            await agent.snapshot(state(peers), epoch=epoch, generation=generation)  # type: ignore[arg-type]

    asyncio.run(push(1, [_peer("good", good.address, me), _peer("bad", bad.address, me)]))
    good.wait_routes("node", lambda rs: len(rs) == 3)

    bad_as = {"peer": "bad", "code": "OPENMessageError", "subcode": "BadPeerAS"}
    refused = ("kubgp_bgp_notifications_received_total", tuple(sorted(bad_as.items())))
    m = wait_for(
        lambda: _scrape(url),
        "bad's NOTIFICATION counted",
        done=lambda m: m.get(refused, 0) >= 1,
        interval=0.2,
    )

    assert _value(m, "kubgp_bgp_session_up", peer="good", address=good.address) == 1
    assert _value(m, "kubgp_bgp_session_up", peer="bad", address=bad.address) == 0
    assert _value(m, "kubgp_bgp_session_state", peer="good", address=good.address,
                  state="Established") == 1  # fmt: skip
    assert _value(m, "kubgp_bgp_prefixes_advertised", peer="good", family="ipv4-unicast") == 3
    assert _value(m, "kubgp_bgp_prefixes_received", peer="good", family="ipv4-unicast") == 0
    assert _value(m, "kubgp_bgp_messages_sent_total", peer="good", type="OPEN") == 1
    assert _value(m, "kubgp_bgp_messages_sent_total", peer="good", type="UPDATE") >= 2
    assert _value(m, "kubgp_bgp_messages_received_total", peer="good", type="KEEPALIVE") >= 1
    assert m[refused] >= 1
    assert _value(m, "kubgp_bgp_session_last_error_info", peer="bad",
                  reason="notification-received") == 1  # fmt: skip
    assert _value(m, "kubgp_bgp_session_flaps_total", peer="good") == 0
    assert _value(m, "kubgp_speaker_applied_generation") == 1
    assert _value(m, "kubgp_speaker_apply_duration_seconds_count") == 1

    # The refusing peer is removed: its label values are gone, the good one's stay.
    asyncio.run(push(2, [_peer("good", good.address, me)]))
    m = _scrape(url)
    assert not [key for key in m if ("peer", "bad") in key[1]]
    assert _value(m, "kubgp_bgp_session_up", peer="good", address=good.address) == 1
    assert _value(m, "kubgp_speaker_applied_generation") == 2
    assert _value(m, "kubgp_speaker_apply_duration_seconds_count") == 2
