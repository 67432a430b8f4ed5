"""speaker.api.client against a real control server, and the `kubgp-speaker status` / `apply`
commands end to end (a subprocess each) against a server running in a thread. The sink is
`helpers.RecordingSink`, the in-test stand-in for the BGP runtime."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from speaker.api.client import (
    NackError,
    SpeakerClient,
    SpeakerError,
    default_socket_path,
    snapshot_sync,
    status_sync,
)
from speaker.api.ipc import Ack, IpcError, StateVersion
from speaker.api.schema import Advertisement
from speaker.control import serve_control
from tests.speaker.control.helpers import STATE, STATE_DOC, RecordingSink, socket_dir, state_with


def test_client_snapshot_delta_status_and_nack() -> None:
    async def main() -> None:
        with socket_dir() as d:
            sink = RecordingSink()
            server = await serve_control(sink, d / "s.sock")
            async with await SpeakerClient.connect(d / "s.sock") as client:
                assert client.hello.applied is None
                assert await client.snapshot(STATE, epoch=9, generation=1) == Ack(
                    epoch=9, generation=1
                )
                ack = await client.delta(
                    epoch=9,
                    generation=2,
                    base=1,
                    add=[Advertisement(prefix="10.9.0.0/16", peers=("tor-a",))],
                    remove=["10.244.1.0/24"],
                )
                assert ack == Ack(epoch=9, generation=2)
                assert sink.current is not None
                assert [a.prefix for a in sink.current.advertisements] == [
                    "10.9.0.0/16",
                    "198.51.100.7/32",
                ]
                with pytest.raises(NackError, match="not the applied generation 2") as info:
                    await client.delta(epoch=9, generation=4, base=3)
                assert info.value.want == "snapshot"
                status = await client.status()
                assert status.applied == StateVersion(epoch=9, generation=2)
                assert [p.name for p in status.peers] == ["tor-a", "tor-b"]
            await server.close()

    asyncio.run(main())


def test_connect_retries_until_the_speaker_is_up() -> None:
    async def main() -> None:
        with socket_dir() as d:
            path = d / "later.sock"

            async def start_late() -> None:
                await asyncio.sleep(0.3)
                server = await serve_control(RecordingSink(), path)
                await asyncio.sleep(1.0)
                await server.close()

            starter = asyncio.create_task(start_late())
            client = await SpeakerClient.connect(path, timeout=5)
            assert client.hello.applied is None
            await client.close()
            await starter
            with pytest.raises(SpeakerError, match="cannot connect"):
                await SpeakerClient.connect(path, timeout=0.2)

    asyncio.run(main())


def test_client_refuses_an_oversized_request_before_sending() -> None:
    async def main() -> None:
        with socket_dir() as d:
            sink = RecordingSink()
            server = await serve_control(sink, d / "s.sock", max_line=512)
            client = await SpeakerClient.connect(d / "s.sock", max_line=512)
            with pytest.raises(IpcError, match="over the limit of 512 bytes"):
                await client.snapshot(STATE, epoch=1, generation=1)
            assert sink.applied == []
            assert (await client.status()).applied is None  # connection still fine
            await client.close()
            await server.close()

    asyncio.run(main())


def test_client_imports_nothing_heavy() -> None:
    code = (
        "import sys, speaker.api.client\n"
        "print(sorted(m for m in sys.modules if m.startswith('speaker') or m in "
        "('yaml', 'prometheus_client', 'pyroute2', 'kopf', 'kubernetes')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == str(
        [
            "speaker",
            "speaker.api",
            "speaker.api.client",
            "speaker.api.communities",
            "speaker.api.fields",
            "speaker.api.ipc",
            "speaker.api.route_status",
            "speaker.api.routes",
            "speaker.api.schema",
        ]
    )


def test_default_socket_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBGP_SPEAKER_SOCKET", raising=False)
    assert default_socket_path() == "/run/kubgp/speaker.sock"
    monkeypatch.setenv("KUBGP_SPEAKER_SOCKET", "/tmp/x.sock")
    assert default_socket_path() == "/tmp/x.sock"


# --- the CLI, end to end -------------------------------------------------------------------


@contextmanager
def server_thread() -> Iterator[tuple[Path, RecordingSink]]:
    """A control server on its own event loop in a thread, for blocking callers."""
    with socket_dir() as d:
        path = d / "speaker.sock"
        sink_box: Future[RecordingSink] = Future()
        stop: Future[asyncio.Event] = Future()

        async def serve() -> None:
            sink = RecordingSink()
            server = await serve_control(sink, path)
            stopped = asyncio.Event()
            stop.set_result(stopped)
            sink_box.set_result(sink)
            await stopped.wait()
            await server.close()

        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        stopped = stop.result(timeout=10)
        try:
            yield path, sink_box.result()
        finally:
            loop.call_soon_threadsafe(stopped.set)
            thread.join(10)
            loop.close()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "speaker.cli.kubgp_speaker", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_cli_apply_then_status_table_and_json(tmp_path: Path) -> None:
    state_file = tmp_path / "state.yaml"
    state_file.write_text(yaml.safe_dump(STATE_DOC))
    with server_thread() as (path, sink):
        applied = _cli("apply", str(state_file), "--socket", str(path))
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.startswith("applied: epoch ")
        assert applied.stdout.rstrip().endswith(" generation 1")
        assert sink.applied == [STATE]

        table = _cli("status", env={"KUBGP_SPEAKER_SOCKET": str(path)})
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == [
            "NAME", "ADDRESS", "STATE", "SINCE", "ADVERTISED", "RECEIVED", "LAST", "ERROR"
        ]  # fmt: skip
        assert lines[1].split() == [
            "tor-a", "127.0.0.2", "Established", "2023-11-14T22:13:20Z", "2", "0", "-"
        ]  # fmt: skip
        assert lines[2].split() == ["tor-b", "127.0.0.3", "Active", "-", "0", "0", "refused"]
        assert lines[3].startswith("applied: epoch ") and lines[3].endswith(" generation 1")

        doc = json.loads(_cli("status", "--socket", str(path), "-o", "json").stdout)
        assert doc["type"] == "status"
        assert doc["applied"]["generation"] == 1
        assert doc["peers"][1]["lastError"] == "refused"

        # A second apply is a new agent: a new epoch, generation 1 again, accepted.
        state_file.write_text(json.dumps({**STATE_DOC, "asn": 65001}))
        assert _cli("apply", str(state_file), "--socket", str(path)).returncode == 0
        assert sink.applied == [STATE, state_with(asn=65001)]

        bad = tmp_path / "bad.yaml"
        bad.write_text("routerId: 192.0.2.1\n")
        refused = _cli("apply", str(bad), "--socket", str(path))
        assert refused.returncode == 2  # a file that is not a desired state: nothing sent
        assert "asn: required" in refused.stderr
        assert len(sink.applied) == 2


def test_cli_without_a_speaker_fails_clearly(tmp_path: Path) -> None:
    result = _cli("status", "--socket", str(tmp_path / "none.sock"), "--timeout", "0.3")
    assert result.returncode == 1
    assert "cannot connect to the speaker" in result.stderr


def test_sync_helpers() -> None:
    with server_thread() as (path, sink):
        ack = snapshot_sync(STATE, path, epoch=4, generation=2)
        assert ack == Ack(epoch=4, generation=2)
        assert status_sync(path).applied == StateVersion(epoch=4, generation=2)
        assert sink.applied == [STATE]
