"""Reading a network namespace's kernel routing table, independently of the FIB writer.

`routes()` asks iproute2 (`ip -N -j route show`: numbers, not names, for protocol and table,
since /etc/iproute2/rt_protos.d may name 196 after FRR's staticd); `fib_prefixes()` reads
/proc/net/fib_triestat, which costs about a millisecond at any table size (the issue's way of
counting 1M routes without listing them).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from testing.routers.model import LabError


@dataclass(frozen=True, slots=True)
class KernelRouteRow:
    dst: str  # canonical prefix text ("0.0.0.0/0" for default)
    protocol: int
    table: int
    metric: int
    gateways: tuple[str, ...]  # sorted; one per next hop of a multipath route

    @property
    def key(self) -> tuple[str, int, int]:
        return self.dst, self.protocol, self.metric


def _netns_exec(netns: str, *argv: str, timeout: float = 60.0) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} in {netns}: {done.stderr.strip()}")
    return done.stdout


def _dst(text: str, v6: bool) -> str:
    if text == "default":
        return "::/0" if v6 else "0.0.0.0/0"
    if "/" not in text:
        return f"{text}/{128 if v6 else 32}"
    return text


def _gateway(entry: dict[str, object]) -> str | None:
    gw = entry.get("gateway")
    if isinstance(gw, str):
        return gw
    via = entry.get("via")
    if isinstance(via, dict) and isinstance(via.get("host"), str):
        return str(via["host"])
    return None


def routes(netns: str, *, v6: bool = False, table: int | str = "all") -> list[KernelRouteRow]:
    """Unicast routes of one family in `netns` (all tables unless told)."""
    out = _netns_exec(
        netns, "ip", "-N", "-j", "-6" if v6 else "-4", "route", "show", "table", str(table)
    )
    rows: list[KernelRouteRow] = []
    for raw in json.loads(out or "[]"):
        if raw.get("type", "1") not in ("1", "unicast"):
            continue
        hops = raw.get("nexthops") or [raw]
        gateways = tuple(sorted(g for g in (_gateway(h) for h in hops) if g is not None))
        rows.append(
            KernelRouteRow(
                dst=_dst(raw["dst"], v6),
                protocol=int(raw.get("protocol", 3)),  # iproute2 omits "boot" (3)
                table=int(raw.get("table", 254 if table == "all" else table)),
                metric=int(raw.get("metric", 0)),
                gateways=gateways,
            )
        )
    return rows


_SECTION = re.compile(r"^(Main|Local|Id \d+):\s*$")
_PREFIXES = re.compile(r"^\s*Prefixes:\s*(\d+)")


def _prefixes_in(lines: Iterable[str], table: str) -> int:
    section = None
    for line in lines:
        head = _SECTION.match(line)
        if head:
            section = head.group(1)
            continue
        count = _PREFIXES.match(line)
        if count and section == table:
            return int(count.group(1))
    return 0


def fib_prefixes(netns: str, table: str = "Main") -> int:
    """IPv4 prefixes in one table of `netns` per /proc/net/fib_triestat (`Main`, `Local`,
    `Id 1000`): every protocol's, ours and the connected ones."""
    return _prefixes_in(_netns_exec(netns, "cat", "/proc/net/fib_triestat").splitlines(), table)


def fib_prefixes_of_pid(pid: int, table: str = "Main") -> int:
    """The same, read through a process inside the namespace (/proc/PID/net/fib_triestat),
    without starting a process: for polling in benchmarks."""
    with open(f"/proc/{pid}/net/fib_triestat") as f:
        return _prefixes_in(f, table)
