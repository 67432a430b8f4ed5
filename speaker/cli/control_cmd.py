"""`kubgp-speaker status`, `kubgp-speaker routes [PREFIX]` and `kubgp-speaker apply FILE`: talk
to a running speaker's control socket (`--socket`, default `$KUBGP_SPEAKER_SOCKET` or
/run/kubgp/speaker.sock).

`routes` lists the received prefixes inside PREFIX (all without it; `--peer` for one peer's):
every peer's path with the import policy's verdict, best and multipath marks and why a path
is not used, and per prefix whether it is in the kernel, or why not (docs/route-import.md).

`status` prints the peers (name, address, state, since, prefixes advertised/received, BFD
when a peer has it, last error) and the applied epoch/generation, as a table or as the
protocol's JSON reply. `apply` reads a desired state (YAML or JSON, schema
kubgp.io/speaker/v1), checks it locally, and sends it as a snapshot of a new epoch, as a new
agent would; exit 0 on ack, 1 on a nack or when the speaker cannot be reached, 2 when the
file cannot be read as a desired state (nothing is sent).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from speaker.api.client import SpeakerError, routes_sync, snapshot_sync, status_sync
from speaker.api.fields import FieldError
from speaker.api.fields import prefix as cidr_prefix
from speaker.api.ipc import BfdStatus, IpcError, PeerStatus, Status
from speaker.api.route_status import DEFAULT_ROUTES_LIMIT, FibSummary, RoutePath, Routes
from speaker.cli.config_file import ConfigError, load_config

EXIT_INPUT = 2


def _socket_arg(parser: argparse.ArgumentParser, *, timeout: float) -> None:
    parser.add_argument(
        "--socket",
        default=None,
        metavar="PATH",
        help="the speaker's control socket (default: $KUBGP_SPEAKER_SOCKET or "
        "/run/kubgp/speaker.sock)",
    )
    parser.add_argument(
        "--timeout", type=float, default=timeout, help=f"seconds to wait (default {timeout:g})"
    )


def _since(value: float | None) -> str:
    if value is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def bfd_cell(bfd: BfdStatus | None) -> str:
    """`Up`; `Down(control-detection-time-expired),bgp-held`; `-` without BFD."""
    if bfd is None:
        return "-"
    text = bfd.state
    if bfd.state != "Up" and bfd.last_diagnostic:
        text += f"({bfd.last_diagnostic})"
    return text + (",bgp-held" if bfd.bgp_held else "")


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last one is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    ]


def _route_counts(p: PeerStatus) -> tuple[str, str, str]:
    return _count(p.prefixes_accepted), _count(p.prefixes_best), _count(p.prefixes_installed)


def fib_line(fib: FibSummary) -> str:
    """`fib: on (table 254, protocol 179, metric 20, maxPaths 8): 3 selected, 3 installed`."""
    if fib.state == "off":
        head = f"fib: off (no `fib` in the state: nothing is installed; maxPaths {fib.max_paths})"
    else:
        head = (f"fib: {fib.state} (table {fib.table}, protocol {fib.protocol}, metric "
                f"{fib.metric}, maxPaths {fib.max_paths})")  # fmt: skip
    text = f"{head}: {fib.selected} selected, {fib.installed} installed, {fib.failed} refused"
    if fib.state == "deferred":
        until = _since(fib.deferred_until)
        text += (f"; graceful restart: previous routes kept until End-of-RIB from "
                 f"{', '.join(fib.waiting_for) or '-'} (at the latest {until})")  # fmt: skip
    return text


def format_status_table(status: Status) -> str:
    """The status reply as a fixed-width table and an `applied:` line. The BFD column is
    there when some peer has BFD, the route import columns when the speaker imports routes
    (and then a `fib:` line)."""
    with_bfd = any(p.bfd is not None for p in status.peers)
    with_routes = status.fib is not None
    bfd_header: tuple[str, ...] = ("BFD",) if with_bfd else ()
    route_header: tuple[str, ...] = ("ACCEPTED", "BEST", "INSTALLED") if with_routes else ()
    rows = [("NAME", "ADDRESS", "STATE", "SINCE", "ADVERTISED", "RECEIVED", *route_header,
             *bfd_header, "LAST ERROR")]  # fmt: skip
    rows += [
        (
            p.name,
            p.address,
            p.state,
            _since(p.since),
            str(p.prefixes_advertised),
            str(p.prefixes_received),
            *(_route_counts(p) if with_routes else ()),
            *((bfd_cell(p.bfd),) if with_bfd else ()),
            p.last_error or "-",
        )
        for p in status.peers
    ]
    lines = _columns(rows)
    if status.fib is not None:
        lines.append(fib_line(status.fib))
        for note in status.fib.not_installed:
            lines.append(f"  not installed: {note.prefix}: {note.text}")
    if status.applied is None:
        # Standalone (`run --config`), the file is the state and has no version.
        lines.append("applied: no version (a --config file, or no state from an agent yet)")
    else:
        lines.append(
            f"applied: epoch {status.applied.epoch} generation {status.applied.generation}"
        )
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _path_state(path: RoutePath) -> str:
    marks = [m for m, on in (("best", path.best), ("multipath", path.multipath)) if on]
    if path.stale:
        marks.append("stale")
    text = ",".join(marks) or "-"
    return f"{text}  {path.note}" if path.note else text


def format_routes_table(routes: Routes) -> str:
    """Every prefix with its paths (one row each) and a line saying where it went."""
    lines: list[str] = []
    if routes.fib is not None:
        lines.append(fib_line(routes.fib))
    rows: list[tuple[str, ...]] = [
        ("PREFIX", "PEER", "NEXT HOP", "AS PATH", "ORIGIN", "LOCPRF", "MED", "POLICY", "STATE")
    ]
    kernel: dict[int, str] = {}
    for entry in routes.prefixes:
        for i, path in enumerate(entry.paths):
            policy = path.policy + (f" #{path.rule}" if path.rule is not None else " (no rule)")
            rows.append((
                entry.prefix if i == 0 else "",
                path.peer,
                path.next_hop or "-",
                path.as_path or "-",
                path.origin,
                _count(path.local_pref),
                _count(path.med),
                policy,
                _path_state(path),
            ))  # fmt: skip
        if entry.installed:
            kernel[len(rows)] = f"  -> installed via {', '.join(entry.next_hops)}"
        else:
            kernel[len(rows)] = f"  -> not installed: {entry.reason}"
    table = _columns(rows)
    for index, line in enumerate(table):
        lines.append(line)
        if index + 1 in kernel:
            lines.append(kernel[index + 1])
    shown = len(routes.prefixes)
    if routes.truncated:
        lines.append(f"{shown} of {routes.total} prefixes shown (--limit)")
    elif not shown:
        lines.append("no received prefix matches")
    return "\n".join(lines)


def _routes(args: argparse.Namespace) -> int:
    prefix = args.prefix
    if prefix is not None:
        if "/" not in prefix:
            prefix += "/128" if ":" in prefix else "/32"
        try:
            prefix = cidr_prefix(prefix, "PREFIX")
        except FieldError as err:
            print(f"kubgp-speaker routes: {err}", file=sys.stderr)
            return EXIT_INPUT
    try:
        routes = routes_sync(
            args.socket, prefix=prefix, peer=args.peer, limit=args.limit, timeout=args.timeout
        )
    except (SpeakerError, IpcError) as err:
        print(f"kubgp-speaker routes: {err}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(routes.to_json(), indent=2))
    else:
        print(format_routes_table(routes))
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        status = status_sync(args.socket, timeout=args.timeout)
    except SpeakerError as err:
        print(f"kubgp-speaker status: {err}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(format_status_table(status))
    return 0


def _apply(args: argparse.Namespace) -> int:
    try:
        state = load_config(Path(args.file))
    except ConfigError as err:
        print(f"kubgp-speaker apply: {err}", file=sys.stderr)
        return EXIT_INPUT
    try:
        ack = snapshot_sync(state, args.socket, timeout=args.timeout)
    except (SpeakerError, IpcError) as err:
        print(f"kubgp-speaker apply: refused: {err}", file=sys.stderr)
        return 1
    print(f"applied: epoch {ack.epoch} generation {ack.generation}")
    return 0


def register(subparsers: Any) -> None:
    """Add the `status` and `apply` subcommands to `kubgp-speaker`."""
    status = subparsers.add_parser(
        "status",
        help="show a running speaker's peers and applied generation",
        description=__doc__,
    )
    _socket_arg(status, timeout=10.0)
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status.set_defaults(handler=_status)

    routes = subparsers.add_parser(
        "routes",
        help="received routes with the import policy's verdict, best and multipath marks, and "
        "whether each prefix is in the kernel (or why not)",
        description=__doc__,
    )
    routes.add_argument(
        "prefix", nargs="?", help="only prefixes inside this CIDR (an address: that host)"
    )
    routes.add_argument("--peer", help="only this peer's paths")
    routes.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_ROUTES_LIMIT,
        help="at most this many prefixes (default %(default)s)",
    )
    _socket_arg(routes, timeout=30.0)
    routes.add_argument("-o", "--output", choices=("table", "json"), default="table")
    routes.set_defaults(handler=_routes)

    apply = subparsers.add_parser(
        "apply",
        help="send a desired-state file to a running speaker as a snapshot",
        description=__doc__,
    )
    apply.add_argument("file", help="desired state, YAML or JSON (kubgp.io/speaker/v1)")
    _socket_arg(apply, timeout=60.0)
    apply.set_defaults(handler=_apply)


__all__ = ["fib_line", "format_routes_table", "format_status_table", "register"]
