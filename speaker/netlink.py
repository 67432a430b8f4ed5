"""The FIB writer: selected routes into the kernel's routing table over rtnetlink.

The only module that imports pyroute2 (an import-linter contract). pyroute2 gives the netlink
socket (inside a named network namespace too, by its fork-and-pass-the-descriptor helper) and
the protocol's constants; the route messages themselves are packed here with `struct`: pyroute2's
message classes cost ~98 µs to encode and ~18 µs to decode one route (measured, pyroute2 0.9.7),
which is 10 s to install 100k routes; packing by hand costs ~2 µs (benchmarks/bench_fib.py).

Rules:
- Ours are the routes with our protocol number (default 179) in our table. Nothing else is ever
  changed or removed: a delete names our protocol and metric, which the kernel matches.
- One kernel route per prefix: a single gateway, or one ECMP route with RTA_MULTIPATH.
- A change is a replace (NLM_F_REPLACE) of our own route, never delete-then-add, so there is
  no moment without a route. A prefix we have not installed yet is created with NLM_F_EXCL: if
  a route that is not ours holds the same prefix, table and metric (the kernel's identity of a
  route: IPv4 (prefix, tos, metric), IPv6 (prefix, metric) -- the protocol is not part of it), a
  replace would overwrite it; the exclusive create fails with EEXIST instead, and we report the
  conflict and leave the other route alone. With a different metric both routes coexist and the
  kernel uses the lower metric.
- Work is batched: many route messages per sendmsg (up to `batch_bytes`, 64 KB by default),
  only the last asking for an ACK. rtnetlink handles a sendmsg synchronously and answers only
  messages that fail (or ask for an ACK), in order, so the ACK of the last message closes the
  batch and every error before it names its message by sequence number. One receive buffer is
  reused for everything.
- Errors are values: `FibResult.errors` lists each route the kernel refused (e.g. a gateway it
  cannot reach), with the kernel's extended-ACK text. Nothing raises out of `apply`,
  `reconcile` or `remove_all` for a refused route; an `OSError` on the socket itself is
  reported for every route of the batch it hit.

Blocking: every call does its netlink work to the end before returning (the kernel processes a
batch inside sendmsg; 100k routes take ~0.5 s). From asyncio use `AsyncFibWriter`, which runs
one writer in one worker thread, so calls are serialised and the event loop never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno as errno_mod
import os
import socket
import struct
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pyroute2 import netns as pr_netns
from pyroute2.netlink import (
    NETLINK_ROUTE,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    rt_scope,
    rt_type,
)
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from speaker.bgp.rib.next_hop import ResolverRoute
from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6, SAFI_UNICAST, Family
from speaker.bgp.wire.nlri import Prefix, prefix_to_str

DEFAULT_TABLE = 254  # main
DEFAULT_PROTOCOL = 179  # docs/route-import.md ("Protocol 179, not 196")
DEFAULT_METRIC = 20
DEFAULT_BATCH_BYTES = 65536
DEFAULT_TIMEOUT = 30.0  # seconds to wait for the kernel's answer to one batch

# Attribute type numbers: their index in pyroute2's rtmsg table (its documented layout).
_RTA = {name: index for index, (name, _) in enumerate(rtmsg.nla_map)}
RTA_DST = _RTA["RTA_DST"]
RTA_OIF = _RTA["RTA_OIF"]
RTA_GATEWAY = _RTA["RTA_GATEWAY"]
RTA_PRIORITY = _RTA["RTA_PRIORITY"]
RTA_MULTIPATH = _RTA["RTA_MULTIPATH"]
RTA_TABLE = _RTA["RTA_TABLE"]
RTA_VIA = _RTA["RTA_VIA"]
RTN_UNICAST = rt_type["unicast"]
RT_SCOPE_UNIVERSE = rt_scope["universe"]
RT_SCOPE_NOWHERE = rt_scope["nowhere"]
RT_SCOPE_LINK = rt_scope["link"]
RTNH_F_DEAD = 1
RTNH_F_LINKDOWN = 16
RT_TABLE_COMPAT = 252  # rtm_table when the id needs RTA_TABLE (> 255)

SO_RCVBUFFORCE = 33  # not in Python's socket module
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # errors without a copy of our message
NETLINK_EXT_ACK = 11  # errors with the kernel's explanation
NETLINK_GET_STRICT_CHK = 12  # dumps filtered by the kernel (table, protocol)
NLMSGERR_ATTR_MSG = 1
RECEIVE_BUFFER = 8 << 20  # holds the errors of a whole batch, were every route to fail

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type
_RTATTR = struct.Struct("=HH")
_RTNH = struct.Struct("=HBBi")  # len, flags, hops (weight - 1), ifindex
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_HEADER = _NLMSG.size + _RTMSG.size

NextHops = tuple[bytes, ...]  # gateway addresses, packed (4 or 16 octets), sorted, distinct
# (family, prefix, next hops wanted, our route's next hops in the kernel now): None for no route
FibChange = tuple[Family, Prefix, "NextHops | None", "NextHops | None"]

_AF = {AFI_IPV4: socket.AF_INET, AFI_IPV6: socket.AF_INET6}
_AFI = {socket.AF_INET: AFI_IPV4, socket.AF_INET6: AFI_IPV6}
_ALEN = {AFI_IPV4: 4, AFI_IPV6: 16}


class Op(enum.Enum):
    INSTALL = "install"
    REPLACE = "replace"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class FibError:
    """A route the kernel refused: which, what we tried, and why; `kept` is our route for the
    prefix that the kernel still has (None: none of ours)."""

    family: Family
    prefix: Prefix
    op: Op
    errno: int
    message: str
    kept: NextHops | None = None

    def __str__(self) -> str:
        return f"{self.op.value} {prefix_to_str(self.prefix, self.family[0])}: {self.message}"


@dataclass(slots=True)
class FibResult:
    installed: int = 0
    replaced: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: list[FibError] = field(default_factory=list)
    lost: bool = False  # the kernel's answers to a batch were lost: what it has is unknown

    def add(self, other: FibResult) -> None:
        self.installed += other.installed
        self.replaced += other.replaced
        self.removed += other.removed
        self.unchanged += other.unchanged
        self.errors += other.errors
        self.lost = self.lost or other.lost


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """A route of our protocol in our table, as the kernel lists it."""

    family: Family
    prefix: Prefix
    next_hops: NextHops
    metric: int


# Internal work items: op (an index into _OPS: ints hash faster than enum members), family,
# prefix, next hops (None to remove), metric.
_INSTALL, _REPLACE, _REMOVE = 0, 1, 2
_OPS = (Op.INSTALL, Op.REPLACE, Op.REMOVE)
_Work = tuple[int, Family, Prefix, "NextHops | None", int, "NextHops | None"]  # + what was there
_Template = tuple[bytes, bytes, int, int, int]  # head, tail, message type, flags, address length


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return _RTATTR.pack(size, kind) + payload + bytes(-size & 3)


def _gateway(afi: int, next_hop: bytes) -> bytes:
    """RTA_GATEWAY of the route's own family, RTA_VIA for another (an IPv4 route through an
    IPv6 next hop, RFC 8950)."""
    if len(next_hop) == _ALEN[afi]:
        return _attr(RTA_GATEWAY, next_hop)
    via_af = socket.AF_INET6 if len(next_hop) == 16 else socket.AF_INET
    return _attr(RTA_VIA, struct.pack("=H", via_af) + next_hop)


def canonical(next_hops: Iterable[bytes]) -> NextHops:
    return tuple(sorted(set(next_hops)))


def _error_text(code: int, op: Op, detail: str) -> str:
    text = detail or os.strerror(code)
    if code == errno_mod.EEXIST and op is Op.INSTALL:
        return (
            f"{text}: a route that is not ours has this prefix and metric in the table; left alone"
        )
    return text


class FibWriter:
    """Our routes in one kernel routing table. Not thread-safe: one owner (see AsyncFibWriter).

    The writer keeps no copy of the table (at a million routes that copy was ~42 MB): each
    change says what the kernel has for the prefix now (`FibChange`), which the caller knows
    from the Loc-RIB's selection before the change, and a failure says what the kernel kept
    (`FibError.kept`). `reconcile()` and `remove_all()` read the kernel instead."""

    def __init__(
        self,
        *,
        table: int = DEFAULT_TABLE,
        protocol: int = DEFAULT_PROTOCOL,
        metric: int = DEFAULT_METRIC,
        netns: str | None = None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not 1 <= table <= 0xFFFFFFFF or table in (253, 255):
            raise ValueError(
                f"table {table} is not a usable routing table (1..2^32-1, not 253/255)"
            )
        if not 5 <= protocol <= 255:
            raise ValueError(f"protocol {protocol} is reserved to the kernel (use 5..255)")
        if not 1 <= metric <= 0xFFFFFFFF:
            raise ValueError(f"metric {metric} out of range (1..2^32-1)")
        self.table = table
        self.protocol = protocol
        self.metric = metric
        self.netns = netns
        self.batch_bytes = max(batch_bytes, 1)  # 1: one route per sendmsg (for comparison)
        self._routes = 0  # our routes at our metric, as far as we know (`count`)
        self._strays: dict[tuple[Family, Prefix, int], KernelRoute] = {}
        self._seq = 0
        self._buf = bytearray(1 << 20)
        self._rtm_table = table if table < 256 else RT_TABLE_COMPAT
        self._table_attr = _attr(RTA_TABLE, _U32.pack(table))
        self._sock = self._open(timeout)
        self._max_messages = max(16, self._rcvbuf // 4096)  # every error of a batch must fit

    # ---- socket ----------------------------------------------------------------------------

    def _open(self, timeout: float) -> socket.socket:
        if self.netns is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        else:  # flags=0: open the namespace, never create it
            sock = pr_netns.create_socket(
                self.netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0
            )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK):
                with contextlib.suppress(OSError):  # older kernels: plainer errors, client filter
                    sock.setsockopt(SOL_NETLINK, option, 1)
            sock.bind((0, 0))
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> FibWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading ---------------------------------------------------------------------------

    def count(self) -> int:
        """Our routes at our metric in the kernel, as far as the writer knows: counted by
        `existing()`, then kept up by what each batch did."""
        return self._routes

    def existing(self) -> dict[tuple[Family, Prefix, int], KernelRoute]:
        """Every route of our protocol in our table, as the kernel has it now, keyed by
        (family, prefix, metric). Routes at our metric are counted (`count`); ones at another
        metric (a previous configuration) are removed by `reconcile` and `remove_all`."""
        found: dict[tuple[Family, Prefix, int], KernelRoute] = {}
        for af in (socket.AF_INET, socket.AF_INET6):
            for route in self._dump(af):
                found[(route.family, route.prefix, route.metric)] = route
        metric = self.metric
        self._strays = {key: route for key, route in found.items() if route.metric != metric}
        self._routes = len(found) - len(self._strays)
        return found

    # ---- changing --------------------------------------------------------------------------

    def apply(self, changes: Iterable[FibChange]) -> FibResult:
        """Make the kernel follow Loc-RIB changes: `(family, prefix, wanted, there)`, next hops
        or None (or no next hops) for no route. `there` is our route in the kernel now: None
        means a create that must not overwrite another's route (NLM_F_EXCL), else a replace.
        Unchanged routes cost nothing."""
        result = FibResult()
        self._run(self._work(changes, result), result)
        return result

    def reconcile(self, desired: Mapping[Family, Mapping[Prefix, Iterable[bytes]]]) -> FibResult:
        """Make our routes in the kernel exactly `desired` (the Loc-RIB's selection): after a
        restart, once End-of-RIB or the restart time says the table is complete. Routes of ours
        not desired (stale) are removed; missing or different ones installed or replaced;
        routes of ours at another metric are replaced by ones at ours (new first)."""
        result = FibResult()
        self._run(self._work(self._differences(self.existing(), desired), result), result)
        self._run(self._stray_work(), result)
        return result

    def _differences(
        self,
        found: dict[tuple[Family, Prefix, int], KernelRoute],
        desired: Mapping[Family, Mapping[Prefix, Iterable[bytes]]],
    ) -> Iterator[FibChange]:
        """`desired` against our routes at our metric in `found` (which it empties of them),
        lazily: no list of a million changes."""
        metric = self.metric
        for family, table in desired.items():
            for prefix, hops in table.items():
                there = found.pop((family, prefix, metric), None)
                yield family, prefix, tuple(hops), None if there is None else there.next_hops
        for (family, prefix, m), route in list(found.items()):
            if m == metric:
                del found[(family, prefix, m)]
                yield family, prefix, None, route.next_hops

    def remove_all(self) -> FibResult:
        """Remove every route of our protocol from our table (`--shutdown=withdraw`)."""
        found = self.existing()
        result = FibResult()
        work: list[_Work] = [
            (_REMOVE, family, prefix, None, metric, route.next_hops)
            for (family, prefix, metric), route in found.items()
            if metric == self.metric
        ]
        self._run(iter(work), result)
        self._run(self._stray_work(), result)
        return result

    # ---- inside ----------------------------------------------------------------------------

    def _work(self, changes: Iterable[FibChange], result: FibResult) -> Iterator[_Work]:
        metric = self.metric
        for family, prefix, wanted, was in changes:
            there = (canonical(was) if len(was) > 1 else was) if was else None
            if not wanted:
                if there is None:
                    result.unchanged += 1
                    continue
                yield (_REMOVE, family, prefix, None, metric, there)
                continue
            hops = canonical(wanted) if len(wanted) > 1 else tuple(wanted)
            if there == hops:
                result.unchanged += 1
                continue
            yield (_INSTALL if there is None else _REPLACE, family, prefix, hops, metric, there)

    def _stray_work(self) -> Iterator[_Work]:
        for (family, prefix, metric), route in list(self._strays.items()):
            yield (_REMOVE, family, prefix, None, metric, route.next_hops)

    def _template(self, op: int, family: Family, length: int, metric: int) -> _Template:
        """What every message of this kind shares: its rtmsg, the RTA_DST header, and the table
        and metric attributes that follow the address."""
        afi = family[0]
        alen = _ALEN[afi]
        tail = self._table_attr + _attr(RTA_PRIORITY, _U32.pack(metric))
        if op == _REMOVE:
            scope, rtype = RT_SCOPE_NOWHERE, 0
            kind, flags = RTM_DELROUTE, NLM_F_REQUEST
        else:
            scope, rtype = RT_SCOPE_UNIVERSE, RTN_UNICAST
            replace = NLM_F_REPLACE if op == _REPLACE else NLM_F_EXCL
            kind, flags = RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | replace
        body = _RTMSG.pack(
            _AF[afi], length, 0, 0, self._rtm_table, self.protocol, scope, rtype, 0
        ) + _RTATTR.pack(4 + alen, RTA_DST)
        return body, tail, kind, flags, alen

    def _hops_attr(self, afi: int, hops: NextHops) -> bytes:
        """RTA_GATEWAY (or RTA_VIA) for one next hop, RTA_MULTIPATH for several."""
        if len(hops) == 1:
            return _gateway(afi, hops[0])
        nexthops = b""
        for hop in hops:
            gw = _gateway(afi, hop)
            nexthops += _RTNH.pack(_RTNH.size + len(gw), 0, 0, 0) + gw
        return _attr(RTA_MULTIPATH, nexthops)

    def _run(self, work: Iterator[_Work], result: FibResult) -> None:
        """Send `work` in batches; record each outcome in `result` and in our view."""
        limit, max_messages = self.batch_bytes, self._max_messages
        templates: dict[tuple[int, Family, int, int], _Template] = {}
        hop_attrs: dict[tuple[int, NextHops], bytes] = {}
        pack = _NLMSG.pack
        buf = bytearray()
        batch: list[_Work] = []
        last_header = 0
        for item in work:
            op, family, prefix, hops, metric, _ = item
            length = prefix[0]
            key = (op, family, length, metric)
            tpl = templates.get(key)
            if tpl is None:
                tpl = templates[key] = self._template(op, family, length, metric)
            body, tail, kind, flags, alen = tpl
            hop = b""
            if hops:
                hkey = (family[0], hops)
                hop = hop_attrs.get(hkey, b"")
                if not hop:
                    hop = hop_attrs[hkey] = self._hops_attr(family[0], hops)
            size = _HEADER + 4 + alen + len(tail) + len(hop)
            if batch and (len(buf) + size > limit or len(batch) >= max_messages):
                self._flush(batch, buf, last_header, result)
                buf = bytearray()
                batch = []
            last_header = len(buf)
            buf += pack(size, kind, flags, self._seq + 1 + len(batch), 0)
            buf += body
            buf += prefix[1:]  # the octets: RTA_DST is the address, zero-padded below
            if len(prefix) <= alen:
                buf += bytes(alen + 1 - len(prefix))
            buf += tail
            buf += hop
            batch.append(item)
        if batch:
            self._flush(batch, buf, last_header, result)

    def _flush(
        self, batch: list[_Work], buf: bytearray, last_header: int, result: FibResult
    ) -> None:
        first = self._seq + 1
        last = first + len(batch) - 1
        self._seq = last
        flags = struct.unpack_from("=H", buf, last_header + 6)[0]
        struct.pack_into("=H", buf, last_header + 6, flags | NLM_F_ACK)  # closes the batch
        lost = False
        try:
            self._sock.send(buf)
            failures = self._collect(first, last)
        except OSError as exc:
            # The kernel's answers to this batch are lost (socket error, receive buffer overrun,
            # timeout): every route of it is reported, and `lost` tells the caller that what
            # the kernel has is unknown (a reconcile reads it); the count is read again.
            code = exc.errno or errno_mod.EIO
            failures = dict.fromkeys(range(first, last + 1), (code, f"netlink: {exc}"))
            result.lost = lost = True
            with contextlib.suppress(OSError):
                self.existing()  # counts this batch's routes that did go in
        strays = self._strays
        our_metric = self.metric
        counts = [0, 0, 0]
        ours = 0  # change in our routes at our metric
        for seq, (op, family, prefix, _, metric, there) in enumerate(batch, first):
            if failures:
                failure = failures.get(seq)
                if failure is not None:
                    code, detail = failure
                    if not (op == _REMOVE and code == errno_mod.ESRCH):  # ESRCH: already gone
                        kind = _OPS[op]
                        text = _error_text(code, kind, detail)
                        result.errors.append(FibError(family, prefix, kind, code, text, there))
                        continue
            counts[op] += 1
            if metric != our_metric:
                strays.pop((family, prefix, metric), None)
            elif op == _INSTALL:
                ours += 1
            elif op == _REMOVE:
                ours -= 1
        if not lost:
            self._routes += ours
        result.installed += counts[_INSTALL]
        result.replaced += counts[_REPLACE]
        result.removed += counts[_REMOVE]

    def _received(self) -> Iterator[tuple[memoryview, int, int, int]]:
        """Every netlink message received from now on, as (message, type, flags, sequence
        number), for as long as the caller iterates. A message is a view into the one receive
        buffer: valid until the caller asks for the next."""
        buf = self._buf
        view = memoryview(buf)
        while True:
            n = self._sock.recv_into(buf)
            off = 0
            while off + _NLMSG.size <= n:
                length, kind, flags, seq, _ = _NLMSG.unpack_from(buf, off)
                if length < _NLMSG.size:
                    break
                yield view[off : off + length], kind, flags, seq
                off += (length + 3) & ~3

    def _collect(self, first: int, last: int) -> dict[int, tuple[int, str]]:
        """Read the kernel's answers to one batch up to the ACK of its last message."""
        failures: dict[int, tuple[int, str]] = {}
        for msg, kind, flags, seq in self._received():
            if kind == NLMSG_ERROR and first <= seq <= last:
                code = -_I32.unpack_from(msg, _NLMSG.size)[0]
                if code:
                    failures[seq] = (code, _ext_ack(msg, flags))
                if seq == last:
                    return failures
        raise AssertionError("unreachable: _received never ends")

    def _dump(self, af: int) -> list[KernelRoute]:
        """Our routes of one address family. The kernel flags a dump that the table changed
        under (NLM_F_DUMP_INTR): it is done again, up to 5 times, then taken as it is."""
        for _ in range(5):
            routes, interrupted = self._dump_once(af)
            if not interrupted:
                break
        return routes

    def _dump_once(self, af: int) -> tuple[list[KernelRoute], bool]:
        routes: list[KernelRoute] = []
        interrupted = False
        self._seq += 1
        seq = self._seq
        body = _RTMSG.pack(af, 0, 0, 0, self._rtm_table, self.protocol, 0, 0, 0)
        request = body + self._table_attr
        self._sock.send(
            _NLMSG.pack(
                _NLMSG.size + len(request), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
            )
            + request
        )
        for msg, kind, flags, mseq in self._received():
            if mseq != seq:
                continue
            interrupted |= bool(flags & NLM_F_DUMP_INTR)
            if kind == NLMSG_DONE:
                return routes, interrupted
            if kind == NLMSG_ERROR:
                code = -_I32.unpack_from(msg, _NLMSG.size)[0]
                raise OSError(code, f"route dump: {os.strerror(code)}")
            if kind == RTM_NEWROUTE:
                route = self._parse_route(msg)
                if route is not None:
                    routes.append(route)
        raise AssertionError("unreachable: _received never ends")

    def _parse_route(self, msg: memoryview) -> KernelRoute | None:
        af, dst_len, _, _, table8, proto, _, rtype, _ = _RTMSG.unpack_from(msg, _NLMSG.size)
        if proto != self.protocol or af not in _AFI or rtype != RTN_UNICAST:
            return None
        afi = _AFI[af]
        table, dst, metric = table8, b"", 0
        hops: list[bytes] = []
        pos, end = _HEADER, len(msg)
        while pos + 4 <= end:
            alen, kind = _RTATTR.unpack_from(msg, pos)
            if alen < 4:
                break
            payload = msg[pos + 4 : pos + alen]
            if kind == RTA_TABLE:
                table = _U32.unpack_from(payload)[0]
            elif kind == RTA_DST:
                dst = bytes(payload)
            elif kind == RTA_PRIORITY:
                metric = _U32.unpack_from(payload)[0]
            elif kind in (RTA_GATEWAY, RTA_VIA):
                hops.append(_hop(kind, payload))
            elif kind == RTA_MULTIPATH:
                hops += _multipath_hops(payload)
            pos += (alen + 3) & ~3
        if table != self.table:
            return None
        prefix = bytes((dst_len,)) + dst[: (dst_len + 7) >> 3]
        return KernelRoute((afi, SAFI_UNICAST), prefix, canonical(hops), metric)


def _hop(kind: int, payload: memoryview) -> bytes:
    return bytes(payload[2:]) if kind == RTA_VIA else bytes(payload)


def _multipath_hops(payload: memoryview) -> list[bytes]:
    hops: list[bytes] = []
    pos = 0
    while pos + _RTNH.size <= len(payload):
        nh_len = _RTNH.unpack_from(payload, pos)[0]
        if nh_len < _RTNH.size:
            break
        apos = pos + _RTNH.size
        while apos + 4 <= pos + nh_len:
            alen, kind = _RTATTR.unpack_from(payload, apos)
            if alen < 4:
                break
            if kind in (RTA_GATEWAY, RTA_VIA):
                hops.append(_hop(kind, payload[apos + 4 : apos + alen]))
            apos += (alen + 3) & ~3
        pos += (nh_len + 3) & ~3
    return hops


def _ext_ack(msg: memoryview, flags: int) -> str:
    """The kernel's extended-ACK message text (NLMSGERR_ATTR_MSG), if it sent one."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    inner_len = _U32.unpack_from(msg, _NLMSG.size + 4)[0]
    pos = _NLMSG.size + 4 + (_NLMSG.size if flags & NLM_F_CAPPED else (inner_len + 3) & ~3)
    while pos + 4 <= len(msg):
        alen, kind = _RTATTR.unpack_from(msg, pos)
        if alen < 4:
            break
        if kind == NLMSGERR_ATTR_MSG:
            return bytes(msg[pos + 4 : pos + alen]).rstrip(b"\0").decode(errors="replace")
        pos += (alen + 3) & ~3
    return ""


class AsyncFibWriter:
    """A `FibWriter` for asyncio: every call runs in one worker thread, in call order."""

    def __init__(self, writer: FibWriter) -> None:
        self.writer = writer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kubgp-fib")

    async def existing(self) -> dict[tuple[Family, Prefix, int], KernelRoute]:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.writer.existing
        )

    async def apply(self, changes: Iterable[FibChange]) -> FibResult:
        """`changes` is read in the worker thread, lazily (a list of a million change tuples
        was ~90 MB at once): what it iterates must stay unchanged until this returns."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.writer.apply, changes
        )

    async def reconcile(
        self, desired: Mapping[Family, Mapping[Prefix, Iterable[bytes]]]
    ) -> FibResult:
        """`desired` is read in the worker thread: it must stay unchanged until this returns
        (the route service hands over a snapshot of its own; a copy here was a second one)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.writer.reconcile, desired
        )

    async def remove_all(self) -> FibResult:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.writer.remove_all
        )

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.writer.close)
        self._executor.shutdown(wait=True)


# ---- the node's own routes: next-hop resolution -----------------------------------------------

_ROUTE_GROUPS = RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
_LINK_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
_LINK_MESSAGES = frozenset({RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR})
_ROUTE_MESSAGES = frozenset({RTM_NEWROUTE, RTM_DELROUTE})
SO_ATTACH_FILTER = 26
_BPF = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k


def _drop_protocol_filter(protocol: int) -> bytes:
    """A classic BPF program for a netlink socket: drop route notifications whose rtm_protocol
    is `protocol` (ours: a 100k-route install would otherwise wake the monitor 100k times),
    keep everything else. Loads are big-endian, so nlmsg_type is compared byte-swapped."""
    new_be = int.from_bytes(struct.pack("=H", RTM_NEWROUTE), "big")
    del_be = int.from_bytes(struct.pack("=H", RTM_DELROUTE), "big")
    ld_h, ld_b, jeq, ret = 0x28, 0x30, 0x15, 0x06  # BPF_LD|H|ABS, BPF_LD|B|ABS, JMP|JEQ|K, RET|K
    keep = 0xFFFFFFFF
    program = [
        (ld_h, 0, 0, 4),  # nlmsg_type
        (jeq, 2, 0, new_be),  # -> 4
        (jeq, 1, 0, del_be),  # -> 4
        (ret, 0, 0, keep),  # not a route message
        (ld_b, 0, 0, _NLMSG.size + 5),  # rtm_protocol
        (jeq, 0, 1, protocol),
        (ret, 0, 0, 0),  # ours: dropped in the kernel
        (ret, 0, 0, keep),
    ]
    return b"".join(_BPF.pack(*insn) for insn in program)


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    import ctypes

    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // _BPF.size, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


@dataclass(frozen=True, slots=True)
class NodeChanges:
    """What the node's kernel told us since the last read: links or addresses (which can take
    our routes with them: the kernel drops routes through a link that goes down without a
    notification), routes not ours, or lost notifications (receive buffer overrun)."""

    links: bool = False
    routes: bool = False
    overrun: bool = False

    def __bool__(self) -> bool:
        return self.links or self.routes or self.overrun


class NodeRoutes:
    """The node's routes that can carry a BGP next hop, and notifications when they change.

    A next hop is usable when the kernel itself would accept a route through it: a route
    without a gateway (a connected network, or a device route an operator added) covers it,
    IPv4 with link scope (the kernel checks the gateway with scope > universe), IPv6 any;
    a route through a gateway does not (the kernel does not resolve recursively; neither do
    we), and neither does a link that is down or without carrier (RTNH_F_LINKDOWN/DEAD).
    Routes of our own protocol are never read. Cost: the route's metric.

    `read()` dumps `tables` (both families; blocking: run it in a thread). `changes()` drains
    the notifications that arrived on a second socket subscribed to links, addresses and
    routes (not blocking; `fileno()` for the event loop), with our own route notifications
    dropped in the kernel by a BPF filter.
    """

    def __init__(self, *, protocol: int, tables: tuple[int, ...], netns: str | None = None) -> None:
        self.protocol = protocol
        self.tables = tuple(dict.fromkeys(tables))
        self.netns = netns
        self._seq = 0
        self._buf = bytearray(1 << 16)  # notifications (the event loop)
        self._dump_buf = bytearray(1 << 20)  # dumps (a worker thread)
        self._dump_sock = self._socket()
        try:
            for option in (NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
                with contextlib.suppress(OSError):
                    self._dump_sock.setsockopt(SOL_NETLINK, option, 1)
            self._dump_sock.bind((0, 0))
            self._dump_sock.settimeout(DEFAULT_TIMEOUT)
            self._events = self._socket()
        except BaseException:
            self._dump_sock.close()
            raise
        try:
            self._events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            _attach_filter(self._events, _drop_protocol_filter(protocol))
            self._events.bind((0, _ROUTE_GROUPS | _LINK_GROUPS))
            self._events.setblocking(False)
        except BaseException:
            self.close()
            raise

    def _socket(self) -> socket.socket:
        if self.netns is None:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        sock: socket.socket = pr_netns.create_socket(
            self.netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0
        )
        return sock

    def close(self) -> None:
        self._dump_sock.close()
        if hasattr(self, "_events"):
            self._events.close()

    def fileno(self) -> int:
        return self._events.fileno()

    def changes(self) -> NodeChanges:
        """Everything the kernel said since the last call, summed up; never blocks."""
        links = routes = overrun = False
        buf = self._buf
        while True:
            try:
                n = self._events.recv_into(buf)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno_mod.ENOBUFS:  # notifications were lost: re-read all
                    overrun = True
                    continue
                raise
            off = 0
            while off + _NLMSG.size <= n:
                length, kind, _, _, _ = _NLMSG.unpack_from(buf, off)
                if length < _NLMSG.size:
                    break
                if kind in _LINK_MESSAGES:
                    links = True
                elif kind in _ROUTE_MESSAGES:
                    routes = True
                off += (length + 3) & ~3
        return NodeChanges(links=links, routes=routes, overrun=overrun)

    def read(self) -> list[ResolverRoute]:
        """The routes of `tables` that can carry a next hop (see the class doc)."""
        out: list[ResolverRoute] = []
        for table in self.tables:
            for af in (socket.AF_INET, socket.AF_INET6):
                for _ in range(5):  # a dump the table changed under is done again
                    routes, interrupted = self._dump_once(af, table)
                    if not interrupted:
                        break
                out += routes
        return out

    def _dump_once(self, af: int, table: int) -> tuple[list[ResolverRoute], bool]:
        self._seq += 1
        seq = self._seq
        rtm_table = table if table < 256 else RT_TABLE_COMPAT
        request = _RTMSG.pack(af, 0, 0, 0, rtm_table, 0, 0, 0, 0) + _attr(
            RTA_TABLE, _U32.pack(table)
        )
        self._dump_sock.send(
            _NLMSG.pack(
                _NLMSG.size + len(request), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
            )
            + request
        )
        routes: list[ResolverRoute] = []
        interrupted = False
        buf = self._dump_buf
        view = memoryview(buf)
        protocol = self.protocol
        while True:
            n = self._dump_sock.recv_into(buf)
            off = 0
            while off + _NLMSG.size <= n:
                length, kind, flags, mseq, _ = _NLMSG.unpack_from(buf, off)
                if length < _NLMSG.size:
                    break
                if mseq == seq:
                    interrupted |= bool(flags & NLM_F_DUMP_INTR)
                    if kind == NLMSG_DONE:
                        return routes, interrupted
                    if kind == NLMSG_ERROR:
                        code = -_I32.unpack_from(buf, off + _NLMSG.size)[0]
                        raise OSError(code, f"route dump: {os.strerror(code)}")
                    # rtm_protocol first: our own routes (possibly a million) cost one byte read
                    if kind == RTM_NEWROUTE and buf[off + _NLMSG.size + 5] != protocol:
                        route = _usable_route(view[off : off + length], table)
                        if route is not None:
                            routes.append(route)
                off += (length + 3) & ~3


def _usable_route(msg: memoryview, table: int) -> ResolverRoute | None:
    af, dst_len, _, _, table8, _, scope, rtype, flags = _RTMSG.unpack_from(msg, _NLMSG.size)
    if rtype != RTN_UNICAST or af not in _AFI or flags & (RTNH_F_DEAD | RTNH_F_LINKDOWN):
        return None
    if af == socket.AF_INET and scope != RT_SCOPE_LINK:
        return None  # a gateway must be on a link-scope route (IPv4)
    afi = _AFI[af]
    dst, metric, rtable, oif = b"", 0, table8, False
    pos, end = _HEADER, len(msg)
    while pos + 4 <= end:
        alen, kind = _RTATTR.unpack_from(msg, pos)
        if alen < 4:
            break
        if kind in (RTA_GATEWAY, RTA_VIA, RTA_MULTIPATH):
            return None  # through a gateway: the kernel resolves no further
        if kind == RTA_DST:
            dst = bytes(msg[pos + 4 : pos + alen])
        elif kind == RTA_PRIORITY:
            metric = _U32.unpack_from(msg, pos + 4)[0]
        elif kind == RTA_TABLE:
            rtable = _U32.unpack_from(msg, pos + 4)[0]
        elif kind == RTA_OIF:
            oif = True
        pos += (alen + 3) & ~3
    if not oif or rtable != table:
        return None
    address = int.from_bytes(dst.ljust(_ALEN[afi], b"\0"), "big")
    return ResolverRoute(afi=afi, network=address, length=dst_len, cost=metric)
