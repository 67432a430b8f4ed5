"""`kubgp-controller`: the controller's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from controller.cli import cluster_cmd, node_cmd, plan_cmd

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubgp-controller",
        description="kubgp's Kubernetes controller: plans each node's BGP advertisements.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    plan_cmd.register(subparsers)
    node_cmd.register(subparsers)
    cluster_cmd.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
