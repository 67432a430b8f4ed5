"""speaker.state_store: the applied state survives a round trip through applied.json, saving
is atomic (temp file + rename, nothing left behind, 0600), and an unusable file is moved aside
with a message instead of stopping the speaker."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from speaker.api.ipc import AppliedState, StateVersion
from speaker.state_store import FILE_NAME, StateStore, StateStoreError
from tests.speaker.control.helpers import STATE, state_with

APPLIED = AppliedState(
    version=StateVersion(epoch=1_700_000_000_000_000_000, generation=42), state=STATE
)


def test_round_trip_and_overwrite(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    assert store.load().applied is None
    assert store.load().problem is None
    store.save(APPLIED)
    assert store.load().applied == APPLIED
    newer = AppliedState(version=StateVersion(epoch=2, generation=1), state=state_with(asn=65001))
    store.save(newer)
    assert StateStore(tmp_path / "state").load().applied == newer
    # Only the file itself: no temporary file left behind; it holds passwords, so 0600.
    assert os.listdir(tmp_path / "state") == [FILE_NAME]
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"kind":"kubgp-speaker-applied","version":1,"epo', "malformed JSON"),
        (b"[]", "not a JSON object"),
        (b'{"kind":"other","version":1}', "kind/version 'other'/1"),
        (b'{"kind":"kubgp-speaker-applied","version":99}', "kind/version"),
        (
            b'{"kind":"kubgp-speaker-applied","version":1,"epoch":1,"generation":-1,"state":{}}',
            "generation: must be between 0",
        ),
        (
            b'{"kind":"kubgp-speaker-applied","version":1,"epoch":1,"generation":1,'
            b'"state":{"routerId":"192.0.2.1"}}',
            "state.asn: required",
        ),
        (b'{"kind":"kubgp-speaker-applied","state":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
         "malformed JSON: nested too deeply"),
    ],
)  # fmt: skip
def test_unusable_file_is_kept_aside(tmp_path: Path, content: bytes, problem: str) -> None:
    store = StateStore(tmp_path)
    store.path.write_bytes(content)
    result = store.load()
    assert result.applied is None
    assert result.problem is not None
    assert problem in result.problem
    assert "starting with nothing applied" in result.problem
    assert result.kept_aside is not None
    assert str(result.kept_aside) in result.problem
    assert result.kept_aside.read_bytes() == content
    assert not store.path.exists()
    # The next start finds nothing and says nothing; a second bad file gets its own name.
    assert store.load() == type(result)(applied=None)
    store.path.write_bytes(content)
    second = store.load().kept_aside
    assert second is not None and second != result.kept_aside and second.exists()


def test_save_renames_a_new_file_over_the_old(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(APPLIED)
    before = store.path.stat().st_ino
    store.save(APPLIED)
    # A new inode: the file was renamed over, never rewritten in place.
    assert store.path.stat().st_ino != before
    assert json.loads(store.path.read_bytes().partition(b"\n")[0])["generation"] == 42


def test_load_removes_the_temporary_file_of_a_writer_that_died(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(APPLIED)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        left = tmp_path / f".{FILE_NAME}.{dead.pid}.tmp"
        running = tmp_path / f".{FILE_NAME}.{live.pid}.tmp"
        other = tmp_path / f".{FILE_NAME}.notapid.tmp"
        for path in (left, running, other):
            path.write_bytes(b"half a base")
        loaded = StateStore(tmp_path).load()
        assert loaded.applied == APPLIED and loaded.problem is None
        assert not left.exists()  # its writer is gone: never acked, the base is the state
        assert running.exists() and other.exists()  # a live writer's, and not ours to judge
    finally:
        live.kill()
        live.wait()


def test_save_failure_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateStoreError, match="cannot save the applied state"):
        StateStore(blocker / "state").save(APPLIED)
