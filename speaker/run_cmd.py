"""`kubgp-speaker run --config FILE`: the standalone daemon on a desired-state file.

The file is YAML or JSON (`kubgp.io/speaker/v1`). A bad file at start is an error on stderr
and exit code 2. SIGHUP re-reads it and applies the difference (a bad file then is logged and
the running state kept); SIGTERM or SIGINT closes every session with Cease/Administrative
Shutdown and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

import yaml

from speaker.daemon import Speaker
from speaker.schema import DesiredState, SchemaError, parse_desired_state

log = logging.getLogger("kubgp.speaker")
EXIT_CONFIG = 2


_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    pass


def load_config(path: Path) -> DesiredState:
    """Read and validate the file; ConfigError says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(text)  # fast path: PyYAML's pure-Python parser is ~100x slower
    except ValueError:
        try:
            doc = yaml.load(text, Loader=_YAML_LOADER)  # a safe loader (CSafeLoader when built)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not YAML or JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the document must be a mapping")
    try:
        return parse_desired_state(doc)
    except SchemaError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


async def serve(path: Path, state: DesiredState) -> int:
    loop = asyncio.get_running_loop()
    speaker = Speaker()
    stop = asyncio.Event()
    reloads: asyncio.Queue[None] = asyncio.Queue()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reloads.put_nowait, None)
    try:
        await speaker.apply(state)
    except OSError as exc:  # e.g. the listen address cannot be bound
        log.error("cannot apply %s: %s", path, exc)
        await speaker.close("start-up failed")
        return 1
    log.info("applied %s: %d peers, %d advertisements", path, len(state.peers),
             len(state.advertisements))  # fmt: skip

    async def reloader() -> None:
        while True:
            await reloads.get()
            try:
                new = load_config(path)
            except ConfigError as exc:
                log.error("SIGHUP: %s; keeping the running state", exc)
                continue
            try:
                await speaker.apply(new)
            except OSError as exc:
                log.error("SIGHUP: cannot apply %s: %s", path, exc)
                continue
            log.info("SIGHUP: applied %s: %d peers, %d advertisements", path, len(new.peers),
                     len(new.advertisements))  # fmt: skip

    task = loop.create_task(reloader())
    await stop.wait()
    task.cancel()
    log.info("shutting down: Cease/Administrative Shutdown to every peer")
    await speaker.close("kubgp-speaker shutting down")
    return 0


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    path = Path(args.config)
    try:
        state = load_config(path)
    except ConfigError as exc:
        print(f"kubgp-speaker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(serve(path, state))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the speaker on a desired-state file (YAML or JSON); SIGHUP re-reads it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="desired state file")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.set_defaults(handler=_run)


__all__ = ["ConfigError", "load_config", "register", "serve"]
