"""`kubgp-speaker status` and `kubgp-speaker apply FILE`: talk to a running speaker's control
socket (`--socket`, default `$KUBGP_SPEAKER_SOCKET` or /run/kubgp/speaker.sock).

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

from speaker.api.client import SpeakerError, snapshot_sync, status_sync
from speaker.api.ipc import BfdStatus, IpcError, Status
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


def format_status_table(status: Status) -> str:
    """The status reply as a fixed-width table and an `applied:` line. The BFD column is
    there when some peer has BFD."""
    with_bfd = any(p.bfd is not None for p in status.peers)
    bfd_header: tuple[str, ...] = ("BFD",) if with_bfd else ()
    rows = [("NAME", "ADDRESS", "STATE", "SINCE", "ADVERTISED", "RECEIVED", *bfd_header,
             "LAST ERROR")]  # fmt: skip
    rows += [
        (
            p.name,
            p.address,
            p.state,
            _since(p.since),
            str(p.prefixes_advertised),
            str(p.prefixes_received),
            *((bfd_cell(p.bfd),) if with_bfd else ()),
            p.last_error or "-",
        )
        for p in status.peers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    ]
    if status.applied is None:
        # Standalone (`run --config`), the file is the state and has no version.
        lines.append("applied: no version (a --config file, or no state from an agent yet)")
    else:
        lines.append(
            f"applied: epoch {status.applied.epoch} generation {status.applied.generation}"
        )
    return "\n".join(lines)


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

    apply = subparsers.add_parser(
        "apply",
        help="send a desired-state file to a running speaker as a snapshot",
        description=__doc__,
    )
    apply.add_argument("file", help="desired state, YAML or JSON (kubgp.io/speaker/v1)")
    _socket_arg(apply, timeout=60.0)
    apply.set_defaults(handler=_apply)


__all__ = ["format_status_table", "register"]
