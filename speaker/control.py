"""The speaker's control socket: the NDJSON protocol of `speaker.api.ipc`, served with asyncio.

The server knows the BGP runtime only through `StateSink`: `apply(state)` returns once the
state is in every Adj-RIB-Out, `status()` reports the peers. What it guarantees:

- Access: the socket file is created 0600 (0660 with a `group`), bound under a temporary name,
  given its mode and group before `listen()`, then renamed into place; that rename also replaces
  a stale socket left by a dead speaker. A path some live process listens on, or a path that is
  not a socket, is left alone (`ControlError`). Each connection's SO_PEERCRED uid must be in
  `allowed_uids` (root and the server's own uid by default); another uid gets a nack and is
  closed.
- Protocol: `hello` with the applied epoch/generation on connect; requests on one connection
  are answered one by one, in order. Snapshot and delta are checked (`ipc.check_version`:
  epoch and generation rules, delta base; the schema when parsed; `ipc.check_delta`: the
  delta applies) and applied one at a time across all connections; `ack` once applied and
  saved, a `nack` with the reason otherwise, the running state untouched. A delta is applied
  in place (`StateSink.apply_delta`, when the sink has it: the cost is the delta's size) and
  journaled; a snapshot is saved whole (`speaker.state_store`). Status is answered at once,
  also while an apply is in flight.
- Bounds: a line over `max_line` bytes gets a nack and the connection is closed; the stream
  reader stops buffering at about twice the limit, so the rest is never read into memory. Each
  connection has its own write queue of `write_queue` lines; a client whose queue is full, or
  whose socket does not take a line within `write_timeout` seconds, is dropped. Nothing waits
  on a client but that client's own tasks, so a stuck reader blocks neither other clients nor
  the sink.
- An apply that was started finishes even if its client goes away; a client going away changes
  nothing else (the speaker keeps advertising). A sink that raises `StateRefused` (an operating
  error such as a listen address that cannot be bound; it changed nothing) gets the client a
  nack and one log line, and the applied version stays what it was. A sink that raises anything
  else (a bug: what runs is unknown) gets the client a nack, the log a traceback, and the
  speaker then has no applied version (the next request must be a snapshot).
- Start-up: the state saved in `state_store` (if any) is applied to the sink and reported in
  `hello`.
- Standalone (`refuse_states`, the speaker runs a `--config` file): status is answered, every
  snapshot and delta gets a nack with that reason and `want: null`, and nothing is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
import stat
import struct
from collections.abc import Collection, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from speaker.api.ipc import (
    DEFAULT_MAX_LINE,
    Ack,
    AppliedState,
    Delta,
    Hello,
    IpcError,
    Nack,
    PeerStatus,
    Reply,
    Request,
    Snapshot,
    StateVersion,
    Status,
    apply_delta,
    check_delta,
    check_version,
    encode,
    parse_request,
)
from speaker.api.route_status import FibSummary, Routes, RoutesRequest
from speaker.api.routes import AttributeInterner
from speaker.api.schema import DesiredState
from speaker.state_store import StateStore, StateStoreError

log = logging.getLogger(__name__)

DEFAULT_WRITE_QUEUE: Final = 64
"""Lines waiting to be written to one client before it is dropped."""
DEFAULT_WRITE_TIMEOUT: Final = 10.0
"""Seconds a client's socket may refuse to take a line before it is dropped."""
PARSE_IN_THREAD_BYTES: Final = 256 * 1024
"""Lines longer than this are parsed in a worker thread, so BGP timers keep running."""
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class StateSink(Protocol):
    """What the control server needs from the BGP runtime."""

    async def apply(self, state: DesiredState) -> None:
        """Converge to `state`; return once it is in every Adj-RIB-Out. Raise if it cannot."""
        ...

    def status(self) -> Sequence[PeerStatus]:
        """Every configured peer, now. Must not block."""
        ...


@runtime_checkable
class RouteSink(Protocol):
    """A sink that also reports received routes (docs/route-import.md): the `fib` part of the
    status reply and the answer to a `routes` request. Must not block."""

    def fib_summary(self) -> FibSummary | None: ...

    def route_report(self, request: RoutesRequest) -> Routes: ...


class DeltaSink(StateSink, Protocol):
    """A sink that applies deltas itself, in place, to the state it last applied."""

    async def apply_delta(self, delta: Delta) -> None:
        """Apply `delta` to the state last applied (`IpcError`, nothing changed, if it does
        not apply); return once the change is in every Adj-RIB-Out."""
        ...


@runtime_checkable
class _DeltaCapable(Protocol):
    def apply_delta(self, delta: Delta) -> Coroutine[Any, Any, None]: ...


class StateRefused(Exception):
    """Raised by `StateSink.apply` that cannot apply a state for an ordinary operating reason
    (the listen address cannot be bound) and changed nothing: what ran before still runs."""


class ControlError(Exception):
    """The control socket cannot be served (path in use, not a socket, bad group)."""


class _Client:
    """One connection's writing side: a bounded queue drained by its own task."""

    def __init__(
        self, writer: asyncio.StreamWriter, *, name: str, queue: int, timeout: float
    ) -> None:
        self.name = name
        self.dropped: str | None = None
        self._writer = writer
        self._timeout = timeout
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=queue)
        self._task = asyncio.create_task(self._write_loop(), name=f"control-write {name}")

    @property
    def gone(self) -> bool:
        return self.dropped is not None or self._writer.transport.is_closing()

    def send(self, line: bytes) -> None:
        if self.gone:
            return
        try:
            self._queue.put_nowait(line)
        except asyncio.QueueFull:
            self.drop(f"it does not read its replies ({self._queue.maxsize} lines queued)")

    def drop(self, reason: str) -> None:
        if self.dropped is None:
            self.dropped = reason
            log.warning("control: dropping client %s: %s", self.name, reason)
        self._writer.transport.abort()

    async def _write_loop(self) -> None:
        while (line := await self._queue.get()) is not None:
            self._writer.write(line)
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                async with asyncio.timeout(self._timeout):
                    await self._writer.drain()
            except TimeoutError:
                self.drop(f"it took no data for {self._timeout:g} s")
                return
            except ConnectionError:
                self.abort()
                return

    def abort(self) -> None:
        self._writer.transport.abort()

    async def finish(self) -> None:
        """Write what is queued (within the write timeout), then close. Never waits longer
        than the write timeout on the client."""
        if not self.gone:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)
            done, _ = await asyncio.wait({self._task}, timeout=self._timeout)
            if not done:
                self.drop(f"it took no data for {self._timeout:g} s")
        self._task.cancel()
        self._writer.close()
        await asyncio.wait({self._task}, timeout=self._timeout)
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.wait_closed()
        except (TimeoutError, ConnectionError):
            self.abort()


class ControlServer:
    """A running control socket. Build it with `serve_control`; stop it with `close()`."""

    def __init__(
        self,
        sink: StateSink,
        *,
        path: Path,
        allowed_uids: frozenset[int],
        state_store: StateStore | None,
        max_line: int,
        write_queue: int,
        write_timeout: float,
        refuse_states: str | None = None,
        interner: AttributeInterner | None = None,
    ) -> None:
        self.path = path
        self.interner = interner
        self.allowed_uids = allowed_uids
        self.max_line = max_line
        self.dropped_clients = 0
        self._sink = sink
        self._store = state_store
        self._write_queue = write_queue
        self._write_timeout = write_timeout
        self._refuse_states = refuse_states
        self._applied: AppliedState | None = None
        self._lock = asyncio.Lock()
        self._inflight: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._clients: set[_Client] = set()
        self._closing = False
        self._server: asyncio.Server | None = None
        self._inode: tuple[int, int] | None = None

    @property
    def applied(self) -> AppliedState | None:
        """The last state applied through this server (or resumed), with its version."""
        return self._applied

    @property
    def client_count(self) -> int:
        return len(self._handlers)

    async def _start(self, *, mode: int, gid: int | None) -> None:
        await self._resume()
        sock = _bind(self.path, mode=mode, gid=gid)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        self._server = await asyncio.start_unix_server(
            self._serve_client, sock=sock, limit=self.max_line
        )
        log.info(
            "control: listening on %s (mode %o, uids %s)",
            self.path,
            mode,
            sorted(self.allowed_uids),
        )

    async def _resume(self) -> None:
        restored = None
        if self._store is not None:
            result = await asyncio.to_thread(self._store.load, interner=self.interner)
            if result.problem:
                log.error("control: %s", result.problem)
            restored = result.applied
        if restored is not None:
            log.info(
                "control: resuming the saved state of epoch %d generation %d (%d peers, "
                "%d advertisements)",
                restored.version.epoch,
                restored.version.generation,
                len(restored.state.peers),
                restored.state.route_count,
            )
            try:
                await self._sink.apply(restored.state)
            except StateRefused as err:
                log.error("control: the saved state cannot be applied (%s); starting empty", err)
                return
            except Exception:
                log.exception("control: the saved state could not be applied; starting empty")
                return
            self._applied = restored

    async def close(self) -> None:
        """Stop listening, close every connection, let an apply in flight finish, and remove
        the socket file if it is still ours."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        # Aborted connections end their handlers (the reader sees EOF); a handler waiting for
        # the apply lock gets a nack. Handlers are not cancelled: one waiting on an apply in
        # flight lets it finish.
        for client in list(self._clients):
            client.abort()
        if self._handlers:
            await asyncio.wait(set(self._handlers))
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                await self._inflight
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._store is not None:
            self._store.close()
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        sock = writer.get_extra_info("socket")
        pid, uid, _gid = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        client = _Client(
            writer,
            name=f"pid {pid} uid {uid}",
            queue=self._write_queue,
            timeout=self._write_timeout,
        )
        self._clients.add(client)
        try:
            if uid not in self.allowed_uids:
                log.warning("control: refused %s: uid not allowed", client.name)
                client.send(encode(Nack(reason=f"uid {uid} may not use this socket", want=None)))
                return
            client.send(encode(Hello(applied=self._version())))
            await self._read_loop(reader, client)
        except asyncio.CancelledError:
            # Only loop shutdown cancels a handler. asyncio.streams reads the task's exception
            # when it ends, and a cancelled one raises there, so end it normally.
            pass
        finally:
            if client.dropped is not None:
                self.dropped_clients += 1
            try:
                await client.finish()
            finally:
                self._clients.discard(client)
                self._handlers.discard(task)

    async def _read_loop(self, reader: asyncio.StreamReader, client: _Client) -> None:
        while not client.gone:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as err:
                if err.partial.strip():
                    log.info("control: %s closed in the middle of a line", client.name)
                return
            except asyncio.LimitOverrunError:
                client.send(
                    encode(Nack(reason=f"line over the limit of {self.max_line} bytes; closing"))
                )
                return
            except ConnectionError:
                return
            if not line.strip():
                continue
            client.send(encode(await self._answer(line)))
            if self._store is not None and self._store.compaction_due:
                await self._compact()

    async def _answer(self, line: bytes) -> Reply:
        try:
            if len(line) > PARSE_IN_THREAD_BYTES:
                request = await asyncio.to_thread(
                    parse_request, line, max_line=self.max_line, interner=self.interner
                )
            else:
                request = parse_request(line, max_line=self.max_line, interner=self.interner)
        except IpcError as err:
            return Nack(reason=err.reason, want=err.want)
        except Exception as err:  # a parser bug: refuse the line, keep serving
            log.exception("control: a line could not be parsed")
            return Nack(reason=f"the line could not be parsed: {type(err).__name__}: {err}")
        if isinstance(request, Snapshot | Delta):
            if self._refuse_states is not None:
                return Nack(reason=self._refuse_states, want=None)
            return await self._apply(request, line)
        if isinstance(request, RoutesRequest):
            return self._routes(request)
        return self._status()

    def _routes(self, request: RoutesRequest) -> Reply:
        if not isinstance(self._sink, RouteSink):
            return Nack(reason="this speaker does not report routes", want=None)
        try:
            return self._sink.route_report(request)
        except Exception as err:
            log.exception("control: routes failed")
            return Nack(reason=f"routes failed: {err}", want=None)

    def _status(self) -> Reply:
        try:
            peers = tuple(self._sink.status())
            fib = self._sink.fib_summary() if isinstance(self._sink, RouteSink) else None
        except Exception as err:
            log.exception("control: status failed")
            return Nack(reason=f"status failed: {err}", want=None)
        return Status(peers=peers, applied=self._version(), fib=fib)

    async def _apply(self, request: Request, line: bytes) -> Reply:
        assert isinstance(request, Snapshot | Delta)
        async with self._lock:
            if self._closing:
                return Nack(reason="the speaker is stopping", want=None)
            try:
                check_version(self._applied, request)
                new, job = self._plan(request)
            except IpcError as err:
                return Nack(reason=err.reason, want=err.want)
            self._inflight = asyncio.create_task(job)
            try:
                # Shielded: a client going away (or close()) does not cut an apply in half.
                await asyncio.shield(self._inflight)
            except asyncio.CancelledError:
                raise
            except StateRefused as err:
                # Nothing changed: the applied version still describes what runs.
                log.error("control: generation %d refused, the running state is unchanged: %s",
                          new.version.generation, err)  # fmt: skip
                return Nack(reason=f"the speaker could not apply the state: {err}")
            except IpcError as err:  # the sink's own check: nothing changed
                return Nack(reason=err.reason, want=err.want)
            except Exception as err:
                log.exception("control: applying generation %d failed", new.version.generation)
                self._applied = None
                return Nack(reason=f"the speaker could not apply the state: {err}")
            self._applied = new
            if self._store is not None:
                try:
                    if isinstance(request, Snapshot):
                        await asyncio.to_thread(self._store.save, new)
                    else:
                        await asyncio.to_thread(self._store.append, line, request, new)
                except StateStoreError as err:
                    # Applied and running; only a restart would miss it. Say so, keep going.
                    log.error("control: %s", err)
            return Ack(epoch=new.version.epoch, generation=new.version.generation)

    def _plan(self, request: Snapshot | Delta) -> tuple[AppliedState, Coroutine[Any, Any, None]]:
        """The state after `request` and the sink call that makes it run; `IpcError` (nothing
        changed) when a delta does not apply."""
        if isinstance(request, Snapshot):
            return AppliedState(version=request.version, state=request.state), self._sink.apply(
                request.state
            )
        applied = self._applied
        assert applied is not None  # check_version
        if isinstance(self._sink, _DeltaCapable):
            # In place: the sink's state is this one, moved forward by the delta alone.
            check_delta(applied.state, request)
            return (
                AppliedState(version=request.version, state=applied.state),
                self._sink.apply_delta(request),
            )
        state = apply_delta(applied.state, request)
        return AppliedState(version=request.version, state=state), self._sink.apply(state)

    async def _compact(self) -> None:
        """A new base in place of a journal grown past it (after the ack: the next request
        waits for it, no client's reply does)."""
        async with self._lock:
            store, applied = self._store, self._applied
            if store is None or applied is None or not store.compaction_due:
                return
            try:
                # The state changes only under the lock, which this holds.
                await asyncio.to_thread(store.save, applied)
            except StateStoreError as err:
                log.error("control: compacting the journal: %s", err)

    def _version(self) -> StateVersion | None:
        return None if self._applied is None else self._applied.version


async def serve_control(
    sink: StateSink,
    path: str | os.PathLike[str],
    *,
    allowed_uids: Collection[int] | None = None,
    group: str | int | None = None,
    state_store: StateStore | None = None,
    max_line: int = DEFAULT_MAX_LINE,
    mode: int | None = None,
    write_queue: int = DEFAULT_WRITE_QUEUE,
    write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    refuse_states: str | None = None,
    interner: AttributeInterner | None = None,
) -> ControlServer:
    """Resume the saved state (if any), then listen on `path`.

    `allowed_uids` defaults to root and this process's uid. `group` (name or gid) makes the
    socket 0660 owned by that group; `mode` overrides the mode. `refuse_states`: the state
    comes from elsewhere (a `--config` file); every snapshot and delta is refused with this
    reason, status is served. `interner`: the sink's attribute sets (`Speaker.interner`), so
    that parsed states share them. Raises `ControlError` when the path is held by a live process or
    is not a socket, or the group is unknown."""
    uids = frozenset({0, os.getuid()} if allowed_uids is None else allowed_uids)
    gid = _gid(group)
    server = ControlServer(
        sink,
        path=Path(path),
        allowed_uids=uids,
        state_store=state_store,
        max_line=max_line,
        write_queue=write_queue,
        write_timeout=write_timeout,
        refuse_states=refuse_states,
        interner=interner,
    )
    socket_mode = mode if mode is not None else (0o600 if gid is None else 0o660)
    await server._start(mode=socket_mode, gid=gid)
    return server


def _gid(group: str | int | None) -> int | None:
    if group is None or isinstance(group, int):
        return group
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ControlError(f"no group named {group!r}") from None


def _bind(path: Path, *, mode: int, gid: int | None) -> socket.socket:
    """A socket bound at `path` with `mode` and `gid`, not yet listening."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _check_replaceable(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Nobody can connect before listen(), so the umask's mode between bind and chmod is
        # harmless; the rename puts the finished file in place at once.
        sock.bind(os.fsdecode(tmp))
        os.chmod(tmp, mode)
        if gid is not None:
            os.chown(tmp, -1, gid)
        os.replace(tmp, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sock.setblocking(False)
    return sock


def _check_replaceable(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fsdecode(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("control: replacing the stale socket %s", path)
        return
    except OSError as err:
        raise ControlError(f"{path}: cannot tell whether it is in use: {err}") from None
    finally:
        probe.close()
    raise ControlError(f"{path} is in use: another process (a running speaker?) listens on it")


__all__ = [
    "DEFAULT_WRITE_QUEUE",
    "DEFAULT_WRITE_TIMEOUT",
    "ControlError",
    "ControlServer",
    "DeltaSink",
    "RouteSink",
    "StateRefused",
    "StateSink",
    "serve_control",
]
