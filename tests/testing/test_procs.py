"""testing.procs.Proc: waiting on what a process writes, and ending it, with a plain `sh`."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from testing.procs import Proc
from testing.wait import WaitTimeout


def sh(tmp_path: Path, script: str) -> Proc:
    return Proc("sh", ["sh", "-c", script], tmp_path / "sh.log")


def test_wait_log_returns_the_log_after_an_offset(tmp_path: Path) -> None:
    proc = sh(tmp_path, "echo one; sleep 0.2; echo two; echo three; exec sleep 60").start()
    try:
        assert proc.wait_log("one").startswith("one\n")
        at = len("one\n")
        assert proc.wait_log("three", after=at) == "two\nthree\n"
        with pytest.raises(WaitTimeout, match="waiting for 'one' in sh's log"):
            proc.wait_log("one", after=at, timeout=0.1)
    finally:
        proc.close()
    assert not proc.running()


def test_waits_fail_at_once_when_the_process_has_ended(tmp_path: Path) -> None:
    proc = sh(tmp_path, "echo started; exit 3").start()
    with pytest.raises(AssertionError, match=r"sh's log ended with no 'ready':\nstarted"):
        proc.wait_log("ready", timeout=600)
    with pytest.raises(AssertionError, match="sh ended before making"):
        proc.wait_file(tmp_path / "sock", timeout=600)
    assert proc.stop() == 3


def test_wait_file_sees_the_file_and_times_out_naming_it(tmp_path: Path) -> None:
    made = tmp_path / "made"
    proc = sh(tmp_path, f"sleep 0.2; echo made; touch {made}; exec sleep 60").start()
    try:
        proc.wait_file(made)
        with pytest.raises(WaitTimeout, match=rf"waiting for {tmp_path}/never from sh .*\nmade"):
            proc.wait_file(tmp_path / "never", timeout=0.1)
    finally:
        proc.close(grace=5)  # SIGTERM is enough for sleep
    assert proc.proc is not None and proc.proc.returncode == -signal.SIGTERM
