"""Control socket (issue 6): a 10k-route snapshot, then snapshots with 1% changed.

A real `kubgp-speaker run --socket` process with one BIRD peer on loopback, driven by the real
client. Printed per step: time to ack (the state is in the Adj-RIB-Out), and time until BIRD
shows the change (polled every 5 ms; BIRD answers its CLI between bursts of work, so this is
an upper bound). Also the JSON cost on the client side: encoding the snapshot line and
parsing it back as the speaker does (schema validation included). Printed, never asserted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import statistics
import tempfile
import time
from pathlib import Path

from speaker.api.client import SpeakerClient, new_epoch
from speaker.api.ipc import Snapshot, encode, parse_request
from speaker.api.schema import DesiredState, parse_desired_state
from testing.procs import SpeakerProcess
from testing.routers.bird import Bird
from testing.routers.lab import Lab
from testing.routers.model import LabError, PeerSpec
from testing.wait import wait_for

ASN = 64512
TOR_ASN = 65000


def _hosts(n: int, offset: int = 0) -> list[str]:
    base = int(ipaddress.IPv4Address("10.128.0.0")) + offset
    return [f"{ipaddress.IPv4Address(base + i)}/32" for i in range(n)]


def _state(me: str, tor: str, prefixes: list[str]) -> DesiredState:
    return parse_desired_state({
        "routerId": "192.0.2.11", "asn": ASN,
        "peers": [{"name": "tor", "address": tor, "asn": TOR_ASN, "sourceAddress": me,
                   "ebgpMultihop": 255, "connectRetryTime": 1}],
        "advertisements": [{"prefix": p, "communities": ["64512:100"]} for p in prefixes],
    })  # fmt: skip


def _bird_has(tor: Bird, prefixes: set[str], absent: set[str]) -> bool:
    out = tor.birdc("show", "route", "protocol", tor.protocol("node"), "count")
    match = re.search(r"(\d+) of \d+ routes", out)
    if not match or int(match.group(1)) != len(prefixes):
        return False
    # The count matches: check a changed prefix is there and a removed one is not.
    for prefix in list(prefixes)[:1] + list(absent)[:1]:
        try:
            tor.birdc("show", "route", prefix, "protocol", tor.protocol("node"))
            present = True
        except LabError as exc:  # birdc exits 1 with "Network not found"
            if "Network not found" not in str(exc):
                raise
            present = False
        if present != (prefix in prefixes):
            return False
    return True


def _until(tor: Bird, want: set[str], absent: set[str], timeout: float = 120.0) -> float:
    """Seconds until BIRD has `want` and none of `absent` (polled every 5 ms)."""
    start = time.perf_counter()
    wait_for(lambda: _bird_has(tor, want, absent), "BIRD to converge", timeout, interval=0.005)
    return time.perf_counter() - start


def run(short: bool) -> None:
    n = 1000 if short else 10_000
    rounds = 2 if short else 5
    lab = Lab()
    with tempfile.TemporaryDirectory(prefix="kubgp-bench-control-") as tmp:
        work = Path(tmp)
        proc = SpeakerProcess(work)
        try:
            me = lab.address()
            tor = lab.bird(asn=TOR_ASN)
            tor.peers["node"] = PeerSpec(name="node", address=me, asn=ASN)
            tor.start()
            sock = work / "speaker.sock"
            proc.start(None, "--socket", str(sock), "--log-level", "warning")
            prefixes = _hosts(n)
            first = _state(me, tor.address, prefixes)

            line = encode(Snapshot(epoch=1, generation=1, state=first))
            t = time.perf_counter()
            encode(Snapshot(epoch=1, generation=1, state=first))
            encode_s = time.perf_counter() - t
            t = time.perf_counter()
            parse_request(line, max_line=len(line) + 1)
            parse_s = time.perf_counter() - t
            print(
                f"snapshot line: {len(line):,} bytes for {n:,} routes; encode "
                f"{encode_s * 1e3:.1f} ms, parse+validate {parse_s * 1e3:.1f} ms"
            )

            async def drive() -> None:
                epoch = new_epoch()
                async with await SpeakerClient.connect(sock, timeout=30) as agent:
                    t0 = time.perf_counter()
                    await agent.snapshot(first, epoch=epoch, generation=1)
                    ack = time.perf_counter() - t0
                    tor.wait_established("node", timeout=30)
                    at_bird = _until(tor, set(prefixes), set()) + ack
                    print(f"first snapshot ({n:,} routes): ack {ack * 1e3:.1f} ms; "
                          f"all at BIRD within {at_bird * 1e3:.0f} ms of sending")  # fmt: skip
                    current = list(prefixes)
                    acks: list[float] = []
                    arrivals: list[float] = []
                    step = max(n // 100, 1)
                    for r in range(rounds):
                        removed = set(current[r * step : (r + 1) * step])
                        added = _hosts(step, offset=n + r * step)
                        current = [p for p in current if p not in removed] + added
                        state = _state(me, tor.address, current)
                        t0 = time.perf_counter()
                        await agent.snapshot(state, epoch=epoch, generation=2 + r)
                        acks.append(time.perf_counter() - t0)
                        arrivals.append(_until(tor, set(current), removed) + acks[-1])
                    print(f"snapshots with 1% changed ({step} out, {step} in), {rounds} rounds: "
                          f"ack median {statistics.median(acks) * 1e3:.1f} ms, "
                          f"at BIRD median {statistics.median(arrivals) * 1e3:.0f} ms")  # fmt: skip
                    # The same change as a delta (what the node agent sends for small changes).
                    acks.clear()
                    arrivals.clear()
                    generation = 1 + rounds
                    for r in range(rounds):
                        gone = current[:step]
                        new = _hosts(step, offset=n + (rounds + r) * step)
                        current = current[step:] + new
                        add = _state(me, tor.address, new).advertisements
                        t0 = time.perf_counter()
                        await agent.delta(epoch=epoch, generation=generation + 1,
                                          base=generation, add=add, remove=tuple(gone))  # fmt: skip
                        generation += 1
                        acks.append(time.perf_counter() - t0)
                        arrivals.append(_until(tor, set(current), set(gone)) + acks[-1])
                    print(f"deltas with 1% changed, {rounds} rounds: "
                          f"ack median {statistics.median(acks) * 1e3:.1f} ms, "
                          f"at BIRD median {statistics.median(arrivals) * 1e3:.0f} ms")  # fmt: skip

            asyncio.run(drive())
        finally:
            proc.close()
            lab.close()
