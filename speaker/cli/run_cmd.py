"""`kubgp-speaker run [--config FILE] [--socket PATH --state-dir DIR]`: the speaker daemon.

Standalone (`--config` only): the file is YAML or JSON (`kubgp.io/speaker/v1`). A bad file at
start is an error on stderr and exit code 2. SIGHUP re-reads it and applies the difference (a
bad file then is logged and the running state kept).

Under the node agent (`--socket`): the control socket (newline-delimited JSON, see
docs/control-socket.md) takes snapshots and deltas. The state last applied is persisted in
`--state-dir` and resumed at start, before `--config` (which then only seeds a first start);
the agent owns the state, so SIGHUP is ignored with a log line.

Shutdown (exit 0): SIGINT, and SIGTERM with `--shutdown=withdraw` (the default), close every
session with Cease/Administrative Shutdown: the peers withdraw our routes. SIGTERM with
`--shutdown=graceful-restart`, and SIGUSR2 always, close the sessions that negotiated graceful
restart (RFC 4724) without a NOTIFICATION: the peers keep our routes as stale for the restart
time while a new speaker comes up from the same state (a rolling upgrade; see
docs/hardening.md). Being killed has the same effect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from speaker.api.ipc import PeerStatus
from speaker.api.schema import DesiredState, SchemaError, parse_desired_state
from speaker.control import ControlError, ControlServer, StateSink, serve_control
from speaker.daemon import Speaker
from speaker.speaker_metrics import SpeakerMetrics
from speaker.state_store import StateStore

log = logging.getLogger("kubgp.speaker")
EXIT_CONFIG = 2
SHUTDOWN_WITHDRAW = "withdraw"
SHUTDOWN_GRACEFUL_RESTART = "graceful-restart"
END_OF_RIB_WAIT = 30.0


class _ReleaseEndOfRib:
    """The control server's sink after a resume: the applies after the first `skip` (the
    resume itself) come from the agent, and the first of them releases End-of-RIB."""

    def __init__(self, inner: StateSink, speaker: Speaker, *, skip: int) -> None:
        self._inner = inner
        self._speaker = speaker
        self._skip = skip

    async def apply(self, state: DesiredState) -> None:
        await self._inner.apply(state)
        if self._skip > 0:
            self._skip -= 1
        else:
            self._speaker.release_end_of_rib("the agent's state is in")

    def status(self) -> Sequence[PeerStatus]:
        return self._inner.status()


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


async def serve(
    path: Path | None,
    state: DesiredState | None,
    *,
    socket_path: Path | None = None,
    state_dir: Path | None = None,
    socket_group: str | None = None,
    allowed_uids: list[int] | None = None,
    metrics_address: str | None = None,
    shutdown: str = SHUTDOWN_WITHDRAW,
    end_of_rib_wait: float = END_OF_RIB_WAIT,
) -> int:
    loop = asyncio.get_running_loop()
    # Every start is a restart to a peer that had a session with us (R bit, RFC 4724 §3).
    speaker = Speaker(restarting=True)
    metrics = SpeakerMetrics(speaker)
    sink = metrics.sink()  # the speaker, with every apply timed
    if metrics_address:
        try:
            metrics.serve(metrics_address)
        except (OSError, ValueError) as exc:
            log.error("cannot serve metrics on %s: %s", metrics_address, exc)
            return 1
        log.info("metrics on http://%s/metrics", metrics_address)
    stop = asyncio.Event()
    mode = [SHUTDOWN_WITHDRAW]

    def stop_with(how: str) -> None:
        mode[0] = how
        stop.set()

    reloads: asyncio.Queue[None] = asyncio.Queue()
    loop.add_signal_handler(signal.SIGTERM, stop_with, shutdown)
    loop.add_signal_handler(signal.SIGINT, stop_with, SHUTDOWN_WITHDRAW)
    loop.add_signal_handler(signal.SIGUSR2, stop_with, SHUTDOWN_GRACEFUL_RESTART)
    loop.add_signal_handler(signal.SIGHUP, reloads.put_nowait, None)
    control: ControlServer | None = None
    store = StateStore(state_dir) if state_dir is not None else None
    control_sink: StateSink = sink
    if socket_path is not None and store is not None and store.path.exists():
        # Resuming a saved state that may be out of date: End-of-RIB (which makes a graceful-
        # restart peer drop what we did not re-send) waits for the agent's first state.
        speaker.hold_end_of_rib()
        control_sink = _ReleaseEndOfRib(sink, speaker, skip=1)
        loop.call_later(end_of_rib_wait, speaker.release_end_of_rib,
                        f"no state from the agent within {end_of_rib_wait:g}s")  # fmt: skip
    try:
        if socket_path is not None:
            # serve_control resumes the persisted state, else applies `state` (the file).
            control = await serve_control(
                control_sink,
                socket_path,
                allowed_uids=allowed_uids or None,
                group=socket_group,
                state_store=store,
                initial=state,
            )
            metrics.watch_control(control)
            log.info("control socket %s ready", socket_path)
        elif state is not None:
            await sink.apply(state)
            log.info("applied %s: %d peers, %d advertisements", path, len(state.peers),
                     len(state.advertisements))  # fmt: skip
    except (OSError, ControlError) as exc:  # e.g. the listen address cannot be bound
        log.error("cannot start: %s", exc)
        await speaker.close("start-up failed")
        return 1

    async def reloader() -> None:
        while True:
            await reloads.get()
            if control is not None or path is None:
                log.warning("SIGHUP ignored: the state is managed over the control socket")
                continue
            try:
                new = load_config(path)
            except ConfigError as exc:
                log.error("SIGHUP: %s; keeping the running state", exc)
                continue
            try:
                await sink.apply(new)
            except OSError as exc:
                log.error("SIGHUP: cannot apply %s: %s", path, exc)
                continue
            log.info("SIGHUP: applied %s: %d peers, %d advertisements", path, len(new.peers),
                     len(new.advertisements))  # fmt: skip

    task = loop.create_task(reloader())
    await stop.wait()
    task.cancel()
    if control is not None:
        await control.close()
    if mode[0] == SHUTDOWN_GRACEFUL_RESTART:
        log.info("shutting down for a graceful restart: peers with graceful restart keep our "
                 "routes; Cease/Administrative Shutdown to the others")  # fmt: skip
        await speaker.close("kubgp-speaker restarting", graceful_restart=True)
    else:
        log.info("shutting down: Cease/Administrative Shutdown to every peer")
        await speaker.close("kubgp-speaker shutting down")
    return 0


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.config is None and args.socket is None:
        print("kubgp-speaker: run needs --config FILE, --socket PATH, or both", file=sys.stderr)
        return EXIT_CONFIG
    path = Path(args.config) if args.config is not None else None
    state = None
    if path is not None:
        try:
            state = load_config(path)
        except ConfigError as exc:
            print(f"kubgp-speaker: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    return asyncio.run(
        serve(
            path,
            state,
            socket_path=Path(args.socket) if args.socket else None,
            state_dir=Path(args.state_dir) if args.state_dir else None,
            socket_group=args.socket_group,
            allowed_uids=args.allowed_uid,
            shutdown=args.shutdown,
            end_of_rib_wait=args.end_of_rib_wait,
            metrics_address=args.metrics_address,
        )
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the speaker on a desired-state file (YAML or JSON); SIGHUP re-reads it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="desired state file (YAML or JSON)")
    parser.add_argument(
        "--socket", metavar="PATH", help="serve the control socket (NDJSON) for the node agent"
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="persist the last applied state here and resume it on start (with --socket)",
    )
    parser.add_argument(
        "--socket-group", metavar="GROUP", help="group allowed on the socket (mode 0660)"
    )
    parser.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on /metrics (e.g. 127.0.0.1:9473, :9473 = all addresses)",
    )
    parser.add_argument(
        "--allowed-uid",
        type=int,
        action="append",
        metavar="UID",
        help="uid allowed to connect (repeatable; default: root and our own uid)",
    )
    parser.add_argument(
        "--shutdown",
        choices=[SHUTDOWN_WITHDRAW, SHUTDOWN_GRACEFUL_RESTART],
        default=SHUTDOWN_WITHDRAW,
        help="what SIGTERM does: withdraw (Cease to every peer) or graceful-restart (peers that "
        "negotiated graceful restart keep our routes while we restart); SIGUSR2 is always "
        "graceful-restart, SIGINT always withdraw",
    )
    parser.add_argument(
        "--end-of-rib-wait",
        type=float,
        default=END_OF_RIB_WAIT,
        metavar="SECONDS",
        help="after resuming a saved state (--socket with --state-dir), hold End-of-RIB until "
        "the agent's first state, at most this long (default %(default)s)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.set_defaults(handler=_run)


__all__ = ["ConfigError", "load_config", "register", "serve"]
