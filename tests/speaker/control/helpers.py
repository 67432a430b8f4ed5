"""Shared pieces of the control-socket tests.

`RecordingSink` stands in for the BGP runtime: it records every state it is asked to apply and
reports fixed peers. That is the boundary these tests own (`speaker.control.StateSink`); the
runtime's own `apply` is tested with the runtime, and against real routers in tests/lab.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from speaker.api.ipc import Delta, PeerStatus, apply_delta_in_place
from speaker.api.schema import DesiredState, parse_desired_state
from speaker.control import StateRefused

STATE_DOC: dict[str, Any] = {
    "routerId": "192.0.2.11",
    "asn": 64512,
    "peers": [
        {"name": "tor-a", "address": "127.0.0.2", "asn": 65000},
        {"name": "tor-b", "address": "127.0.0.3", "asn": 65000},
    ],
    "advertisements": [
        {"prefix": "10.244.1.0/24"},
        {"prefix": "198.51.100.7/32", "peers": ["tor-a"], "communities": ["64512:100"]},
    ],
}
STATE: DesiredState = parse_desired_state(STATE_DOC)


def state_with(**changes: Any) -> DesiredState:
    return parse_desired_state({**STATE_DOC, **changes})


class RecordingSink:
    """Records applied states. `gate` (when set) holds each apply until it is set; `fail`
    makes the next apply raise (a bug: what runs is unknown), `refuse` makes it raise
    `StateRefused` (nothing changed). `running` counts applies in progress at once."""

    def __init__(self, peers: Sequence[PeerStatus] = ()) -> None:
        self.applied: list[DesiredState] = []
        self.peers = tuple(peers) or (
            PeerStatus(
                name="tor-a",
                address="127.0.0.2",
                state="Established",
                since=1_700_000_000.0,
                prefixes_advertised=2,
                prefixes_received=0,
            ),
            PeerStatus(name="tor-b", address="127.0.0.3", state="Active", last_error="refused"),
        )
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail: str | None = None
        self.refuse: str | None = None
        self.running = 0
        self.max_running = 0

    @property
    def current(self) -> DesiredState | None:
        return self.applied[-1] if self.applied else None

    async def apply(self, state: DesiredState) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail is not None:
                message, self.fail = self.fail, None
                raise RuntimeError(message)
            if self.refuse is not None:
                message, self.refuse = self.refuse, None
                raise StateRefused(message)
            self.applied.append(state)
        finally:
            self.running -= 1

    def status(self) -> Sequence[PeerStatus]:
        return self.peers


class DeltaSink(RecordingSink):
    """Records snapshots, and applies deltas to the last one in place (as `Speaker` does)."""

    def __init__(self) -> None:
        super().__init__()
        self.deltas: list[Delta] = []

    async def apply_delta(self, change: Delta) -> None:
        assert self.current is not None
        apply_delta_in_place(self.current, change)
        self.deltas.append(change)


@contextmanager
def socket_dir() -> Iterator[Path]:
    """A short directory for sockets (AF_UNIX paths are limited to 107 bytes), 0755 so a test
    may connect as another uid, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="kctl", dir="/tmp") as d:
        os.chmod(d, 0o755)
        yield Path(d)


class Conn:
    """A raw NDJSON connection, so the tests see exactly the lines on the wire."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path) -> Conn:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
        return cls(reader, writer)

    async def send(self, doc: object) -> None:
        self.writer.write(json.dumps(doc).encode() + b"\n")
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line.endswith(b"\n"), f"connection closed instead of a line: {line!r}"
        doc = json.loads(line)
        assert isinstance(doc, dict)
        return doc

    async def ask(self, doc: object) -> dict[str, Any]:
        await self.send(doc)
        return await self.recv()

    async def ask_raw(self, data: bytes) -> dict[str, Any]:
        await self.send_raw(data)
        return await self.recv()

    async def read_to_eof(self, timeout: float = 5.0) -> bytes:
        """Everything up to the speaker closing the connection (b"" after a reset); a
        TimeoutError if it stays open."""
        try:
            return await asyncio.wait_for(self.reader.read(), timeout)
        except ConnectionError:
            return b""

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


def snapshot(epoch: int, generation: int, state: object = None) -> dict[str, Any]:
    doc = STATE_DOC if state is None else state
    return {"type": "snapshot", "epoch": epoch, "generation": generation, "state": doc}


def delta(
    epoch: int,
    generation: int,
    base: int,
    add: Sequence[object] = (),
    remove: Sequence[object] = (),
) -> dict[str, Any]:
    return {
        "type": "delta",
        "epoch": epoch,
        "generation": generation,
        "base": base,
        "add": list(add),
        "remove": list(remove),
    }
