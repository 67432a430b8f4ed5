"""Sessions: how fast a sender's table reaches a BIRD receiver, at what cost; and receiving.

Senders: kubgp-speaker (`run --config`), BIRD (static routes) and GoBGP (routes injected from
an MRT table dump we write with our own codec), each advertising N IPv4 /32s with one shared
attribute set, each to its own fresh BIRD receiver on loopback. Every sender is passive and
has its whole table before the receiver starts, so the time measured is from Established (as
the receiver logs it, millisecond timestamps) to all N routes in the receiver's table. Also
printed: the sender's CPU seconds (user + system, whole process life) and peak RSS (VmHWM);
for kubgp the RIB memory held per route and the marginal peak RSS per route.
Aims: no slower than BIRD, <= 200 B per route. Printed, never asserted.

Receiving is measured sans-IO (`receive_in_memory`): one Established `Session` is fed a
sender's N /32s as 4096-octet UPDATEs in 64 KiB reads, as the runtime would hand them over,
through decoding, the inbound checks and the Adj-RIB-In; the best of a few runs is printed
with the Adj-RIB-In memory per received route.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import struct
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from speaker.api.communities import community_value
from speaker.bgp.rib.update_builder import UpdateBuilder
from speaker.bgp.session.fsm import Session, SessionConfig, State
from speaker.bgp.wire.attributes import (
    AsPathAttribute,
    CommunitiesAttribute,
    OriginAttribute,
)
from speaker.bgp.wire.capabilities import MultiprotocolCapability
from speaker.bgp.wire.context import IPV4_UNICAST, DecodeContext
from speaker.bgp.wire.messages import Keepalive, Open
from speaker.bgp.wire.nlri import prefix_from_int
from testing.procs import SpeakerProcess
from testing.routers.bird import Bird
from testing.routers.daemon import RouterDaemon
from testing.routers.gobgp import GoBGP
from testing.routers.lab import Lab
from testing.routers.model import PeerSpec
from testing.wait import wait_for

RECEIVER_ASN = 65000
SENDER_ASN = 65001
NEXT_HOP = "192.0.2.77"
COMMUNITY = "65001:100"
_TICK = os.sysconf("SC_CLK_TCK")


def _hosts(n: int) -> list[str]:
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    return [f"{ipaddress.IPv4Address(base + i)}/32" for i in range(n)]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _peak_rss(pid: int) -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


def _mrt_dump(path: Path, prefixes: list[str], peer_ip: str) -> None:
    """TABLE_DUMP_V2 (RFC 6396): a PEER_INDEX_TABLE and one RIB_IPV4_UNICAST per prefix."""
    now = int(time.time())

    def record(subtype: int, body: bytes) -> bytes:
        return struct.pack("!IHHI", now, 13, subtype, len(body)) + body

    peer = ipaddress.IPv4Address(peer_ip).packed
    index = peer + struct.pack("!HH", 0, 1) + b"\x02" + peer + peer + struct.pack("!I", SENDER_ASN)
    hi, lo = (int(x) for x in COMMUNITY.split(":"))
    attrs = (
        b"\x40\x01\x01\x00"  # ORIGIN IGP
        + b"\x40\x02\x00"  # AS_PATH empty (the sender prepends its AS towards eBGP)
        + b"\x40\x03\x04" + ipaddress.IPv4Address(NEXT_HOP).packed
        + b"\xc0\x08\x04" + struct.pack("!HH", hi, lo)
    )  # fmt: skip
    out = [record(1, index)]
    # `gobgp mrt inject` (3.10) drops its last partial batch (~500 paths): pad with repeats
    # of the first prefixes, which change nothing when they do arrive.
    padding = [prefixes[i % len(prefixes)] for i in range(2048)]
    for seq, text in enumerate(prefixes + padding):
        net = ipaddress.IPv4Network(text)
        nbytes = (net.prefixlen + 7) // 8
        entry = struct.pack("!HIH", 0, now, len(attrs)) + attrs
        body = (
            struct.pack("!IB", seq, net.prefixlen)
            + net.network_address.packed[:nbytes]
            + struct.pack("!H", 1)
            + entry
        )
        out.append(record(2, body))
    path.write_bytes(b"".join(out))


def _count(receiver: Bird, peer: str) -> int:
    out = receiver.birdc("show", "route", "protocol", receiver.protocol(peer), "count")
    match = re.search(r"(\d+) of \d+ routes", out)
    return int(match.group(1)) if match else 0


def _established_at(receiver: Bird) -> float:
    for line in receiver.log_tail(400).splitlines():
        if "BGP session established" in line:
            stamp = " ".join(line.split()[:2])
            return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
    raise RuntimeError(f"no 'session established' in the receiver's log:\n{receiver.log_tail()}")


def _measure(
    lab: Lab, receiver_address: str, sender_address: str, n: int, pid: int
) -> tuple[float, float, int]:
    """Start a receiver for the (already loaded, passive) sender; time Established -> n."""
    receiver = lab.bird(asn=RECEIVER_ASN, address=receiver_address)
    receiver.peers["sender"] = PeerSpec(name="sender", address=sender_address, asn=SENDER_ASN)
    receiver.start()
    wait_for(
        lambda: _count(receiver, "sender"),
        f"the receiver to have {n} routes",
        300,
        done=lambda count: count >= n,
        interval=0.005,
    )
    done = time.time()
    # BIRD answers its CLI only between bursts of work, so polling the session state would
    # see Established late; its own log line (millisecond timestamps) is the start mark.
    established = _established_at(receiver)
    elapsed = done - established
    return elapsed, _cpu_seconds(pid), _peak_rss(pid)


def _kubgp(lab: Lab, workdir: Path, n: int) -> tuple[float, float, int]:
    me = lab.address()
    proc = SpeakerProcess(workdir)
    receiver_address = lab.address()
    proc.start({
        "routerId": "192.0.2.1",
        "asn": SENDER_ASN,
        "listen": {"address": me, "port": 179},
        "peers": [{"name": "receiver", "address": receiver_address, "asn": RECEIVER_ASN,
                   "passive": True, "ebgpMultihop": 255}],
        "advertisements": [{"prefix": p, "nextHop": NEXT_HOP, "communities": [COMMUNITY]}
                           for p in _hosts(n)],
    })  # fmt: skip
    try:
        proc.wait_log("listening on", timeout=120)
        assert proc.proc is not None
        return _measure(lab, receiver_address, me, n, proc.proc.pid)
    finally:
        proc.stop()


def _bird(lab: Lab, n: int) -> tuple[float, float, int]:
    sender = lab.bird(asn=SENDER_ASN)
    for prefix in _hosts(n):
        sender.originate(prefix, next_hop=NEXT_HOP, communities=[COMMUNITY])
    return _passive_daemon(lab, sender, n)


def _gobgp(lab: Lab, workdir: Path, n: int) -> tuple[float, float, int]:
    sender = lab.gobgp(asn=SENDER_ASN)
    dump = workdir / "table.mrt"
    _mrt_dump(dump, _hosts(n), sender.address)
    return _passive_daemon(lab, sender, n, inject=lambda: sender.gobgp("mrt", "inject", "global",
                                                                       str(dump)))  # fmt: skip


def _passive_daemon(
    lab: Lab, sender: RouterDaemon, n: int, inject: Callable[[], object] | None = None
) -> tuple[float, float, int]:
    receiver_address = lab.address()
    sender.peers["receiver"] = PeerSpec(
        name="receiver", address=receiver_address, asn=RECEIVER_ASN, passive=True
    )
    sender.start(timeout=120)
    if inject is not None:
        inject()
        assert isinstance(sender, GoBGP)
        wait_for(lambda: sender.gobgp("global", "rib", "summary").strip(), "GoBGP's RIB loaded")
    assert sender.pid is not None
    return _measure(lab, receiver_address, sender.address, n, sender.pid)


def _rib_bytes_per_route(n: int) -> float:
    """Memory the speaker holds per advertised route once applied (one established peer):
    the desired table (prefix objects, dict) shared with the Adj-RIB-Out, measured with
    tracemalloc in this process; the DesiredState document itself is not counted."""
    from speaker.api.schema import parse_desired_state
    from speaker.session_inputs import RouteTables, session_config

    state = parse_desired_state({
        "routerId": "192.0.2.1", "asn": SENDER_ASN,
        "peers": [{"name": "r", "address": "127.0.0.9", "asn": RECEIVER_ASN}],
        "advertisements": [{"prefix": p, "nextHop": NEXT_HOP, "communities": [COMMUNITY]}
                           for p in _hosts(n)],
    })  # fmt: skip
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    session = Session(session_config(state, state.peers[0]))
    session.set_routes(RouteTables(state).for_peer(state.peers[0]))
    session.rib_out.update(session.desired, session.desired.families())  # as when Established
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / n


def _established_receiver() -> tuple[Session, int]:
    """A receiving Session that is Established with a sender that offers IPv4 unicast."""
    config = SessionConfig(
        local_asn=RECEIVER_ASN, peer_asn=SENDER_ASN, router_id=0xC0000202,
        families=frozenset({IPV4_UNICAST}), passive=True,
    )  # fmt: skip
    session = Session(config, rng=lambda: 0.0)
    session.start(0.0)
    conn, _ = session.accept(0.0, local_address=bytes((192, 0, 2, 2)))
    assert conn is not None
    offer = Open.create(
        asn=SENDER_ASN, hold_time=90, bgp_id=0xC0000201,
        capabilities=(MultiprotocolCapability(afi=1, safi=1),),
    )  # fmt: skip
    session.data_received(conn, offer.encode() + Keepalive().encode(), 0.0)
    assert session.state is State.Established
    return session, conn


def _updates(n: int) -> bytes:
    """The sender's N /32s sharing ORIGIN, AS_PATH, NEXT_HOP, COMMUNITIES: 4096-octet UPDATEs."""
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    prefixes = [prefix_from_int(base + i, 32, 32) for i in range(n)]
    attrs = (
        OriginAttribute(0),
        AsPathAttribute.sequence(SENDER_ASN),
        CommunitiesAttribute((community_value(COMMUNITY),)),
    )
    builder = UpdateBuilder(DecodeContext())
    nh = ipaddress.IPv4Address(NEXT_HOP).packed
    return b"".join(builder.announce(IPV4_UNICAST, attrs, prefixes, next_hop=nh))


def receive_in_memory(n: int, repeat: int = 3) -> tuple[float, float]:
    """(best seconds to take in N /32s through `Session.data_received`, Adj-RIB-In bytes per
    route). Each run uses a fresh Established session; the stream is cut in 64 KiB reads."""
    stream = _updates(n)
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    best = float("inf")
    for _ in range(repeat):
        session, conn = _established_receiver()
        start = time.perf_counter()
        for chunk in chunks:
            session.data_received(conn, chunk, 1.0)
        best = min(best, time.perf_counter() - start)
        assert len(session.rib_in) == n, len(session.rib_in)
    session, conn = _established_receiver()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for chunk in chunks:
        session.data_received(conn, chunk, 1.0)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return best, held / n


def print_receive(sizes: list[int]) -> None:
    for n in sizes:
        seconds, per_route = receive_in_memory(n)
        print(f"kubgp receive (sans-IO) {n} /32s: {seconds:.3f} s best of 3, "
              f"{n / seconds / 1e6:.2f} M prefixes/s, Adj-RIB-In {per_route:.0f} B per route "
              "(decoded values included)")  # fmt: skip


def _ratio(a: float, b: float) -> str:
    return f"x{a / b:.2f}" if b > 0 else "n/a (below resolution)"


def run(short: bool) -> None:
    sizes = [1_000] if short else [10_000, 100_000]
    print_receive(sizes)
    rows: dict[tuple[str, int], tuple[float, float, int]] = {}
    for n in sizes:
        for name in ("kubgp", "bird", "gobgp"):
            lab = Lab()
            try:
                with tempfile.TemporaryDirectory(prefix="kubgp-bench-") as tmp:
                    if name == "kubgp":
                        rows[(name, n)] = _kubgp(lab, Path(tmp), n)
                    elif name == "bird":
                        rows[(name, n)] = _bird(lab, n)
                    else:
                        rows[(name, n)] = _gobgp(lab, Path(tmp), n)
            finally:
                lab.close()
    print(f"{'sender':8} {'routes':>8} {'Est->all (s)':>13} {'CPU (s)':>8} {'peak RSS (MB)':>14}")
    for (name, n), (elapsed, cpu, rss) in rows.items():
        print(f"{name:8} {n:8d} {elapsed:13.3f} {cpu:8.2f} {rss / 2**20:14.1f}")
    for n in sizes:
        k = rows[("kubgp", n)]
        for other in ("bird", "gobgp"):
            o = rows[(other, n)]
            print(f"kubgp/{other} at {n}: time {_ratio(k[0], o[0])}, CPU {_ratio(k[1], o[1])}, "
                  f"RSS {_ratio(k[2], o[2])}")  # fmt: skip
    for n in sizes:
        print(f"kubgp RIB memory held per advertised route at {n}: {_rib_bytes_per_route(n):.0f} B")
    if len(sizes) == 2:
        small, big = sizes
        per_route = (rows[("kubgp", big)][2] - rows[("kubgp", small)][2]) / (big - small)
        print(f"kubgp marginal peak RSS per advertised route: {per_route:.0f} B")
