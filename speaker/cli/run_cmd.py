"""`kubgp-speaker run (--config FILE [--socket PATH] | --socket PATH [--state-dir DIR])`: the
speaker daemon.

Standalone (`--config`): the file is the source of truth, YAML or JSON (`kubgp.io/speaker/v1`).
A bad file at start is an error on stderr and exit code 2. SIGHUP re-reads it and applies the
difference; a bad file, or a state that cannot be applied (say a listen address that cannot be
bound), is then one log line and the running state is kept exactly as it was. With `--socket`
too, the control socket answers `kubgp-speaker status`; snapshots and deltas sent to it are
refused (the file is the state). Nothing is persisted: `--state-dir` is an error here.

Under the node agent (`--socket` without `--config`): the control socket (newline-delimited JSON,
see docs/control-socket.md) takes snapshots and deltas. The state last applied is persisted in
`--state-dir` and resumed at start; the agent owns the state, so SIGHUP is ignored with a log
line.

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
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from speaker.api.ipc import Delta, PeerStatus
from speaker.api.route_status import FibSummary, Routes, RoutesRequest
from speaker.api.schema import DesiredState
from speaker.cli.config_file import ConfigError, load_config
from speaker.control import (
    ControlError,
    ControlServer,
    DeltaSink,
    StateRefused,
    serve_control,
)
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

    def __init__(self, inner: DeltaSink, speaker: Speaker, *, skip: int) -> None:
        self._inner = inner
        self._speaker = speaker
        self._skip = skip

    async def apply(self, state: DesiredState) -> None:
        await self._inner.apply(state)
        if self._skip > 0:
            self._skip -= 1
        else:
            self._speaker.release_end_of_rib("the agent's state is in")

    async def apply_delta(self, delta: Delta) -> None:
        # A delta on the resumed state: the agent found its own state running.
        await self._inner.apply_delta(delta)
        self._speaker.release_end_of_rib("the agent's state is in")

    def status(self) -> Sequence[PeerStatus]:
        return self._inner.status()

    def fib_summary(self) -> FibSummary | None:
        return self._speaker.fib_summary()

    def route_report(self, request: RoutesRequest) -> Routes:
        return self._speaker.route_report(request)


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
    # With a file, the file is the state: nothing to persist (the CLI refuses --state-dir).
    store = StateStore(state_dir) if state_dir is not None and path is None else None
    control_sink: DeltaSink = sink
    if socket_path is not None and store is not None and store.path.exists():
        # Resuming a saved state that may be out of date: End-of-RIB (which makes a graceful-
        # restart peer drop what we did not re-send) waits for the agent's first state.
        speaker.hold_end_of_rib()
        control_sink = _ReleaseEndOfRib(sink, speaker, skip=1)
        loop.call_later(end_of_rib_wait, speaker.release_end_of_rib,
                        f"no state from the agent within {end_of_rib_wait:g}s")  # fmt: skip
    try:
        if path is not None and state is not None:
            await sink.apply(state)
            log.info("applied %s: %d peers, %d advertisements", path, len(state.peers),
                     state.route_count)  # fmt: skip
        if socket_path is not None:
            # Under the agent, serve_control resumes the persisted state first. With a file,
            # the socket serves status and refuses states: the file is the state.
            control = await serve_control(
                control_sink,
                socket_path,
                allowed_uids=allowed_uids or None,
                group=socket_group,
                state_store=store,
                refuse_states=None if path is None else
                f"the state comes from --config {path}; edit it and send SIGHUP",
                interner=speaker.interner,
            )  # fmt: skip
            metrics.watch_control(control)
            log.info("control socket %s ready", socket_path)
    except (StateRefused, OSError, ControlError) as exc:  # e.g. the listen address is not ours
        log.error("cannot start: %s", exc)
        await speaker.close("start-up failed")
        return 1

    async def reload(config: Path) -> None:
        try:
            new = load_config(config)
        except ConfigError as exc:
            log.error("SIGHUP: %s; keeping the running state", exc)
            return
        try:
            await sink.apply(new)
        except StateRefused as exc:
            log.error("SIGHUP: cannot apply %s: %s; keeping the running state", config, exc)
            return
        log.info("SIGHUP: applied %s: %d peers, %d advertisements", config, len(new.peers),
                 new.route_count)  # fmt: skip

    async def reloader() -> None:
        # Survives every error: one failed reload never stops the next SIGHUP.
        while True:
            await reloads.get()
            if path is None:
                log.warning("SIGHUP ignored: the state is managed over the control socket")
                continue
            try:
                await reload(path)
            except Exception:
                log.exception("SIGHUP: reloading %s failed (a bug); keeping the running state",
                              path)  # fmt: skip

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


def _useless_options(args: argparse.Namespace) -> str | None:
    """An option that would have no effect with the others given, said as an error."""
    if args.state_dir is not None and args.config is not None:
        return (
            "--state-dir has no effect with --config: the file is the state and nothing is "
            "persisted (drop --state-dir, or drop --config to take the state over --socket)"
        )
    if args.socket is None:
        for given, option in ((args.state_dir, "--state-dir"),
                              (args.socket_group, "--socket-group"),
                              (args.allowed_uid, "--allowed-uid")):  # fmt: skip
            if given is not None:
                return f"{option} has no effect without --socket"
    return None


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's default, kept fixed


def fix_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold at its default (what `MALLOC_MMAP_THRESHOLD_=131072` does).

    glibc raises the threshold to the size of each mmapped block freed (up to 32 MB), so after
    the first large dict table of a table of routes is resized away, the next ones (4-32 MB,
    one per table per resize) come from the heap, whose freed space is seldom returned: with
    1M routes received the speaker kept ~80 MB more RSS (docs/route-import.md, "Figures").
    Fixed, blocks from 128 KB up are mmapped and go back to the kernel when freed. Nothing is
    done on a libc other than glibc or when the operator set the variable. True when set."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD)))


def _run(args: argparse.Namespace) -> int:
    fix_mmap_threshold()
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.config is None and args.socket is None:
        print("kubgp-speaker: run needs --config FILE, --socket PATH, or both", file=sys.stderr)
        return EXIT_CONFIG
    useless = _useless_options(args)
    if useless:
        print(f"kubgp-speaker: {useless}", file=sys.stderr)
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
        help="run the speaker on a desired-state file (SIGHUP re-reads it) or for the node agent "
        "(--socket)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="desired state file (YAML or JSON), the source of truth; SIGHUP re-reads it",
    )
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="serve the control socket (NDJSON): the node agent's states, or with --config "
        "only status",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="persist the state applied over --socket here and resume it on start (with "
        "--socket and without --config)",
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
