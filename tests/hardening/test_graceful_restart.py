"""Graceful restart (RFC 4724) with real BIRD, GoBGP and FRR.

Restarting speaker: kubgp-speaker is killed with SIGKILL while the peer holds 10,001 of its
routes; a thread polls the peer's table the whole time and records every prefix it ever found
missing. The speaker comes back from its state dir (the state an agent pushed over the control
socket), re-establishes with the R bit, sends the table and End-of-RIB: the peer never lost a
route. Then a second kill, and a restart in standalone mode from a file that no longer has one
route: after End-of-RIB the peer has exactly the new set, and only that route ever went away.
In between, a restart from the state dir where the agent's fresh state (one route fewer) comes
after the session is up: End-of-RIB waits for it.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testing.procs import SpeakerProcess
from testing.routers.daemon import RouterDaemon
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, LabError, PeerSpec
from testing.wait import wait_for

pytestmark = pytest.mark.lab

Factory = Callable[..., SpeakerProcess]
LOCAL_ASN = 64512
PEER_ASN = 65020
NH = "192.0.2.10"
ROUTES = 10_000


def _daemon(lab: Lab, kind: str) -> RouterDaemon:
    maker: Callable[..., RouterDaemon] = {"bird": lab.bird, "gobgp": lab.gobgp, "frr": lab.frr}[
        kind
    ]
    return maker(asn=PEER_ASN)


def _hosts(n: int, start: str = "10.120.0.0") -> list[str]:
    base = int(ipaddress.IPv4Address(start))
    return [f"{ipaddress.IPv4Address(base + i)}/32" for i in range(n)]


class TablePoller(threading.Thread):
    """Reads the peer's table from `peer` again and again; remembers what was ever missing, and
    when (wall clock, as in the daemons' logs), to read a failure against those logs."""

    def __init__(self, tor: RouterDaemon, peer: str, expected: set[str]) -> None:
        super().__init__(daemon=True)
        self.tor, self.peer, self.expected = tor, peer, expected
        self.missing: set[str] = set()
        self.gaps: list[str] = []  # "HH:MM:SS.mmm-HH:MM:SS.mmm N missing" per poll that missed
        self.polls = 0
        self.errors = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            began = time.time()
            try:
                got = {r.prefix for r in self.tor.received_routes(self.peer)}
            except LabError:
                self.errors += 1
                continue
            self.polls += 1
            missed = self.expected - got
            if missed:
                self.missing |= missed
                self.gaps.append(f"{_clock(began)}-{_clock(time.time())} {len(missed)} missing")

    def report(self) -> str:
        return f"{len(self.missing)} routes went missing, in polls {self.gaps[:10]}"

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=30)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def _doc(me: str, tor: RouterDaemon, prefixes: list[str]) -> dict[str, object]:
    return {
        "routerId": me,
        "asn": LOCAL_ASN,
        "listen": {"address": me, "port": 179},
        "peers": [
            {
                "name": "tor",
                "address": tor.address,
                "asn": tor.asn,
                "sourceAddress": me,
                "holdTime": 9,
                "connectRetryTime": 1,
                "ebgpMultihop": 255,
                "gracefulRestart": {"enabled": True, "restartTime": 120},
            }
        ],
        "advertisements": [{"prefix": p, "nextHop": NH} for p in prefixes],
    }


@pytest.mark.parametrize("kind", ["bird", "gobgp", "frr"])
def test_kill_9_keeps_every_route_at_the_peer_and_end_of_rib_removes_only_the_dropped(
    lab: Lab, speaker_factory: Factory, kind: str, tmp_path: Path
) -> None:
    me = lab.address()
    tor = _daemon(lab, kind)
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=LOCAL_ASN, hold_time=9,
                                  graceful_restart=True, restart_time=120)  # fmt: skip
    tor.start()
    prefixes = ["10.244.7.0/24", *_hosts(ROUTES)]
    sock, state_dir = tmp_path / "speaker.sock", tmp_path / "state"
    control = ("--socket", str(sock), "--state-dir", str(state_dir))
    sp = speaker_factory()
    sp.start(None, *control)
    sp.wait_log("control socket")
    # The state comes from an "agent" over the control socket, so it is persisted.
    state_file = tmp_path / "desired.json"
    sp.write(_doc(me, tor, prefixes))
    state_file.write_text(sp.config.read_text())
    subprocess.run([sys.executable, "-m", "speaker.cli.kubgp_speaker", "apply",
                    "--socket", str(sock),
                    str(state_file)], check=True, timeout=60)  # fmt: skip
    tor.wait_routes("kubgp", lambda rs: len(rs) == len(prefixes), timeout=60)

    poller = TablePoller(tor, "kubgp", set(prefixes))
    poller.start()
    try:
        # 1. SIGKILL, then a new process from the state dir alone; no agent comes, so
        # End-of-RIB goes out when waiting for one times out.
        sp.signal(signal.SIGKILL)
        assert sp.proc is not None
        sp.proc.wait(timeout=10)
        time.sleep(2)  # the peer sees the connection go and holds our routes as stale
        at = len(sp.log())
        sp.start(None, *control, "--end-of-rib-wait", "3")
        sp.wait_log("resuming the saved state", after=at)
        sp.wait_log("End-of-RIB released (no state from the agent within 3s)", after=at)
        time.sleep(2)  # stale routes not re-sent would be gone now
        assert not poller.missing, poller.report()
        # Back to Established, in the peer's time: GoBGP refuses connections while its FSM sits
        # in Idle after the drop and our retries back off, so it can take a few seconds more.
        # The poller keeps checking meanwhile that no route goes missing.
        wait_for(lambda: tor.session_state("kubgp") == ESTABLISHED,
                 f"{kind}'s session to the restarted speaker Established", 60)  # fmt: skip
        polls_1 = poller.polls
        assert not poller.missing, poller.report()

        # 2. SIGKILL; the new process resumes the saved state, and the agent's fresh state
        # (one route fewer) arrives after Established: End-of-RIB waits for it.
        sp.signal(signal.SIGKILL)
        sp.proc.wait(timeout=10)
        time.sleep(1)
        removed = prefixes[-1]
        at = len(sp.log())
        sp.start(None, *control)
        sp.wait_log("-> Established", after=at)
        time.sleep(1)
        assert "End-of-RIB released" not in sp.log()[at:]
        fresh = [p for p in prefixes if p != removed]
        poller.expected = set(fresh)
        state_file.write_text(json.dumps(_doc(me, tor, fresh)))
        subprocess.run([sys.executable, "-m", "speaker.cli.kubgp_speaker", "apply",
                        "--socket", str(sock),
                        str(state_file)], check=True, timeout=60)  # fmt: skip
        text = sp.wait_log("End-of-RIB released (the agent's state is in)", after=at)
        assert "End-of-RIB sent" in text.split("released (the agent")[1]
        tor.wait_routes("kubgp", lambda rs: len(rs) == len(fresh), timeout=20)
        assert {r.prefix for r in tor.received_routes("kubgp")} == set(fresh)
        prefixes = fresh

        # 3. SIGKILL, then standalone from a file without one of the routes.
        sp.signal(signal.SIGKILL)
        sp.proc.wait(timeout=10)
        time.sleep(2)
        dropped = prefixes[1]
        poller.expected = set(prefixes) - {dropped}
        at = len(sp.log())
        sp.start(_doc(me, tor, [p for p in prefixes if p != dropped]))
        sp.wait_log("-> Established", after=at)
        routes = tor.wait_routes("kubgp", lambda rs: len(rs) == len(prefixes) - 1, timeout=60)
        assert {r.prefix for r in routes} == set(prefixes) - {dropped}
        time.sleep(1)
    finally:
        poller.stop()
    print(f"{kind}: {poller.polls} polls of the peer's table ({polls_1} through the first "
          f"restart), {poller.errors} failed, none missed a route")  # fmt: skip
    assert poller.polls >= 5
    assert not poller.missing, poller.report()
    # We never sent a Cease (the peer may have refused an early reconnect with one).
    assert "sent NOTIFICATION" not in sp.log()
    assert sp.stop() == 0


def test_sigterm_with_restart_intent_keeps_routes_sigint_withdraws(
    lab: Lab, speaker_factory: Factory
) -> None:
    """`--shutdown=graceful-restart`: SIGTERM closes without a NOTIFICATION and BIRD keeps the
    routes as stale; SIGINT is always a deliberate shutdown: Cease, BIRD withdraws them."""
    me = lab.address()
    tor = lab.bird(asn=PEER_ASN)
    tor.peers["kubgp"] = PeerSpec(name="kubgp", address=me, asn=LOCAL_ASN, hold_time=9,
                                  graceful_restart=True, restart_time=120)  # fmt: skip
    tor.start()
    prefixes = _hosts(100, "10.121.0.0")
    sp = speaker_factory()
    sp.start(_doc(me, tor, prefixes), "--shutdown", "graceful-restart")
    tor.wait_routes("kubgp", lambda rs: len(rs) == 100)
    assert sp.stop() == 0  # SIGTERM
    assert "closing for a graceful restart" in sp.log() and "NOTIFICATION" not in sp.log()
    time.sleep(3)
    assert tor.session_state("kubgp") != ESTABLISHED
    assert len(tor.received_routes("kubgp")) == 100  # stale, still forwarded
    at = len(sp.log())
    sp.start(_doc(me, tor, prefixes), "--shutdown", "graceful-restart")
    sp.wait_log("-> Established", after=at)
    tor.wait_established("kubgp")
    sp.signal(signal.SIGINT)
    assert sp.proc is not None and sp.proc.wait(timeout=10) == 0
    assert "sent NOTIFICATION Cease/AdministrativeShutdown" in sp.log()[at:]
    tor.wait_routes("kubgp", lambda rs: not rs, timeout=10)
