"""`kubgp-speaker`: the speaker's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from speaker.cli import control_cmd, decode_cmd, run_cmd

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubgp-speaker",
        description="kubgp's BGP-4 speaker: a small BGP daemon with a declarative API.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    decode_cmd.register(subparsers)
    run_cmd.register(subparsers)
    control_cmd.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
