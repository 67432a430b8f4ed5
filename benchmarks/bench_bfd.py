"""BFD (issue 17): can an asyncio speaker hold fast BFD timers on a loaded machine, and how fast
does a cut path take the BGP sessions down? Needs root (network namespaces).

1. Hold: our speaker with 20 BFD sessions at 50 ms x 3 (then, in the full form, 100 ms x 3)
   to BIRD (`protocol bfd`, one static neighbor per session: 20 address pairs across
   `testing.routers.wire`), for 60 s each (short form: 50 ms for 5 s) while a CPU hog spins on
   the other core (started, pinned and ended by PID here). Printed: false Downs on our side
   (flaps, from the control socket, split by who noticed: our detection time expired, or
   BIRD's and it told us) and on BIRD's (Up -> Down in its log), the speaker's CPU (user +
   system over the window, % of one core), how late the speaker's event loop ran its BFD
   timers (`kubgp_bfd_timer_lateness_*` from its metrics: buckets, mean, max) and, for
   comparison, how late a bare asyncio loop in this process runs a timer of the same interval
   under the same load.
2. Detection: BIRD as the ToR with BGP + BFD (100 ms x 3), the path cut behind the bridge
   (no carrier change) 20 times (short form: 3): the time from the cut to our BGP session
   leaving Established and to BIRD's going down (both from their logs' millisecond
   timestamps), then restored and waited back up. Printed: min / median / p90 / max.

Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from speaker.api.client import SpeakerError, status_sync
from testing.procs import SpeakerProcess
from testing.routers.lab import Lab
from testing.routers.model import ESTABLISHED, BfdTimers, LabError, PeerSpec
from testing.routers.netns import ip
from testing.routers.wire import Wire
from testing.wait import wait_for

SESSIONS = 20
MULTIPLIER = 3
_TICK = os.sysconf("SC_CLK_TCK")
_BIRD_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
_OUR_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _start_hog() -> subprocess.Popen[bytes]:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(hog.pid, {cpus[-1]})  # "the other core"
    return hog


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _loop_lateness(duration: float, interval: float) -> list[float]:
    """A bare asyncio loop's lateness for a timer every `interval` s (what BFD asks of ours)."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    end = loop.time() + duration
    while loop.time() < end:
        deadline = loop.time() + interval
        done = loop.create_future()
        loop.call_at(deadline, done.set_result, None)
        await done
        late.append(loop.time() - deadline)
    return late


def _metrics(netns: str, url: str) -> dict[str, float]:
    code = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    )
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    values: dict[str, float] = {}
    for line in out.splitlines():
        if line.startswith("kubgp_bfd_timer_lateness"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _bird(netns: str, work: Path, conf: str) -> subprocess.Popen[bytes]:
    (work / "bird.conf").write_text(conf)
    with (work / "bird.log").open("ab") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", netns, "bird", "-f", "-c", str(work / "bird.conf"),
             "-s", str(work / "bird.ctl"), "-P", str(work / "bird.pid")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _birdc(work: Path, *args: str) -> str:
    return subprocess.run(["birdc", "-s", str(work / "bird.ctl"), *args], capture_output=True,
                          text=True, timeout=20, check=False).stdout  # fmt: skip


def hold(short: bool, interval_ms: int) -> None:
    duration = 5.0 if short else 60.0
    wire = Wire().create()
    hog: subprocess.Popen[bytes] | None = None
    bird: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="kubgp-bench-bfd-") as tmp:
        work = Path(tmp)
        spk = SpeakerProcess(work, wire.node.netns)
        try:
            pairs = [(f"192.0.2.{20 + i}", f"192.0.2.{100 + i}") for i in range(1, SESSIONS + 1)]
            for ours, theirs in pairs:
                ip("-n", wire.node.netns, "addr", "add", f"{ours}/24", "dev", "eth0")
                ip("-n", wire.tor.netns, "addr", "add", f"{theirs}/24", "dev", "eth0")
            timers = (f"min rx interval {interval_ms} ms; min tx interval {interval_ms} ms; "
                      f"multiplier {MULTIPLIER};")  # fmt: skip
            conf = ["router id 192.0.2.1;", "log stderr all;", "timeformat protocol iso long;",
                    "debug protocols { states, events };", "protocol device { scan time 10; }",
                    "protocol bfd {", f'  interface "*" {{ {timers} }};',
                    *(f"  neighbor {ours} local {theirs};" for ours, theirs in pairs),
                    "}"]  # fmt: skip
            bird = _bird(wire.tor.netns, work, "\n".join(conf) + "\n")
            bfd = {"minTx": interval_ms, "minRx": interval_ms, "multiplier": MULTIPLIER}
            peers = [{"name": f"tor-{i:02d}", "address": theirs, "asn": 65000, "passive": True,
                      "sourceAddress": ours, "bfd": bfd}
                     for i, (ours, theirs) in enumerate(pairs, 1)]  # fmt: skip
            sock = work / "speaker.sock"
            metrics_url = f"http://{wire.node.ipv4}:9479/metrics"
            spk.start({"routerId": wire.node.ipv4, "asn": 64512, "peers": peers},
                      "--socket", str(sock), "--log-level", "warning",
                      "--metrics-address", f"{wire.node.ipv4}:9479")  # fmt: skip

            def all_up() -> bool:
                try:
                    status = status_sync(sock, timeout=5)
                except (SpeakerError, OSError):
                    return False
                return all(p.bfd is not None and p.bfd.state == "Up" for p in status.peers)

            wait_for(all_up, "20 BFD sessions Up", timeout=60, ignore=(LabError,))
            time.sleep(1.0)  # every Poll Sequence done: the fast rate in force
            hog = _start_hog()
            assert spk.proc is not None
            before = _metrics(wire.node.netns, metrics_url)
            cpu0, t0 = _cpu_seconds(spk.proc.pid), time.monotonic()
            bird_log_at = (work / "bird.log").stat().st_size
            bare = asyncio.run(_loop_lateness(duration, interval_ms / 1000))
            cpu = _cpu_seconds(spk.proc.pid) - cpu0
            wall = time.monotonic() - t0
            after = _metrics(wire.node.netns, metrics_url)
            status = status_sync(sock, timeout=5)
            flaps = sum(p.bfd.flaps for p in status.peers if p.bfd is not None)
            heard = sum(
                p.bfd.flaps
                for p in status.peers
                if p.bfd is not None and p.bfd.last_diagnostic == "neighbor-signaled-session-down"
            )
            not_up = sum(1 for p in status.peers if p.bfd is None or p.bfd.state != "Up")
            bird_log = (work / "bird.log").read_text(errors="replace")[bird_log_at:]
            bird_downs = len(re.findall(r"changed state from Up to Down", bird_log))
        finally:
            if hog is not None:
                _end(hog)
            spk.close()
            if bird is not None:
                _end(bird)
            wire.delete()
    count = (
        after["kubgp_bfd_timer_lateness_seconds_count"]
        - before["kubgp_bfd_timer_lateness_seconds_count"]
    )
    total = (
        after["kubgp_bfd_timer_lateness_seconds_sum"]
        - before["kubgp_bfd_timer_lateness_seconds_sum"]
    )
    buckets = {
        key.split('le="')[1].rstrip('"}'): after[key] - before.get(key, 0.0)
        for key in after
        if key.startswith("kubgp_bfd_timer_lateness_seconds_bucket")
    }
    shares = ", ".join(
        f"<={le}s {100 * n / count:.1f}%" for le, n in buckets.items() if le != "+Inf" and count
    )
    print(f"hold: {SESSIONS} sessions at {interval_ms} ms x {MULTIPLIER} for {wall:.0f} s, "
          f"CPU hog on the other core")  # fmt: skip
    print(f"  false Downs: ours {flaps} ({flaps - heard} by our detection time, {heard} signalled"
          f" by BIRD; sessions not Up at the end: {not_up}), BIRD's {bird_downs}")  # fmt: skip
    print(f"  speaker CPU: {cpu:.2f} s = {100 * cpu / wall:.1f}% of one core "
          f"({SESSIONS * 1000 // interval_ms} packets/s each way)")  # fmt: skip
    if count:
        worst = 1000 * after["kubgp_bfd_timer_lateness_max_seconds"]
        mean = 1000 * total / count
        print(f"  speaker's BFD timers: {count:.0f} fired, mean lateness {mean:.2f} ms, "
              f"max since start {worst:.1f} ms; {shares}")  # fmt: skip
    print(f"  bare asyncio loop, {interval_ms} ms timer, same load: median "
          f"{1000 * statistics.median(bare):.2f} ms late, p99 {1000 * _percentile(bare, 0.99):.2f}"
          f" ms, max {1000 * max(bare):.1f} ms over {len(bare)} timers")  # fmt: skip


def _log_times(text: str, pattern: str, regex: re.Pattern[str], fmt: str) -> list[float]:
    out = []
    for line in text.splitlines():
        if pattern in line:
            match = regex.match(line)
            if match:
                when = datetime.datetime.strptime(match.group(1).replace(",", "."), fmt)
                out.append(when.timestamp())
    return out


def _first_after(get: Callable[[], list[float]], after: float, timeout: float) -> float:
    found = wait_for(lambda: next((t for t in get() if t >= after), None), "a log line",
                     timeout=timeout, interval=0.02, ignore=(LabError,))  # fmt: skip
    return float(found)


def detection(short: bool) -> None:
    tries = 3 if short else 20
    wire = Wire().create()
    lab = Lab()
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kubgp-bench-bfd-") as tmp:
        work = Path(tmp)
        spk = SpeakerProcess(work, wire.node.netns)
        try:
            tor = lab.bird(asn=65000, address=wire.tor.ipv4, router_id=wire.tor.ipv4,
                           netns=wire.tor.netns)  # fmt: skip
            timers = BfdTimers(min_tx=100, min_rx=100, multiplier=3)
            tor.peers["node"] = PeerSpec(name="node", address=wire.node.ipv4, asn=64512,
                                         hold_time=9, multihop=1, bfd=timers)  # fmt: skip
            tor.start()
            sock = work / "speaker.sock"
            bfd = {"minTx": 100, "minRx": 100, "multiplier": 3}
            peer = {"name": "tor", "address": wire.tor.ipv4, "asn": 65000, "holdTime": 9,
                    "connectRetryTime": 1, "bfd": bfd}  # fmt: skip
            spk.start({"routerId": wire.node.ipv4, "asn": 64512,
                       "listen": {"address": wire.node.ipv4, "port": 179}, "peers": [peer]},
                      "--socket", str(sock))  # fmt: skip

            def up() -> bool:
                try:
                    (p,) = status_sync(sock, timeout=5).peers
                except (SpeakerError, OSError):
                    return False
                return p.state == ESTABLISHED and p.bfd is not None and p.bfd.state == "Up"

            def ours_down() -> list[float]:
                return _log_times(spk.log(), "Established -> Idle", _OUR_TIME,
                                  "%Y-%m-%d %H:%M:%S.%f")  # fmt: skip

            def bird_down() -> list[float]:
                return _log_times(tor.log_path.read_text(errors="replace"),
                                  "node: State changed to stop", _BIRD_TIME,
                                  "%Y-%m-%d %H:%M:%S.%f") + _log_times(
                    tor.log_path.read_text(errors="replace"), "node: State changed to start",
                    _BIRD_TIME, "%Y-%m-%d %H:%M:%S.%f")  # fmt: skip

            for _ in range(tries):
                wait_for(up, "Up and Established", timeout=60, ignore=(LabError,))
                tor.wait_established("node", timeout=60)
                time.sleep(0.5)
                cut = time.time()
                wire.cut()
                ours.append(_first_after(ours_down, cut, 10) - cut)
                theirs.append(_first_after(bird_down, cut, 10) - cut)
                wire.restore()
        finally:
            spk.close()
            lab.close()
            wire.delete()

    def line(values: list[float]) -> str:
        ms = [1000 * v for v in values]
        return (f"min {min(ms):.0f}, median {statistics.median(ms):.0f}, "
                f"p90 {_percentile(ms, 0.9):.0f}, max {max(ms):.0f} ms")  # fmt: skip

    print(f"detection: 100 ms x 3, path cut {tries} times (timestamps in the logs, ms)")
    print(f"  our BGP session down after:   {line(ours)}")
    print(f"  BIRD's BGP session down after: {line(theirs)}")


def run(short: bool) -> None:
    if os.geteuid() != 0:
        print("bench_bfd: skipped, network namespaces need root")
        return
    for interval_ms in (50,) if short else (50, 100):
        hold(short, interval_ms)
    detection(short)
