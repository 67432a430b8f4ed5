"""speaker.control over real Unix sockets with real asyncio.

The sink is `helpers.RecordingSink`, an in-test stand-in for the BGP runtime that records the
states it is given: the boundary these tests own is the socket protocol up to `StateSink.apply`
(routes reaching a router are the runtime's and the lab's tests)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from speaker.api.ipc import AppliedState, PeerStatus, StateVersion
from speaker.control import ControlError, ControlServer, serve_control
from speaker.state_store import StateStore
from testing.wait import wait_for_async
from tests.speaker.control.helpers import (
    STATE,
    STATE_DOC,
    Conn,
    RecordingSink,
    delta,
    snapshot,
    socket_dir,
    state_with,
)

Scenario = Callable[[ControlServer, RecordingSink, Path], Awaitable[None]]


def run(scenario: Scenario, *, sink: RecordingSink | None = None, **options: Any) -> None:
    async def main() -> None:
        with socket_dir() as d:
            path = d / "speaker.sock"
            the_sink = sink or RecordingSink()
            server = await serve_control(the_sink, path, **options)
            try:
                await asyncio.wait_for(scenario(server, the_sink, path), 20)
            finally:
                await server.close()

    asyncio.run(main())


def test_socket_is_0600_and_removed_on_close() -> None:
    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert server.allowed_uids == frozenset({0, os.getuid()})

    async def main() -> None:
        with socket_dir() as d:
            server = await serve_control(RecordingSink(), d / "s.sock")
            await scenario(server, RecordingSink(), d / "s.sock")
            await server.close()
            assert not (d / "s.sock").exists()

    asyncio.run(main())


def test_group_makes_the_socket_0660_for_that_group() -> None:
    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == 65534

    run(scenario, group="nogroup")


def test_snapshot_ack_and_hello_reports_it() -> None:
    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        agent = await Conn.open(path)
        assert await agent.recv() == {"type": "hello", "proto": 2, "applied": None}
        reply = await agent.ask(snapshot(5, 1))
        assert reply == {"type": "ack", "epoch": 5, "generation": 1}
        assert sink.applied == [STATE]
        other = await Conn.open(path)
        assert (await other.recv())["applied"] == {"epoch": 5, "generation": 1}
        await agent.close()
        await other.close()

    run(scenario)


def test_delta_acks_with_the_merged_state() -> None:
    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        agent = await Conn.open(path)
        await agent.recv()
        assert (await agent.ask(snapshot(5, 1)))["type"] == "ack"
        reply = await agent.ask(
            delta(
                5,
                2,
                1,
                add=[{"prefix": "10.9.0.0/16", "peers": ["tor-b"]}],
                remove=["10.244.1.0/24"],
            )
        )
        assert reply == {"type": "ack", "epoch": 5, "generation": 2}
        assert sink.current == state_with(
            advertisements=[
                {"prefix": "10.9.0.0/16", "peers": ["tor-b"]},
                STATE_DOC["advertisements"][1],
            ]
        )
        assert server.applied is not None
        assert server.applied.version == StateVersion(epoch=5, generation=2)
        await agent.close()

    run(scenario)


def test_gap_is_refused_then_a_snapshot_recovers() -> None:
    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        agent = await Conn.open(path)
        await agent.recv()
        await agent.ask(snapshot(5, 1))
        reply = await agent.ask(delta(5, 3, 2, remove=["10.244.1.0/24"]))
        assert reply == {
            "type": "nack",
            "reason": "delta base 2 is not the applied generation 1",
            "want": "snapshot",
        }
        reply = await agent.ask(delta(6, 2, 1))
        assert reply["type"] == "nack" and "new epoch starts with a snapshot" in reply["reason"]
        assert sink.applied == [STATE]
        changed = state_with(advertisements=[])
        assert (await agent.ask(snapshot(5, 3, changed.to_dict())))["type"] == "ack"
        assert sink.applied == [STATE, changed]
        await agent.close()

    run(scenario)


def test_bad_lines_are_refused_and_change_nothing_for_anyone() -> None:
    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        agent = await Conn.open(path)
        reader = await Conn.open(path)
        await agent.recv()
        await reader.recv()
        await agent.ask(snapshot(5, 1))
        bad_state = {**STATE_DOC, "peers": [{"name": "tor-a", "address": "nowhere", "asn": 1}]}
        for line, reason in [
            (b"garbage\n", "malformed JSON"),
            (b'{"type":"launch"}\n', "unknown request type 'launch'"),
            (b'{"type":"status","verbose":true}\n', "verbose: unknown key"),
            (
                (f'{{"type":"snapshot","epoch":5,"generation":2,"state":{bad_state}}}\n')
                .replace("'", '"')
                .encode(),
                "state.peers[0].address: must be an IPv4 or IPv6 address",
            ),
        ]:
            await agent.send_raw(line)
            reply = await agent.recv()
            assert reply["type"] == "nack" and reason in reply["reason"], reply
        assert sink.applied == [STATE]
        # The same connection and the other one still work.
        assert (await agent.ask({"type": "status"}))["applied"] == {"epoch": 5, "generation": 1}
        assert (await reader.ask({"type": "status"}))["type"] == "status"
        await agent.close()
        await reader.close()

    run(scenario)


def _send_endless_line(path: Path) -> tuple[int, bytes]:
    """Blocking: read the hello, then send 64 MiB without a newline until the speaker cuts
    the connection; return the bytes sent and everything received after the hello."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        hello = s.makefile("rb").readline()
        assert hello.startswith(b'{"type":"hello"')
        chunk = b"x" * 65536
        sent = 0
        try:
            for _ in range(1024):
                s.sendall(chunk)
                sent += len(chunk)
        except (ConnectionError, OSError):
            pass
        received = b""
        try:
            while data := s.recv(65536):
                received += data
        except ConnectionError:
            pass
        return sent, received


def test_oversized_line_is_refused_without_being_read() -> None:
    limit = 4096

    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        bystander = await Conn.open(path)
        await bystander.recv()
        await bystander.ask(snapshot(5, 1))
        sent, received = await asyncio.to_thread(_send_endless_line, path)
        # The speaker stops reading at about twice the limit plus socket buffers, and closes.
        assert sent < 8 * 1024 * 1024
        assert received == (
            b'{"type":"nack","reason":"line over the limit of 4096 bytes; closing",'
            b'"want":"snapshot"}\n'
        )
        assert sink.applied == [STATE]
        assert (await bystander.ask({"type": "status"}))["applied"]["generation"] == 1
        await bystander.close()

    run(scenario, max_line=limit)


def test_status_is_answered_while_an_apply_is_in_flight_and_applies_run_one_at_a_time() -> None:
    sink = RecordingSink()

    async def scenario(server: ControlServer, _: RecordingSink, path: Path) -> None:
        sink.gate = asyncio.Event()
        agents = [await Conn.open(path) for _ in range(2)]
        reader_conn = await Conn.open(path)
        for c in [*agents, reader_conn]:
            await c.recv()
        await agents[0].send(snapshot(1, 1))
        await sink.started.wait()
        await agents[1].send(snapshot(2, 1, state_with(asn=65001).to_dict()))
        status = await reader_conn.ask({"type": "status"})
        assert status["applied"] is None  # nothing finished yet
        assert [p["name"] for p in status["peers"]] == ["tor-a", "tor-b"]
        assert status["peers"][0] == {
            "name": "tor-a",
            "address": "127.0.0.2",
            "state": "Established",
            "since": 1_700_000_000.0,
            "prefixesAdvertised": 2,
            "prefixesReceived": 0,
            "lastError": None,
        }
        sink.gate.set()
        assert await agents[0].recv() == {"type": "ack", "epoch": 1, "generation": 1}
        assert await agents[1].recv() == {"type": "ack", "epoch": 2, "generation": 1}
        assert sink.max_running == 1
        assert sink.applied == [STATE, state_with(asn=65001)]
        for c in [*agents, reader_conn]:
            await c.close()

    run(scenario, sink=sink)


def test_a_client_that_never_reads_is_dropped_without_blocking_others() -> None:
    # Big status replies (300 peers, ~45 kB a line) fill the socket buffer quickly.
    sink = RecordingSink(
        peers=[
            PeerStatus(
                name=f"peer-{i:03}-{'x' * 80}",
                address=f"10.0.{i // 256}.{i % 256}",
                state="Idle",
                last_error="y" * 40,
            )
            for i in range(300)
        ]
    )

    async def scenario(server: ControlServer, _: RecordingSink, path: Path) -> None:
        stuck = await Conn.open(path)
        agent = await Conn.open(path)
        await agent.recv()
        # The stuck client asks and asks, and never reads a reply.
        requests = b'{"type":"status"}\n' * 2000
        stuck.writer.write(requests)
        t0 = time.monotonic()
        assert (await agent.ask(snapshot(1, 1)))["type"] == "ack"
        assert (await agent.ask({"type": "status"}))["type"] == "status"
        assert time.monotonic() - t0 < 2.0
        await wait_for_async(lambda: server.dropped_clients > 0, "the stuck client dropped")
        assert server.client_count == 1
        assert server.dropped_clients == 1
        await stuck.read_to_eof()  # the speaker closed it (after the replies it did take)
        assert (await agent.ask({"type": "status"}))["type"] == "status"
        await agent.close()

    run(scenario, sink=sink, write_queue=4, write_timeout=1.0)


def test_agent_going_away_changes_nothing_even_mid_apply() -> None:
    sink = RecordingSink()

    async def scenario(server: ControlServer, _: RecordingSink, path: Path) -> None:
        agent = await Conn.open(path)
        await agent.recv()
        await agent.ask(snapshot(1, 1))
        sink.gate = asyncio.Event()
        sink.started.clear()
        await agent.send(snapshot(1, 2, state_with(asn=65001).to_dict()))
        await sink.started.wait()
        await agent.close()  # gone before the ack
        await asyncio.sleep(0.1)
        sink.gate.set()
        # The apply that was started finished; nothing else was asked of the sink.
        later = await Conn.open(path)
        await asyncio.sleep(0.1)
        assert (await later.recv())["applied"] == {"epoch": 1, "generation": 2}
        assert sink.applied == [STATE, state_with(asn=65001)]
        await later.close()
        await asyncio.sleep(0.1)
        assert sink.applied == [STATE, state_with(asn=65001)]

    run(scenario, sink=sink)


def test_sink_failure_nacks_and_asks_for_a_snapshot() -> None:
    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        agent = await Conn.open(path)
        await agent.recv()
        await agent.ask(snapshot(1, 1))
        sink.fail = "netlink said no"
        reply = await agent.ask(snapshot(1, 2))
        assert reply == {
            "type": "nack",
            "reason": "the speaker could not apply the state: netlink said no",
            "want": "snapshot",
        }
        # What runs is unknown now: no version, and a delta is refused.
        assert (await agent.ask({"type": "status"}))["applied"] is None
        assert "no state is applied yet" in (await agent.ask(delta(1, 3, 1)))["reason"]
        assert (await agent.ask(snapshot(1, 3)))["type"] == "ack"
        await agent.close()

    run(scenario)


def test_refused_state_keeps_the_applied_version_and_logs_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sink that raises StateRefused changed nothing: the version still describes what runs,
    a delta on it is accepted, and the log has one line without a traceback."""

    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        agent = await Conn.open(path)
        await agent.recv()
        await agent.ask(snapshot(1, 1))
        sink.refuse = "cannot listen on 192.0.2.1 port 179: Cannot assign requested address"
        reply = await agent.ask(snapshot(1, 2, {**STATE_DOC, "asn": 65001}))
        assert reply == {
            "type": "nack",
            "reason": "the speaker could not apply the state: cannot listen on 192.0.2.1 port "
            "179: Cannot assign requested address",
            "want": "snapshot",
        }
        assert (await agent.ask({"type": "status"}))["applied"] == {"epoch": 1, "generation": 1}
        assert server.applied is not None and server.applied.state == STATE
        reply = await agent.ask(delta(1, 3, 1, remove=["10.244.1.0/24"]))
        assert reply["type"] == "ack"
        assert sink.current is not None
        assert [a.prefix for a in sink.current.advertisements] == ["198.51.100.7/32"]
        await agent.close()

    with caplog.at_level("ERROR", logger="speaker.control"):
        run(scenario)
    (record,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert "generation 2 refused, the running state is unchanged: cannot listen" in (
        record.getMessage()
    )
    assert record.exc_info is None


def test_refuse_states_serves_status_and_nacks_every_state() -> None:
    reason = "the state comes from --config /etc/kubgp/speaker.yaml; edit it and send SIGHUP"

    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        conn = await Conn.open(path)
        assert (await conn.recv()) == {"type": "hello", "proto": 2, "applied": None}
        for request in (snapshot(1, 1), delta(1, 2, 1)):
            assert await conn.ask(request) == {"type": "nack", "reason": reason, "want": None}
        status = await conn.ask({"type": "status"})
        assert status["type"] == "status" and len(status["peers"]) == 2
        # Malformed lines still get the parser's nack, not the standalone one.
        assert "malformed JSON" in (await conn.ask_raw(b"{nope\n"))["reason"]
        assert sink.applied == []
        await conn.close()

    run(scenario, refuse_states=reason)


@pytest.mark.parametrize("depth", [100_000, 400_000])  # below and above the thread threshold
def test_deeply_nested_lines_are_nacked_and_the_server_keeps_serving(depth: int) -> None:
    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        conn = await Conn.open(path)
        await conn.recv()
        for body in (b"[" * depth + b"]" * depth, b'{"type":"snapshot","state":' + b"{\"a\":" *
                     depth + b"1" + b"}" * depth + b"}"):  # fmt: skip
            reply = await conn.ask_raw(body + b"\n")
            assert reply == {
                "type": "nack",
                "reason": "malformed JSON: nested too deeply",
                "want": "snapshot",
            }
        assert (await conn.ask(snapshot(1, 1)))["type"] == "ack"
        await conn.close()
        other = await Conn.open(path)
        assert (await other.recv())["applied"] == {"epoch": 1, "generation": 1}
        await other.close()

    run(scenario)


_PEER_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
f = s.makefile("rb")
for _ in range(int(sys.argv[2])):
    print(repr(f.readline()))
"""


async def _connect_as(uid: int, path: Path, lines: int) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        # The system interpreter: the test's own may sit where only root can read.
        "/usr/bin/python3",
        "-I",
        "-c",
        _PEER_CLIENT,
        str(path),
        str(lines),
        user=uid,
        group=uid,
        extra_groups=[],
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0
    return out.decode().splitlines()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as uid 65534")
def test_wrong_uid_is_refused_by_peer_credentials() -> None:
    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        lines = await _connect_as(65534, path, 2)
        assert lines == [
            repr(b'{"type":"nack","reason":"uid 65534 may not use this socket","want":null}\n'),
            "b''",  # and closed
        ]

    # 0666 so only SO_PEERCRED stands in the way.
    run(scenario, mode=0o666)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as uid 65534")
def test_allowed_uid_gets_hello_and_default_mode_keeps_others_out() -> None:
    async def allowed(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        lines = await _connect_as(65534, path, 1)
        assert lines == [repr(b'{"type":"hello","proto":2,"applied":null}\n')]

    async def by_mode(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        assert await _connect_as(65534, path, 1) == ["EACCES"]

    run(allowed, mode=0o666, allowed_uids=[0, 65534])
    run(by_mode)


def test_stale_socket_is_replaced_but_live_socket_and_other_files_are_not() -> None:
    async def main() -> None:
        with socket_dir() as d:
            path = d / "s.sock"
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stale.bind(str(path))
            stale.close()  # a dead speaker's file
            server = await serve_control(RecordingSink(), path)
            conn = await Conn.open(path)
            assert (await conn.recv())["type"] == "hello"
            with pytest.raises(ControlError, match="in use"):
                await serve_control(RecordingSink(), path)
            assert (await conn.ask({"type": "status"}))["type"] == "status"  # still served
            await conn.close()
            await server.close()
            other = d / "notes"
            other.write_text("keep me")
            with pytest.raises(ControlError, match="not a socket"):
                await serve_control(RecordingSink(), other)
            assert other.read_text() == "keep me"

    asyncio.run(main())


def test_saved_state_is_resumed_before_listening(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")

    async def first(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        assert sink.applied == []  # nothing saved yet
        agent = await Conn.open(path)
        assert (await agent.recv())["applied"] is None
        await agent.ask(snapshot(3, 4))
        await agent.close()

    async def second(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        assert sink.applied == [STATE]  # resumed before listening
        assert server.applied == AppliedState(
            version=StateVersion(epoch=3, generation=4), state=STATE
        )
        agent = await Conn.open(path)
        assert (await agent.recv())["applied"] == {"epoch": 3, "generation": 4}
        # The resumed version is a valid base for a delta.
        assert (await agent.ask(delta(3, 5, 4, remove=["10.244.1.0/24"])))["type"] == "ack"
        await agent.close()

    run(first, state_store=store)
    run(second, state_store=store)
    loaded = store.load().applied
    assert loaded is not None and loaded.version == StateVersion(epoch=3, generation=5)


def test_corrupt_saved_state_starts_empty(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.path.write_text("{not json")

    async def scenario(server: ControlServer, sink: RecordingSink, path: Path) -> None:
        assert sink.applied == []
        agent = await Conn.open(path)
        assert (await agent.recv())["applied"] is None
        await agent.close()

    run(scenario, state_store=store)
    assert [p.name[:21] for p in tmp_path.iterdir()] == ["applied.json.corrupt-"]
