"""`kubgp-controller plan`: an offline dry run of the planner on manifests.

Reads YAML/JSON files and directories (multi-document YAML, `kubectl get -o yaml` Lists),
keeps the kinds the planner reads and ignores the rest, and prints one node's desired speaker
state and the reasons for what was left out. Peer passwords are redacted unless
`--show-secrets`. Exit status: 0 with a state, 1 when the node gets no state (see the reasons),
2 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from controller.domain.objects import is_planner_kind
from controller.domain.planner import DEFAULT_ASN, plan
from controller.domain.snapshot import Snapshot

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
REDACTED = "<redacted>"


class ManifestError(Exception):
    pass


def register(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    p: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="print one node's desired BGP state, planned offline from manifests",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        required=True,
        metavar="PATH",
        help="manifest file or directory (repeatable; '-' reads standard input)",
    )
    p.add_argument("--node", required=True, help="the node to plan for")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.add_argument("--default-asn", type=int, default=DEFAULT_ASN, help="ASN without annotation")
    p.add_argument("--show-secrets", action="store_true", help="print peer passwords")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        objects = [o for path in args.paths for o in load_manifests(path)]
    except ManifestError as err:
        print(f"kubgp-controller plan: {err}", file=sys.stderr)
        return 2
    result = plan(Snapshot.build(objects), args.node, default_asn=args.default_asn)
    state = None if result.state is None else result.state.to_dict()
    if state is not None and not args.show_secrets:
        for peer in state["peers"]:  # type: ignore[attr-defined]
            if "password" in peer:
                peer["password"] = REDACTED
    doc = {
        "node": args.node,
        "state": state,
        "reasons": [r.to_dict() for r in result.reasons],
    }
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(yaml.safe_dump(doc, sort_keys=False), end="")
    return 0 if result.state is not None else 1


def load_manifests(path: str) -> Iterator[Mapping[str, object]]:
    """Every planner-relevant object in a file, a directory (recursively) or stdin ('-')."""
    if path == "-":
        try:
            text = sys.stdin.read()
        except (OSError, UnicodeDecodeError) as err:
            raise ManifestError(f"<stdin>: {err}") from None
        yield from _documents(text, "<stdin>")
        return
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
    elif p.is_file():
        files = [p]
    else:
        raise ManifestError(f"{path}: no such file or directory")
    for f in files:
        try:
            text = f.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ManifestError(f"{f}: {err}") from None
        yield from _documents(text, str(f))


def _documents(text: str, name: str) -> Iterator[Mapping[str, object]]:
    try:
        docs = list(yaml.safe_load_all(text))  # JSON is YAML too
        objects = [o for doc in docs for o in _flatten(doc)]
    except yaml.YAMLError as err:
        raise ManifestError(f"{name}: {err}") from None
    except RecursionError:
        raise ManifestError(f"{name}: nested too deeply") from None
    yield from objects


def _flatten(doc: object) -> Iterator[Mapping[str, object]]:
    if not isinstance(doc, Mapping):
        return
    if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _flatten(item)
    elif is_planner_kind(doc):
        yield doc
