"""Issue 18's table, one run, one harness for kubgp and the real daemons (FRR, BIRD, GoBGP).

Advertise: each sender is started with N IPv4 /32s configured and one peer, the neutral
receiver (`benchmarks.bgp_probe receive`, a separate process), to which it connects. Printed:
process start -> all N at the receiver, Established -> all, and the sender's RSS once all are
there (VmRSS) and its peak (VmHWM). kubgp reads a `--config` file with its advertisements
grouped (`prefixes`, the compact form); FRR reads `network` lines from its config file; BIRD
static routes from its; GoBGP gets an MRT table dump injected once it runs (inside its start ->
all).

Receive: each daemon listens, with the neutral sender (`bgp_probe send`) as a passive peer; the
sender blasts N /32s in 4096-octet UPDATEs right after Established. Printed: Established -> all
N in the daemon's Adj-RIB-In (polled with the daemon's own CLI: birdc, vtysh, gobgp, kubgp's
control socket, every max(5 ms, 5% of the time so far); so the resolution is a poll, max(~5-30
ms, 5%)), the daemon's CPU seconds in
that time, its RSS after.

kubgp alone: a snapshot acked (the real client, first snapshot and one with 1% changed); a
one-route delta on a state of N routes, acked and on the wire (the receiver's clock); a
1,000-route delta; the CPU of an idle speaker with 10 established peers and N routes.

`KUBGP_BENCH_BEFORE=/path/to/an/older/checkout` adds the same rows for that code
("kubgp-before"), run from there with this interpreter (the "before" of docs/performance.md).
Short form (`make bench`): 10k routes, every daemon. Full form: 100k and 1M (GoBGP advertises
100k only; it receives both).
The table is printed side by side, one column per implementation, then kubgp's ratios to FRR and
BIRD. Printed, never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import queue
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from speaker.api.client import SpeakerClient
from speaker.api.schema import Advertisement, parse_desired_state
from testing.routers.bird import Bird
from testing.routers.frr import FRR
from testing.routers.gobgp import GoBGP
from testing.routers.lab import Lab
from testing.routers.model import PeerSpec

PROBE_ASN = 65000
SENDER_ASN = 65001
NEXT_HOP = "192.0.2.77"
_TICK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def hosts(n: int, base: str = "10.128.0.0") -> list[str]:
    start = int(ipaddress.IPv4Address(base))
    return [f"{ipaddress.IPv4Address(start + i)}/32" for i in range(n)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    rss = re.search(r"VmRSS:\s+(\d+) kB", text)
    hwm = re.search(r"VmHWM:\s+(\d+) kB", text)
    return (int(rss.group(1)) * 1024 if rss else 0, int(hwm.group(1)) * 1024 if hwm else 0)


class Probe:
    """A `bgp_probe` process and its JSON events."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bgp_probe", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait(self, event: str, timeout: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {event!r} from the probe")
            try:
                got = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if got["event"] == event:
                return got
            if got["event"] in ("notification", "closed") and event != got["event"]:
                raise RuntimeError(f"probe: {got}")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@contextlib.contextmanager
def receiver(lab: Lab, expect: int, count: int = 1) -> Iterator[tuple[Probe, list[str]]]:
    addresses = [lab.address() for _ in range(count)]
    args = ["receive", "--asn", str(PROBE_ASN), "--expect", str(expect)]
    for a in addresses:
        args += ["--listen", a]
    probe = Probe(*args)
    try:
        probe.wait("listening", 30)
        yield probe, addresses
    finally:
        probe.close()


class Kubgp:
    """kubgp-speaker as a process; `before` runs an older checkout's code."""

    def __init__(self, workdir: Path, before: Path | None) -> None:
        self.workdir = workdir
        self.before = before
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def compact(self) -> bool:
        return self.before is None

    def start(self, *args: str) -> float:
        env = dict(os.environ)
        if self.before is not None:
            env["PYTHONPATH"] = str(self.before)
        log = (self.workdir / "speaker.log").open("ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "speaker.cli.kubgp_speaker", "run", "--log-level", "warning",
             *args],
            stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=self.before if self.before is not None else ROOT,
        )  # fmt: skip
        return started

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def kubgp_config(
    me: str,
    peers: list[dict[str, Any]],
    prefixes: list[str],
    *,
    compact: bool,
    asn: int = SENDER_ASN,
) -> dict[str, Any]:
    advertisements: list[dict[str, Any]]
    if compact:
        advertisements = [{"prefixes": prefixes, "nextHop": NEXT_HOP}] if prefixes else []
    else:
        advertisements = [{"prefix": p, "nextHop": NEXT_HOP} for p in prefixes]
    return {"routerId": "192.0.2.1", "asn": asn, "peers": peers,
            "advertisements": advertisements, "listen": {"address": me, "port": 179}}  # fmt: skip


def probe_peer(name: str, address: str, me: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "address": address, "asn": PROBE_ASN, "sourceAddress": me,
            "connectRetryTime": 1, "ebgpMultihop": 255, **kw}  # fmt: skip


@dataclass
class Advertised:
    start_to_all: float
    established_to_all: float
    rss: int
    peak: int


def _advertised(probe: Probe, started: float, pid: int) -> Advertised:
    est = probe.wait("established", 300)
    done = probe.wait("all", 600)
    rss, peak = memory(pid)
    return Advertised(done["t"] - started, done["t"] - est["t"], rss, peak)


def advertise_kubgp(lab: Lab, work: Path, n: int, before: Path | None) -> Advertised:
    with receiver(lab, n) as (probe, (address,)):
        me = lab.address()
        speaker = Kubgp(work, before)
        config = work / "speaker.json"
        doc = kubgp_config(me, [probe_peer("rx", address, me)], hosts(n),
                           compact=speaker.compact)  # fmt: skip
        config.write_text(json.dumps(doc))
        try:
            started = speaker.start("--config", str(config))
            return _advertised(probe, started, speaker.pid)
        finally:
            speaker.close()


def advertise_bird(lab: Lab, n: int) -> Advertised:
    with receiver(lab, n) as (probe, (address,)):
        sender = lab.bird(asn=SENDER_ASN)
        for prefix in hosts(n):
            sender.originate(prefix, next_hop=NEXT_HOP)
        sender.peers["rx"] = PeerSpec(name="rx", address=address, asn=PROBE_ASN)
        return _run_daemon(sender, probe, timeout=600)


def advertise_frr(lab: Lab, n: int) -> Advertised:
    with receiver(lab, n) as (probe, (address,)):
        sender = lab.frr(asn=SENDER_ASN)
        sender.peers["rx"] = PeerSpec(name="rx", address=address, asn=PROBE_ASN)
        sender._write_config()
        conf = Path(sender.config_path)
        text = conf.read_text()
        marker = " address-family ipv4 unicast\n"
        networks = "".join(f"  network {p}\n" for p in hosts(n))
        text = text.replace(marker, marker + networks, 1)
        # The lab's export policy passes only what its own `network ... route-map` tagged: a
        # bare `network` line is the plain FRR sender, so the probe's neighbor has no out-map.
        export = f"  neighbor {address} route-map lab-export out\n"
        if export not in text:
            raise RuntimeError(f"the FRR fixture's config changed: no {export.strip()!r}")
        conf.write_text(text.replace(export, "", 1))
        sender._write_config = lambda: None  # type: ignore[method-assign]  # keep the networks
        return _run_daemon(sender, probe, timeout=600)


def advertise_gobgp(lab: Lab, work: Path, n: int) -> Advertised:
    from benchmarks.bench_sessions import _mrt_dump

    with receiver(lab, n) as (probe, (address,)):
        sender = lab.gobgp(asn=SENDER_ASN)
        sender.peers["rx"] = PeerSpec(name="rx", address=address, asn=PROBE_ASN)
        dump = work / "table.mrt"
        _mrt_dump(dump, hosts(n), sender.address)
        return _run_daemon(
            sender, probe, timeout=120,
            after=lambda: sender.gobgp("mrt", "inject", "global", str(dump)),
        )  # fmt: skip


def _run_daemon(
    sender: Bird | FRR | GoBGP,
    probe: Probe,
    *,
    timeout: float,
    after: Callable[[], object] | None = None,
) -> Advertised:
    sender._write_config()
    # The config is written: from here on it is the daemon's own start-up.
    sender._write_config = lambda: None  # type: ignore[method-assign]
    started = time.monotonic()
    sender.start(timeout=timeout)
    if after is not None:
        after()
    assert sender.pid is not None
    return _advertised(probe, started, sender.pid)


@dataclass
class Received:
    seconds: float
    cpu: float
    rss: int


def _poll_until(count: Callable[[], int], n: int, timeout: float = 300.0) -> float:
    """When `count()` first reached n. Polled every 5 ms, or every 5% of the time so far once
    that is longer (the same rule for every daemon): a CLI polled back to back competes with
    the daemon it asks (GoBGP took 5.0 s for 100k polled every 5 ms, 1.9 s every 250 ms), so
    the resolution is max(5 ms, 5%) of the figure."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        got = count()
        now = time.monotonic()
        if got >= n:
            return now
        if now > deadline:
            raise TimeoutError(f"{got} of {n} received")
        time.sleep(max(0.005, 0.05 * (now - start)))


def _blast(target: str, me: str, n: int, pid: int, count: Callable[[], int]) -> Received:
    sender = Probe("send", "--connect", target, "--source", me, "--asn", str(SENDER_ASN),
                   "--count", str(n))  # fmt: skip
    try:
        est = sender.wait("established", 120)
        cpu0 = cpu_seconds(pid)

        def counted() -> int:  # the session dropped: say so now, not at the timeout
            while not sender.events.empty():
                event = sender.events.get()
                if event["event"] in ("closed", "notification"):
                    raise RuntimeError(f"the sender's session ended: {event}")
            return count()

        done = _poll_until(counted, n, timeout=30 + n / 2000)  # a stuck count fails soon
        cpu = cpu_seconds(pid) - cpu0
        rss, _ = memory(pid)
        return Received(done - est["t"], cpu, rss)
    finally:
        sender.close()


class StatusReader:
    """kubgp's control socket, one connection, status after status (for polling)."""

    def __init__(self, path: Path) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile("rb")
        self.file.readline()  # hello

    def received(self) -> int:
        self.sock.sendall(b'{"type":"status"}\n')
        doc = json.loads(self.file.readline())
        return sum(p["prefixesReceived"] for p in doc.get("peers", []))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def receive_kubgp(lab: Lab, work: Path, n: int, before: Path | None) -> Received:
    me, sender = lab.address(), lab.address()
    speaker = Kubgp(work, before)
    config = work / "receiver.json"
    doc = kubgp_config(
        me,
        [
            {
                "name": "tx",
                "address": sender,
                "asn": SENDER_ASN,
                "passive": True,
                "ebgpMultihop": 255,
            }
        ],
        [],
        compact=True,
        asn=PROBE_ASN,
    )  # fmt: skip  (the probe's AS_PATH holds SENDER_ASN)
    config.write_text(json.dumps(doc))
    sock = work / "rx.sock"
    try:
        speaker.start("--config", str(config), "--socket", str(sock))
        status = StatusReader(sock)
        try:
            return _blast(me, sender, n, speaker.pid, status.received)
        finally:
            status.close()
    finally:
        speaker.close()


def receive_daemon(lab: Lab, kind: str, n: int) -> Received:
    sender = lab.address()
    spec = PeerSpec(name="tx", address=sender, asn=SENDER_ASN, passive=True)
    daemon: Bird | FRR | GoBGP
    if kind == "bird":
        daemon = bird = lab.bird(asn=PROBE_ASN)
        bird.peers["tx"] = spec
        bird.start()
        proto = bird.protocol("tx")

        def count() -> int:
            out = bird.birdc("show", "route", "protocol", proto, "count")
            found = re.search(r"(\d+) of \d+ routes", out)
            return int(found.group(1)) if found else 0

    elif kind == "frr":
        daemon = frr = lab.frr(asn=PROBE_ASN)
        frr.peers["tx"] = spec
        frr.start()

        def count() -> int:
            doc = json.loads(frr.vtysh("show bgp ipv4 unicast summary json"))
            return int(doc.get("peers", {}).get(sender, {}).get("pfxRcd", 0))

    else:
        daemon = gobgp = lab.gobgp(asn=PROBE_ASN)
        gobgp.peers["tx"] = spec
        gobgp.start()

        def count() -> int:
            doc = json.loads(gobgp.gobgp("neighbor", sender, "-j"))
            for state in doc.get("afi_safis", []):
                received = state.get("state", {}).get("received")
                if received is not None:
                    return int(received)
            return 0

    assert daemon.pid is not None
    return _blast(daemon.address, sender, n, daemon.pid, count)


@dataclass
class ControlFigures:
    snapshot_ack: float
    snapshot_1pct_ack: float
    delta_ack: list[float]
    delta_wire: list[float]
    big_delta_ack: float
    big_delta_wire: float


def control_kubgp(lab: Lab, work: Path, n: int, before: Path | None) -> ControlFigures:
    """A speaker under an agent (`--socket`, `--state-dir`): snapshot of n routes, one with 1%
    changed, one-route deltas (ack, and the UPDATE at the receiver), a 1,000-route delta."""
    with receiver(lab, n) as (probe, (address,)):
        me = lab.address()
        speaker = Kubgp(work, before)
        sock = work / "control.sock"
        try:
            speaker.start("--socket", str(sock), "--state-dir", str(work / "state"))
            peer = probe_peer("rx", address, me)
            doc = kubgp_config(me, [peer], hosts(n), compact=False)
            first = parse_desired_state(doc)
            changed_doc = kubgp_config(me, [peer], hosts(n)[n // 100 :] + hosts(n // 100,
                                       "10.200.0.0"), compact=False)  # fmt: skip
            changed = parse_desired_state(changed_doc)
            return asyncio.run(_drive(probe, sock, first, changed, n))
        finally:
            speaker.close()


async def _drive(probe: Probe, sock: Path, first: Any, changed: Any, n: int) -> ControlFigures:
    async with await SpeakerClient.connect(sock, timeout=60) as agent:
        epoch = 1 + time.time_ns()
        t = time.monotonic()
        await agent.snapshot(first, epoch=epoch, generation=1, timeout=600)
        snapshot_ack = time.monotonic() - t
        probe.wait("all", 600)
        t = time.monotonic()
        await agent.snapshot(changed, epoch=epoch, generation=2, timeout=600)
        snapshot_1pct = time.monotonic() - t
        generation = 2
        acks, wires = [], []
        for i in range(20):
            while not probe.events.empty():
                probe.events.get()
            add = (Advertisement(prefix=f"10.201.{i}.0/24", next_hop=NEXT_HOP),)
            t = time.monotonic()
            await agent.delta(epoch=epoch, generation=generation + 1, base=generation, add=add,
                              timeout=60)  # fmt: skip
            acks.append(time.monotonic() - t)
            wires.append(probe.wait("update", 30)["t"] - t)
            generation += 1
        while not probe.events.empty():
            probe.events.get()
        big = tuple(Advertisement(prefix=p, next_hop=NEXT_HOP) for p in hosts(1000, "10.202.0.0"))
        t = time.monotonic()
        await agent.delta(epoch=epoch, generation=generation + 1, base=generation, add=big,
                          timeout=60)  # fmt: skip
        big_ack = time.monotonic() - t
        seen = 0
        while seen < 1000:
            seen += probe.wait("update", 30)["announced"]
        big_wire = time.monotonic() - t
        return ControlFigures(snapshot_ack, snapshot_1pct, acks, wires, big_ack, big_wire)


def idle_kubgp(lab: Lab, work: Path, n: int, before: Path | None, seconds: float) -> float:
    """Percent of a core an idle speaker uses with 10 established peers and n routes."""
    with receiver(lab, n, count=10) as (probe, addresses):
        me = lab.address()
        speaker = Kubgp(work, before)
        config = work / "idle.json"
        peers = [probe_peer(f"rx{i}", a, me) for i, a in enumerate(addresses)]
        config.write_text(json.dumps(kubgp_config(me, peers, hosts(n), compact=speaker.compact)))
        try:
            speaker.start("--config", str(config))
            for _ in addresses:
                probe.wait("all", 600)
            time.sleep(1.0)
            cpu0, t0 = cpu_seconds(speaker.pid), time.monotonic()
            time.sleep(seconds)
            return 100 * (cpu_seconds(speaker.pid) - cpu0) / (time.monotonic() - t0)
        finally:
            speaker.close()


def _table(
    adv: dict[tuple[str, int], Advertised],
    rx: dict[tuple[str, int], Received],
    names: list[str],
    n: int,
) -> None:
    """The issue's rows for N, one column per implementation."""
    rows: list[tuple[str, Callable[[str], str]]] = [
        (f"advertise {n:,}, Established -> all (s)",
         lambda k: f"{adv[(k, n)].established_to_all:.2f}"),
        (f"advertise {n:,}, process start -> all (s)",
         lambda k: f"{adv[(k, n)].start_to_all:.2f}"),
        (f"advertise {n:,}, RSS / peak (MB)",
         lambda k: f"{_mb(adv[(k, n)].rss)} / {_mb(adv[(k, n)].peak)}"),
        (f"receive {n:,}, Est -> all in (s)", lambda k: f"{rx[(k, n)].seconds:.3f}"),
        (f"receive {n:,}, CPU (s) / RSS (MB)",
         lambda k: f"{rx[(k, n)].cpu:.2f} / {_mb(rx[(k, n)].rss)}"),
    ]  # fmt: skip
    for label, cell in rows:
        cells = []
        for k in names:
            try:
                cells.append(cell(k))
            except KeyError:
                cells.append("-")
        print(f"{label:44}" + "".join(f"{c:>14}" for c in cells), flush=True)
    for other in ("frr", "bird"):
        if not all(key in d for key in (("kubgp", n), (other, n)) for d in (adv, rx)):
            continue
        mine, o = adv[("kubgp", n)], adv[(other, n)]
        r, q = rx[("kubgp", n)], rx[(other, n)]
        print(f"kubgp/{other} at {n:,}: start->all x{mine.start_to_all / o.start_to_all:.2f}, "
              f"RSS x{mine.rss / max(o.rss, 1):.2f}, "
              f"receive x{r.seconds / max(q.seconds, 1e-9):.2f}")  # fmt: skip


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f}"


@contextlib.contextmanager
def _reported(what: str) -> Iterator[None]:
    """A failed measurement is printed and left out of the table ("-"); the run goes on."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - a benchmark reports, it does not stop
        print(f"{what}: failed: {type(err).__name__}: {err}", flush=True)


def _fresh(body: Callable[..., T], *args: Any) -> T:
    """`body(lab, workdir, *args)` with a lab and a work directory of its own."""
    lab = Lab()
    try:
        with tempfile.TemporaryDirectory(prefix="kubgp-scale-") as tmp:
            return body(lab, Path(tmp), *args)
    finally:
        lab.close()


def _advertise(lab: Lab, work: Path, kind: str, n: int, code: Path | None) -> Advertised:
    if kind == "kubgp":
        return advertise_kubgp(lab, work, n, code)
    if kind == "bird":
        return advertise_bird(lab, n)
    if kind == "frr":
        return advertise_frr(lab, n)
    return advertise_gobgp(lab, work, n)


def _receive(lab: Lab, work: Path, kind: str, n: int, code: Path | None) -> Received:
    if kind == "kubgp":
        return receive_kubgp(lab, work, n, code)
    return receive_daemon(lab, kind, n)


def run(short: bool) -> None:
    sizes = [10_000] if short else [100_000, 1_000_000]
    before_env = os.environ.get("KUBGP_BENCH_BEFORE")
    before = Path(before_env).resolve() if before_env else None
    senders: list[tuple[str, str, Path | None]] = [("kubgp", "kubgp", None)]
    if before is not None:
        senders.append(("kubgp-before", "kubgp", before))
    senders += [(d, d, None) for d in ("frr", "bird", "gobgp")]
    adv: dict[tuple[str, int], Advertised] = {}
    rx: dict[tuple[str, int], Received] = {}
    for n in sizes:
        for name, kind, code in senders:
            if kind != "gobgp" or n <= 100_000:  # GoBGP's MRT injection of 1M takes minutes
                with _reported(f"advertise {n:,} by {name}"):
                    adv[(name, n)] = _fresh(_advertise, kind, n, code)
                    print(f"advertise {n:,} by {name}: {adv[(name, n)]}", flush=True)
            with _reported(f"receive {n:,} by {name}"):
                rx[(name, n)] = _fresh(_receive, kind, n, code)
                print(f"receive {n:,} by {name}: {rx[(name, n)]}", flush=True)
    names = [name for name, _, _ in senders]
    print(f"{'':44}" + "".join(f"{name:>14}" for name in names))
    for n in sizes:
        _table(adv, rx, names, n)
    _control_and_idle(short, [(name, code) for name, kind, code in senders if kind == "kubgp"])


def _control_and_idle(short: bool, kubgps: list[tuple[str, Path | None]]) -> None:
    # No 1M snapshot: it is ~19 MB on the control socket, above its documented 16 MiB line limit
    # (docs/control-socket.md), and issue 18 asks the snapshot at 10k and the delta at 100k.
    control_sizes = [10_000] if short else [10_000, 100_000]
    print("kubgp under an agent: snapshot and delta acks (ms); on the wire = at the receiver")
    for n in control_sizes:
        for name, code in kubgps:
            with _reported(f"control {n:,} by {name}"):
                c: ControlFigures = _fresh(control_kubgp, n, code)
                print(f"{name:13} N={n:>9,}: snapshot ack {c.snapshot_ack * 1e3:.1f}, 1% changed "
                      f"{c.snapshot_1pct_ack * 1e3:.1f}; one-route delta ack median "
                      f"{statistics.median(c.delta_ack) * 1e3:.2f} (max "
                      f"{max(c.delta_ack) * 1e3:.2f}), on the wire median "
                      f"{statistics.median(c.delta_wire) * 1e3:.2f}; 1,000-route delta ack "
                      f"{c.big_delta_ack * 1e3:.1f}, on the wire {c.big_delta_wire * 1e3:.1f}",
                      flush=True)  # fmt: skip
    idle_n, window = (10_000, 5.0) if short else (100_000, 30.0)
    for name, code in kubgps:
        with _reported(f"idle {idle_n:,} by {name}"):
            pct: float = _fresh(idle_kubgp, idle_n, code, window)
            print(f"{name:13} idle, 10 established peers, {idle_n:,} routes: {pct:.3f} % of a "
                  f"core over {window:g} s", flush=True)  # fmt: skip
