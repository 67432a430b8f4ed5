"""FIB writer and route import: N IPv4 /32 routes into a network namespace's kernel table, and
withdrawn again; beside BIRD and FRR doing the same job in the same layout, in one run.

Layout: a NetnsPair (testing/routers/netns.py); the routes' next hop is 192.0.2.2, the far end
of the connected veth. Rows:
- kubgp FibWriter: the writer alone, 64 KB of route messages per sendmsg; then the same writer
  with one route per sendmsg + ACK (what BIRD does), for the batching's share.
- kubgp import + Loc-RIB + FibWriter: N prefixes from one peer through bench_loc_rib's import
  policy (two rules) and Loc-RIB, their changes into the writer, in process (no session).
- pyroute2 IPRoute.route("replace") one route at a time, on a small N, scaled: why the writer
  packs its own messages.
- Over BGP, the job the issue measured: a BIRD sender in namespace b announces N static /32s
  over eBGP to a receiver in namespace a, which puts them in its kernel table. Timed from
  enabling (disabling) the sender's static protocol to all routes in (out of) the kernel table;
  the peak RSS is the receiver's (its processes' together). Receivers, one after the other in
  the same layout: `kubgp-speaker run` (session, Adj-RIB-In, import policy, Loc-RIB, FIB
  writer, end to end), BIRD 2 (`protocol kernel`), FRR (bgpd + zebra), as installed.
Counted in /proc/PID/net/fib_triestat of a process inside the namespace (~1 ms a read, any size).
kubgp rows each run in a child process, so their peak RSS (VmHWM) is their own (it includes the
benchmark's own input lists); "kept B/route" is what the writer (and the Loc-RIB) keep per
route after an install, by tracemalloc in an untimed first round. Medians of 3 timed rounds
(1 round at 1M). Printed, never asserted; the machine is shared, so the load average is
printed with the figures.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from testing.kernel_routes import fib_prefixes_of_pid
from testing.routers.netns import NetnsPair
from testing.wait import wait_for

BASE = 0x0A800000  # 10.128.0.0
NEXT_HOP = "192.0.2.2"
POLL = 0.002
TIMEOUT = 600.0

# What the issue measured (one eBGP session in a netns pair, /32s, medians of 3).
ISSUE_FIGURES = [
    ("BIRD 2.0.12 (issue)", "1.17", "0.85", "11.3", "94"),
    ("FRR 8.4 (issue)", "1.57", "1.47", "21.0", "1362"),
    ("plain writer, one route per call + ack (issue)", "1.05", "0.91", "12.5", "-"),
    ("plain writer, 64 KB per send (issue)", "0.47", "0.32", "5.7", "-"),
]


def _peak_rss() -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


def _peak_rss_of(pid: int) -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


def _wait_count(pid: int, want: int) -> float:
    """Polls the namespace's Main table until it holds `want` prefixes; returns when."""
    wait_for(lambda: fib_prefixes_of_pid(pid), f"{want} prefixes in the FIB", TIMEOUT,
             done=lambda count: count == want, interval=POLL)  # fmt: skip
    return time.monotonic()


@contextmanager
def _namespace() -> Iterator[tuple[NetnsPair, int]]:
    """A NetnsPair and the PID of a process inside `a` (whose /proc/PID/net we read)."""
    pair = NetnsPair().create()
    sleeper = subprocess.Popen(["ip", "netns", "exec", pair.a.netns, "sleep", "100000"])
    try:
        yield pair, sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
        pair.delete()


# ---- kubgp, in a child process --------------------------------------------------------------


def child(argv: list[str]) -> None:
    """`python -c 'from benchmarks.bench_fib import child; child(ARGS)'`: one kubgp row."""
    import ipaddress

    from speaker.bgp.wire.context import IPV4_UNICAST
    from speaker.bgp.wire.nlri import prefix_from_int
    from speaker.netlink import FibWriter

    kind, netns, n_text, pid_text, rounds_text = argv
    n, pid, rounds = int(n_text), int(pid_text), int(rounds_text)
    hop = ipaddress.ip_address(NEXT_HOP).packed
    prefixes = [prefix_from_int(BASE + i, 32, 32) for i in range(n)]
    batch = 1 if kind == "single" else 65536
    results: list[tuple[float, float]] = []
    with FibWriter(netns=netns, batch_bytes=batch) as fib:
        fib.existing()
        base = fib_prefixes_of_pid(pid)
        if kind == "pipeline":
            install, withdraw = _pipeline(fib, prefixes, hop)
        else:
            hops = (hop,)
            changes = [(IPV4_UNICAST, p, hops, None) for p in prefixes]
            removals = [(IPV4_UNICAST, p, None, hops) for p in prefixes]

            def install() -> object:
                return fib.apply(changes)

            def withdraw() -> object:
                return fib.apply(removals)

        # an untimed first round under tracemalloc: what the writer (and the Loc-RIB) keep
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        install()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        withdraw()
        for _ in range(rounds):
            t0 = time.monotonic()
            done = install()
            t1 = time.monotonic()
            if fib_prefixes_of_pid(pid) != base + n:
                raise RuntimeError(
                    f"after install: {fib_prefixes_of_pid(pid) - base} of {n}: {done}"
                )
            t2 = time.monotonic()
            withdraw()
            t3 = time.monotonic()
            if fib_prefixes_of_pid(pid) != base:
                raise RuntimeError(f"after withdraw: {fib_prefixes_of_pid(pid) - base} left")
            results.append((t1 - t0, t3 - t2))
    print(json.dumps({"rounds": results, "rss": _peak_rss(), "held": held}))


def _pipeline(
    fib: object, prefixes: list[bytes], hop: bytes
) -> tuple[Callable[[], object], Callable[[], object]]:
    """tor-b (192.0.2.2) announces the prefixes through bench_loc_rib's policy and Loc-RIB."""
    from benchmarks.bench_loc_rib import fresh_loc_rib, received_groups, withdrawn_groups
    from speaker.netlink import FibWriter
    from speaker.route_import import fib_changes

    assert isinstance(fib, FibWriter)
    rib = fresh_loc_rib()
    announce = received_groups(prefixes, 65002, hop)
    gone = withdrawn_groups(prefixes)

    def install() -> object:
        return fib.apply(fib_changes(rib.update_groups("tor-b", announce)))

    def withdraw() -> object:
        return fib.apply(fib_changes(rib.update_groups("tor-b", gone)))

    return install, withdraw


def _kubgp(kind: str, n: int, rounds: int) -> tuple[list[tuple[float, float]], int, int]:
    with _namespace() as (pair, pid):
        code = "import sys; from benchmarks.bench_fib import child; child(sys.argv[1:])"
        done = subprocess.run(
            [sys.executable, "-c", code, kind, pair.a.netns, str(n), str(pid), str(rounds)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubgp {kind} child failed:\n{done.stderr[-3000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        rounds_done = [(float(a), float(b)) for a, b in out["rounds"]]
        return rounds_done, int(out["rss"]), int(out["held"])


def _pyroute2_per_route(n: int) -> float:
    """Seconds per route for pyroute2's IPRoute, one `route("replace")` call per route."""
    import ipaddress

    from pyroute2 import IPRoute

    with _namespace() as (pair, _):
        ipr = IPRoute(netns=pair.a.netns)
        try:
            dsts = [str(ipaddress.IPv4Address(BASE + i)) for i in range(n)]
            t0 = time.monotonic()
            for dst in dsts:
                ipr.route("replace", dst=dst, dst_len=32, gateway=NEXT_HOP, proto=196, priority=20)
            return (time.monotonic() - t0) / n
        finally:
            ipr.close()


# ---- BIRD -----------------------------------------------------------------------------------


def _birdc(sock: Path, *args: str) -> str:
    done = subprocess.run(
        ["birdc", "-s", str(sock), *args], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout


def _bird(netns: str, conf: Path, sock: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        # `ip netns exec` execs BIRD itself: this PID is BIRD's, ended by it below
        return subprocess.Popen(
            ["ip", "netns", "exec", netns, "bird", "-f", "-c", str(conf), "-s", str(sock)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_birdc(
    sock: Path, args: tuple[str, ...], pattern: str, proc: subprocess.Popen[bytes]
) -> None:
    def seen() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"BIRD exited waiting for {pattern!r}")
        return re.search(pattern, _birdc(sock, *args)) is not None

    wait_for(seen, f"{pattern!r} in `birdc {' '.join(args)}`", TIMEOUT)


Procs = list[subprocess.Popen[bytes]]
Receiver = Callable[[NetnsPair, Path, Procs], Callable[[], None]]
"""Starts the receiving router in namespace a (appending its processes, which the caller
stops); returns a wait for its session to be Established."""


def _bird_sender(pair: NetnsPair, work: Path, n: int) -> tuple[Path, subprocess.Popen[bytes]]:
    """BIRD in namespace b with N static /32s (disabled) to announce over eBGP to a."""
    statics = "\n".join(
        f"  route {(BASE + i) >> 24}.{(BASE + i) >> 16 & 255}.{(BASE + i) >> 8 & 255}."
        f"{(BASE + i) & 255}/32 blackhole;"
        for i in range(n)
    )
    sender = work / "sender.conf"
    sender.write_text(
        f"router id {pair.b.ipv4};\nprotocol device {{}}\n"
        f"protocol static statics {{ ipv4; disabled;\n{statics}\n}}\n"
        f"protocol bgp receiver {{ local {pair.b.ipv4} as 65001; "
        f"neighbor {pair.a.ipv4} as 65000; ipv4 {{ import none; export all; }}; }}\n"
    )
    sock = work / "sender.ctl"
    return sock, _bird(pair.b.netns, sender, sock, work / "sender.log")


def _bird_receiver(pair: NetnsPair, work: Path, procs: Procs) -> Callable[[], None]:
    """BIRD's BGP into its kernel protocol (one route per netlink call, each acked)."""
    receiver = work / "receiver.conf"
    receiver.write_text(
        f"router id {pair.a.ipv4};\nprotocol device {{}}\n"
        "protocol kernel { ipv4 { import none; export all; }; }\n"
        f"protocol bgp sender {{ local {pair.a.ipv4} as 65000; "
        f"neighbor {pair.b.ipv4} as 65001; ipv4 {{ import all; export none; }}; }}\n"
    )
    sock = work / "receiver.ctl"
    proc = _bird(pair.a.netns, receiver, sock, work / "receiver.log")
    procs.append(proc)
    return lambda: _wait_birdc(sock, ("show", "protocols", "sender"), r"Established", proc)


def _frr_receiver(pair: NetnsPair, work: Path, procs: Procs) -> Callable[[], None]:
    """FRR: bgpd and zebra (its dataplane batches, nexthop objects), as installed."""
    (work / "zebra.conf").write_text("hostname bench\n")
    (work / "bgpd.conf").write_text(
        "frr defaults traditional\nhostname bench\n"
        f"router bgp 65000\n bgp router-id {pair.a.ipv4}\n no bgp ebgp-requires-policy\n"
        f" neighbor {pair.b.ipv4} remote-as 65001\n neighbor {pair.b.ipv4} timers connect 1\n"
        f" address-family ipv4 unicast\n  neighbor {pair.b.ipv4} activate\n"
        " exit-address-family\n"
    )
    frr = pwd.getpwnam("frr")
    os.chown(work, frr.pw_uid, frr.pw_gid)  # the daemons make their sockets here as frr
    common = ["-z", str(work / "zserv.api"), "--vty_socket", str(work), "-u", "frr", "-g", "frr"]
    for daemon, ready in (("zebra", "zserv.api"), ("bgpd", "bgpd.vty")):
        conf, pidfile = work / f"{daemon}.conf", work / f"{daemon}.pid"
        argv = ["ip", "netns", "exec", pair.a.netns, f"/usr/lib/frr/{daemon}", "-f", str(conf),
                "-i", str(pidfile), *common]  # fmt: skip
        with (work / f"{daemon}.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        _wait_started(proc, work / ready, f"FRR {daemon}", work / f"{daemon}.log")

    def established() -> None:
        def up() -> bool:
            done = subprocess.run(
                ["vtysh", "--vty_socket", str(work), "-d", "bgpd", "-c",
                 f"show bgp neighbors {pair.b.ipv4} json"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            return '"bgpState":"Established"' in done.stdout.replace(" ", "")

        wait_for(up, "FRR's session Established", TIMEOUT)

    return established


def _kubgp_receiver(pair: NetnsPair, work: Path, procs: Procs) -> Callable[[], None]:
    """`kubgp-speaker run` (info log): session, Adj-RIB-In, import policy, Loc-RIB, FibWriter."""
    config = work / "speaker.json"
    config.write_text(json.dumps({
        "routerId": pair.a.ipv4, "asn": 65000,
        "peers": [{"name": "sender", "address": pair.b.ipv4, "asn": 65001,
                   "connectRetryTime": 1,
                   "import": [{"prefix": "0.0.0.0/0", "le": 32, "action": "accept"}]}],
        "fib": {},
    }))  # fmt: skip
    log = work / "speaker.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", pair.a.netns, sys.executable, "-m",
             "speaker.cli.kubgp_speaker", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    procs.append(proc)

    def established() -> None:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"kubgp-speaker exited: {log.read_text()[-3000:]}")
            return "-> Established" in log.read_text()

        wait_for(up, "kubgp-speaker's session Established", TIMEOUT)

    return established


def _wait_started(proc: subprocess.Popen[bytes], path: Path, what: str, log: Path) -> None:
    wait_for(lambda: path.exists() or proc.poll() is not None, what, 60)
    if proc.poll() is not None:
        raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-3000:]}")


def _bgp_rows(n: int, rounds: int, receiver: Receiver) -> tuple[list[tuple[float, float]], int]:
    """A BIRD sender announces N /32s to `receiver`, which puts them in its kernel: timed from
    enabling (disabling) the sender's statics to all in (out of) the kernel table; the peak
    RSS is the receiver's processes' together."""
    with _namespace() as (pair, pid), tempfile.TemporaryDirectory(prefix="kubgp-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        s_sock, s_proc = _bird_sender(pair, work, n)
        procs = [s_proc]
        try:
            established = receiver(pair, work, procs)
            established()
            base = fib_prefixes_of_pid(pid)
            results: list[tuple[float, float]] = []
            for _ in range(rounds):
                t0 = time.monotonic()
                _birdc(s_sock, "enable", "statics")
                t1 = _wait_count(pid, base + n)
                t2 = time.monotonic()
                _birdc(s_sock, "disable", "statics")
                t3 = _wait_count(pid, base)
                results.append((t1 - t0, t3 - t2))
            return results, sum(_peak_rss_of(p.pid) for p in procs[1:])
        finally:
            for proc in reversed(procs):
                _stop(proc)


BGP_RECEIVERS: list[tuple[str, Receiver]] = [
    ("kubgp-speaker run (BGP from BIRD)", _kubgp_receiver),
    ("BIRD 2 kernel protocol (BGP from BIRD)", _bird_receiver),
    ("FRR bgpd + zebra (BGP from BIRD)", _frr_receiver),
]


# ---- report ---------------------------------------------------------------------------------


def _median(rounds: list[tuple[float, float]], i: int) -> float:
    return statistics.median(r[i] for r in rounds)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(short: bool) -> None:
    sizes = [10_000] if short else [100_000, 1_000_000]
    print(__doc__.split("\n\n")[0] if __doc__ else "")
    load_before = _load()
    rows: list[tuple[str, int, float, float, int, int | None]] = []
    for n in sizes:
        rounds = 3 if n <= 100_000 else 1
        for kind, label in (
            ("batched", "kubgp FibWriter, 64 KB per send"),
            ("single", "kubgp FibWriter, one route per send + ack"),
            ("pipeline", "kubgp import + Loc-RIB + FibWriter"),
        ):
            if kind == "single" and n > 100_000:
                continue
            timed, rss, held = _kubgp(kind, n, rounds)
            rows.append((label, n, _median(timed, 0), _median(timed, 1), rss, held))
        for label, receiver in BGP_RECEIVERS:
            timed, rss = _bgp_rows(n, rounds, receiver)
            rows.append((label, n, _median(timed, 0), _median(timed, 1), rss, None))
    per_route = _pyroute2_per_route(500 if short else 2000)
    print(f"load average before / after: {load_before} / {_load()} (2 cores, shared)")
    print(f"{'':48} {'routes':>9} {'install s':>10} {'withdraw s':>11} {'peak RSS MB':>12} "
          f"{'kept B/route':>13}")  # fmt: skip
    for label, n, install, withdraw, peak, kept_bytes in rows:
        kept = "-" if kept_bytes is None else f"{kept_bytes / n:.0f}"
        print(f"{label:48} {n:9d} {install:10.3f} {withdraw:11.3f} {peak / 2**20:12.1f} "
              f"{kept:>13}")  # fmt: skip
    for n in sizes:
        print(f"{'pyroute2 IPRoute.route() one by one, scaled':48} {n:9d} "
              f"{per_route * n:10.2f} {'-':>11} {'-':>12}")  # fmt: skip
    print(f"{'issue figures':48} {'':>9} {'100k':>10} {'100k':>11}   1M install, RSS 1M MB")
    for label, in_100k, out_100k, in_1m, rss_1m in ISSUE_FIGURES:
        print(f"{label:48} {'':>9} {in_100k:>10} {out_100k:>11}   {in_1m} s, {rss_1m}")
