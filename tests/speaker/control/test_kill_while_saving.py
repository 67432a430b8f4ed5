"""kill -9 at every point of saving: the control server (a real one, in a forked child, with a
sink that applies deltas in place) takes a snapshot, deltas (the journal, compacted every few
records), a second snapshot and more deltas, and is SIGKILLed at one chosen call of the state
store's file I/O: before it, after it, or (a write) halfway through it. Every such call is a
crash point, found by a first run that records them all.

After each kill the state directory is loaded again, as a restarted speaker does, and must hold
the last acked generation exactly, or the one in flight when the kill came (saved, its ack lost
with the process), never anything else, with no complaint (a torn tail is what a crash leaves).
A restarted server then says that version in `hello` and acks a delta on it, and that delta
survives one more restart: the journal goes on after whatever the kill left.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

import speaker.state_store as state_store_module
from speaker.api.ipc import AppliedState, Delta, Snapshot, StateVersion, apply_delta, parse_request
from speaker.api.schema import DesiredState
from speaker.control import serve_control
from speaker.state_store import StateStore
from testing.wait import wait_for
from tests.speaker.control.helpers import STATE_DOC, Conn, DeltaSink, delta, snapshot, socket_dir

pytestmark = pytest.mark.slow

EPOCH = 11
HOOKED = frozenset({"open", "write", "fsync", "replace", "unlink", "truncate"})


def _requests() -> list[dict[str, Any]]:
    """A snapshot, deltas enough for two compactions, a snapshot of other routes, deltas."""
    out = [snapshot(EPOCH, 1)]
    for g in range(2, 9):
        out.append(delta(EPOCH, g, g - 1,
                         add=[{"prefix": f"10.9.{g}.0/24", "communities": [f"64512:{g}"]}],
                         remove=[f"10.9.{g - 1}.0/24"] if g > 2 else []))  # fmt: skip
    other = {**STATE_DOC, "advertisements": [{"prefixes": ["10.7.0.0/16", "10.7.1.0/24"],
                                             "med": 5}]}  # fmt: skip
    out.append(snapshot(EPOCH, 9, other))
    for g in range(10, 13):
        out.append(delta(EPOCH, g, g - 1, add=[{"prefix": f"10.8.{g}.0/24", "peers": ["tor-a"]}]))
    return out


def _states(requests: list[dict[str, Any]]) -> dict[int, DesiredState]:
    """The state of each generation, worked out apart from the server (a copy per delta)."""
    states: dict[int, DesiredState] = {}
    for doc in requests:
        request = parse_request(json.dumps(doc).encode())
        if isinstance(request, Snapshot):
            states[request.version.generation] = request.state
        else:
            assert isinstance(request, Delta)
            states[request.version.generation] = apply_delta(states[request.base], request)
    return states


class _Crashing:
    """The `os` module as `speaker.state_store` sees it in the child: every hooked call is
    named in `log`; call number `at` SIGKILLs the process before it, after it, or (a write)
    after writing half of its bytes."""

    def __init__(self, at: int, phase: str, log: Path) -> None:
        self._at, self._phase, self._calls = at, phase, 0
        self._log = log.open("a", buffering=1)

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in HOOKED:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            n = self._calls
            self._calls += 1
            self._log.write(f"{name}\n")
            if n == self._at:
                if self._phase == "before":
                    _die()
                if self._phase == "half":
                    fd, data = args
                    os.write(fd, bytes(data)[: len(data) // 2])
                    _die()
            try:
                return real(*args, **kwargs)
            finally:  # also when it raised (the journal to remove is not there)
                if n == self._at and self._phase == "after":
                    _die()

        return call


def _die() -> NoReturn:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def _child(directory: Path, sock: Path, at: int, phase: str, log: Path) -> NoReturn:
    """The speaker's control side, crashing at the chosen point. Never returns."""
    try:
        setattr(state_store_module, "os", _Crashing(at, phase, log))  # noqa: B010
        setattr(state_store_module, "COMPACT_AT", 0)  # noqa: B010  compact past the base

        async def serve() -> None:
            await serve_control(DeltaSink(), sock, state_store=StateStore(directory))
            await asyncio.Event().wait()

        asyncio.run(serve())
    finally:
        os._exit(3)


class _Child:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._status: int | None = None

    def running(self) -> bool:
        """Not yet ended (a zombie counts as ended; it is reaped by `wait`)."""
        if self._status is not None:
            return False
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    def wait(self) -> int:
        if self._status is None:
            self._status = os.waitpid(self.pid, 0)[1]
        return self._status


@contextmanager
def _speaker(directory: Path, sock: Path, at: int, phase: str, log: Path) -> Iterator[_Child]:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _child(directory, sock, at, phase, log)
    child = _Child(pid)
    try:
        yield child
    finally:
        # Ours, by its pid: killed if still running (the dry run, a point never reached).
        if child.running():
            os.kill(pid, signal.SIGKILL)
        child.wait()


def _drive(
    sock: Path, requests: list[dict[str, Any]], running: Callable[[], bool]
) -> tuple[int | None, int | None]:
    """The agent's side: each request in turn until the connection ends. Returns the last
    acked generation and the one in flight (sent, no reply) when it ended; (last, None) if
    every request was acked and a status after them answered (compaction runs before it)."""
    wait_for(lambda: sock.exists() or not running(), "the control socket")
    acked: int | None = None
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(60)
    try:
        conn.connect(str(sock))
    except (FileNotFoundError, ConnectionRefusedError):
        return acked, None
    with conn, conn.makefile("rwb") as stream:
        if not stream.readline():
            return acked, None
        for doc in [*requests, {"type": "status"}]:
            generation = doc.get("generation")
            try:
                stream.write(json.dumps(doc).encode() + b"\n")
                stream.flush()
                line = stream.readline()
            except (ConnectionError, BrokenPipeError):
                line = b""
            if not line:
                return acked, generation
            reply = json.loads(line)
            assert reply["type"] == ("status" if generation is None else "ack"), reply
            acked = reply.get("generation", acked)
    return acked, None


async def _restart(directory: Path, sock: Path, version: StateVersion) -> DesiredState:
    """A restarted server: hello names `version`; a delta on it is acked. The state after."""
    sink = DeltaSink()
    server = await serve_control(sink, sock, state_store=StateStore(directory))
    agent = await Conn.open(sock)
    try:
        hello = await agent.recv()
        assert hello["applied"] == {"epoch": version.epoch, "generation": version.generation}
        nxt = delta(version.epoch, version.generation + 1, version.generation,
                    add=[{"prefix": "10.99.0.0/16", "med": 1}])  # fmt: skip
        assert (await agent.ask(nxt))["type"] == "ack"
        assert sink.current is not None
        return sink.current
    finally:
        await agent.close()
        await server.close()


def test_kill_9_at_every_point_of_saving_resumes_the_last_acked_generation(
    tmp_path: Path,
) -> None:
    requests = _requests()
    states = _states(requests)
    # The dry run: every hooked call, in order, with no crash.
    with socket_dir() as d, _speaker(tmp_path / "dry", d / "s", -1, "", tmp_path / "dry.log") as p:
        assert _drive(d / "s", requests, p.running) == (12, None)
    calls = (tmp_path / "dry.log").read_text().split()
    assert {"write", "fsync", "replace", "unlink"} <= set(calls)  # journal and compaction
    phases = {"write": ("before", "half", "after")}
    points = [(n, p) for n, name in enumerate(calls) for p in phases.get(name, ("before", "after"))]
    outcomes = {"acked": 0, "in flight": 0}
    for i, (at, phase) in enumerate(points):
        directory = tmp_path / f"run{i}"
        where = f"killed {phase} call {at} ({calls[at]})"
        with socket_dir() as d, _speaker(directory, d / "s", at, phase, tmp_path / f"{i}.log") as p:
            acked, inflight = _drive(d / "s", requests, p.running)
            wait_for(lambda: not p.running(), f"the speaker {where}; {acked=} {inflight=}")
            status = p.wait()
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, where
        loaded = StateStore(directory).load()
        assert loaded.problem is None, (where, loaded.problem)
        resumed = loaded.applied
        if acked is None:  # killed while saving the first snapshot: nothing, or that one
            assert resumed is None or resumed.version.generation == inflight, where
            if resumed is None:
                continue
        assert resumed is not None, where
        generation = resumed.version.generation
        assert generation in (acked, inflight), (where, acked, inflight, generation)
        outcomes["acked" if generation == acked else "in flight"] += 1
        assert resumed == AppliedState(version=resumed.version, state=states[generation]), where
        with socket_dir() as d:
            after = asyncio.run(asyncio.wait_for(_restart(directory, d / "s", resumed.version), 60))
        again = StateStore(directory).load()
        assert again.problem is None and again.applied is not None, where
        assert not list(directory.glob("*.tmp")) and not list(directory.glob(".*.tmp")), where
        assert again.applied.version.generation == generation + 1, where
        assert again.applied.state == after, where
    # Both outcomes occur: kills before a record is whole and after it was fsynced.
    assert outcomes["acked"] and outcomes["in flight"], outcomes
