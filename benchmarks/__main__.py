"""Runs every benchmark module (`benchmarks/bench_*.py`) and prints its figures.

`python -m benchmarks` runs the full form; `--short` a small one that the test command runs so
the benchmarks cannot rot. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--short", action="store_true", help="small sizes, for CI")
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    args = parser.parse_args(argv)
    here = Path(__file__).parent
    found = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    chosen = [n for n in found if not args.names or n in args.names or n[6:] in args.names]
    if args.names and not chosen:
        print(f"no benchmark named {args.names}; have {found}", file=sys.stderr)
        return 2
    for name in chosen:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}{' (short)' if args.short else ''}", flush=True)
        module.run(short=args.short)
    if not chosen:
        print("no benchmarks yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
