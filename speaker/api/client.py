"""The speaker's control client, for the node agent and the CLI.

With `speaker.api.schema` this is the only speaker module the controller may import, so it
imports nothing but `speaker.api.ipc` (and its `speaker.api.route_status`), `speaker.api.schema`
and the standard library (an
import-linter contract in pyproject.toml keeps it so).

    async with await SpeakerClient.connect(path, timeout=None) as client:   # retries until up
        epoch = new_epoch()                          # one per agent process
        await client.snapshot(state, epoch=epoch, generation=1)            # -> Ack, or NackError
        await client.delta(epoch=epoch, generation=2, base=1, add=[adv], remove=["10.0.0.0/24"])
        status = await client.status()

`client.hello.applied` tells what the speaker runs when the connection opened. One request is
in flight at a time per client (concurrent callers queue); a broken connection raises
`SpeakerError`, and the caller connects again and starts with a snapshot. For one-shot commands,
`status_sync` and `snapshot_sync` wrap a connection in `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Final

from speaker.api.ipc import (
    COMPACT_PROTO,
    DEFAULT_MAX_LINE,
    Ack,
    BfdStatus,
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
    StatusRequest,
    Want,
    encode,
    parse_reply,
)
from speaker.api.route_status import (
    DEFAULT_ROUTES_LIMIT,
    FibSummary,
    RouteNote,
    Routes,
    RoutesRequest,
)
from speaker.api.schema import Advertisement, DesiredState

DEFAULT_SOCKET: Final = "/run/kubgp/speaker.sock"
SOCKET_ENV: Final = "KUBGP_SPEAKER_SOCKET"
RETRY_INITIAL_DELAY: Final = 0.05
RETRY_MAX_DELAY: Final = 2.0


def default_socket_path() -> str:
    """`$KUBGP_SPEAKER_SOCKET`, else /run/kubgp/speaker.sock."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def new_epoch() -> int:
    """An epoch for a new agent process: the wall clock in nanoseconds, different from any
    earlier process's on this node unless the clock goes back."""
    return time.time_ns()


class SpeakerError(Exception):
    """The speaker cannot be reached, went away, or broke the protocol."""


class NackError(SpeakerError):
    """The speaker refused a request; nothing changed. `want == "snapshot"`: send one."""

    def __init__(self, nack: Nack) -> None:
        super().__init__(nack.reason)
        self.reason = nack.reason
        self.want: Want = nack.want


class SpeakerClient:
    """One connection to the speaker's control socket. Build it with `connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        hello: Hello,
        max_line: int,
    ) -> None:
        self.hello = hello
        self._reader = reader
        self._writer = writer
        self._max_line = max_line
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = 10.0,
        max_line: int = DEFAULT_MAX_LINE,
    ) -> SpeakerClient:
        """Connect and read the hello. While the socket is missing, refuses connections or
        closes before its hello, retry with exponential backoff (50 ms doubling to 2 s, with
        jitter) for up to `timeout` seconds (None: forever). A refusal (nack) is not retried."""
        where = os.fspath(path) if path is not None else default_socket_path()
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = RETRY_INITIAL_DELAY
        while True:
            try:
                return await cls._connect_once(where, max_line=max_line, deadline=deadline)
            except (FileNotFoundError, ConnectionRefusedError, _NoHello) as err:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise SpeakerError(f"cannot connect to the speaker at {where}: {err}") from None
                pause = delay * random.uniform(0.5, 1.0)
                await asyncio.sleep(pause if left is None else min(pause, left))
                delay = min(delay * 2, RETRY_MAX_DELAY)
            except OSError as err:
                raise SpeakerError(f"cannot connect to the speaker at {where}: {err}") from None

    @classmethod
    async def _connect_once(
        cls, where: str, *, max_line: int, deadline: float | None
    ) -> SpeakerClient:
        reader, writer = await asyncio.open_unix_connection(where, limit=max_line)
        try:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.1)
            async with asyncio.timeout(left):
                line = await reader.readuntil(b"\n")
            reply = parse_reply(line, max_line=max_line)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as err:
            writer.close()
            raise _NoHello(f"no hello ({type(err).__name__})") from None
        except (IpcError, asyncio.LimitOverrunError) as err:
            writer.close()
            raise SpeakerError(f"{where}: not a kubgp speaker's hello: {err}") from None
        if isinstance(reply, Nack):
            writer.close()
            raise NackError(reply)
        if not isinstance(reply, Hello):
            writer.close()
            raise SpeakerError(f"{where}: expected hello, got {reply.TYPE}")
        return cls(reader, writer, hello=reply, max_line=max_line)

    async def __aenter__(self) -> SpeakerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def compact(self) -> bool:
        """The speaker reads advertisements grouped by attribute set (hello proto 2 or more):
        snapshots and deltas are sent that way, several times smaller."""
        return self.hello.proto >= COMPACT_PROTO

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def snapshot(
        self, state: DesiredState, *, epoch: int, generation: int, timeout: float | None = None
    ) -> Ack:
        """Send the whole state; return the ack once it is applied, or raise `NackError`.
        Written grouped by attribute set when the speaker reads that (`compact`)."""
        message = Snapshot(epoch=epoch, generation=generation, state=state, compact=self.compact)
        return await self._apply(message, timeout)

    async def delta(
        self,
        *,
        epoch: int,
        generation: int,
        base: int,
        add: Sequence[Advertisement] = (),
        remove: Sequence[str] = (),
        timeout: float | None = None,
    ) -> Ack:
        """Add (or replace, by prefix) and remove advertisements against generation `base`."""
        message = Delta(
            epoch=epoch,
            generation=generation,
            base=base,
            add=tuple(add),
            remove=tuple(remove),
            compact=self.compact,
        )
        return await self._apply(message, timeout)

    async def status(self, *, timeout: float | None = None) -> Status:
        reply = await self.request(StatusRequest(), timeout=timeout)
        if isinstance(reply, Nack):
            raise NackError(reply)
        if not isinstance(reply, Status):
            raise SpeakerError(f"expected a status reply, got {reply.TYPE}")
        return reply

    async def routes(
        self,
        *,
        prefix: str | None = None,
        peer: str | None = None,
        limit: int = DEFAULT_ROUTES_LIMIT,
        timeout: float | None = None,
    ) -> Routes:
        """Received routes inside `prefix` (of `peer`), with what became of them."""
        reply = await self.request(
            RoutesRequest(prefix=prefix, peer=peer, limit=limit), timeout=timeout
        )
        if isinstance(reply, Nack):
            raise NackError(reply)
        if not isinstance(reply, Routes):
            raise SpeakerError(f"expected a routes reply, got {reply.TYPE}")
        return reply

    async def _apply(self, message: Snapshot | Delta, timeout: float | None) -> Ack:
        reply = await self.request(message, timeout=timeout)
        if isinstance(reply, Nack):
            raise NackError(reply)
        if not isinstance(reply, Ack):
            raise SpeakerError(f"expected an ack, got {reply.TYPE}")
        if (reply.epoch, reply.generation) != (message.epoch, message.generation):
            raise SpeakerError(
                f"ack for epoch {reply.epoch} generation {reply.generation}, expected "
                f"{message.epoch}/{message.generation}"
            )
        return reply

    async def request(self, message: Request, *, timeout: float | None = None) -> Reply:
        """Send one request and read its reply. A line over the size limit is refused here,
        before sending. A timeout leaves the connection unusable (the reply may still come):
        it is closed and `SpeakerError` raised."""
        line = encode(message)
        if len(line) - 1 > self._max_line:
            raise IpcError(
                f"{message.TYPE} of {len(line) - 1} bytes is over the limit of "
                f"{self._max_line} bytes"
            )
        async with self._lock:
            try:
                async with asyncio.timeout(timeout):
                    self._writer.write(line)
                    await self._writer.drain()
                    reply_line = await self._reader.readuntil(b"\n")
            except TimeoutError:
                await self.close()
                raise SpeakerError(f"no reply to {message.TYPE} within {timeout:g} s") from None
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                raise SpeakerError(f"the speaker closed the connection ({err})") from None
            except asyncio.LimitOverrunError:
                await self.close()
                raise SpeakerError(f"a reply over {self._max_line} bytes") from None
            try:
                return parse_reply(reply_line, max_line=self._max_line)
            except IpcError as err:
                raise SpeakerError(f"malformed reply: {err}") from None


class _NoHello(Exception):
    pass


def status_sync(path: str | os.PathLike[str] | None = None, *, timeout: float = 5.0) -> Status:
    """One status request in a fresh event loop (for CLIs)."""

    async def run() -> Status:
        async with await SpeakerClient.connect(path, timeout=timeout) as client:
            return await client.status(timeout=timeout)

    return asyncio.run(run())


def routes_sync(
    path: str | os.PathLike[str] | None = None,
    *,
    prefix: str | None = None,
    peer: str | None = None,
    limit: int = DEFAULT_ROUTES_LIMIT,
    timeout: float = 30.0,
) -> Routes:
    """One routes request in a fresh event loop (for CLIs)."""

    async def run() -> Routes:
        async with await SpeakerClient.connect(path, timeout=timeout) as client:
            return await client.routes(prefix=prefix, peer=peer, limit=limit, timeout=timeout)

    return asyncio.run(run())


def snapshot_sync(
    state: DesiredState,
    path: str | os.PathLike[str] | None = None,
    *,
    epoch: int | None = None,
    generation: int = 1,
    timeout: float | None = 60.0,
) -> Ack:
    """Send one snapshot in a fresh event loop, as a new agent would (new epoch by default)."""

    async def run() -> Ack:
        async with await SpeakerClient.connect(path, timeout=timeout) as client:
            return await client.snapshot(
                state,
                epoch=new_epoch() if epoch is None else epoch,
                generation=generation,
                timeout=timeout,
            )

    return asyncio.run(run())


# Re-exported so the controller needs no import of speaker.api.ipc (see the import-linter contract).
__all__ = [
    "DEFAULT_SOCKET",
    "SOCKET_ENV",
    "Ack",
    "BfdStatus",
    "FibSummary",
    "Hello",
    "IpcError",
    "NackError",
    "PeerStatus",
    "RouteNote",
    "Routes",
    "SpeakerClient",
    "SpeakerError",
    "StateVersion",
    "Status",
    "default_socket_path",
    "new_epoch",
    "routes_sync",
    "snapshot_sync",
    "status_sync",
]
