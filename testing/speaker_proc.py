"""Our speaker as a real process (`kubgp-speaker run --config FILE`), always ended by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class SpeakerProcess:
    def __init__(self, workdir: Path, netns: str | None = None) -> None:
        self.workdir = workdir
        self.netns = netns
        self.config = workdir / "speaker.json"
        self.logfile = workdir / "speaker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self, doc: dict[str, object]) -> None:
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.rename(self.config)

    def start(self, doc: dict[str, object] | None, *extra: str) -> None:
        """Runs `kubgp-speaker run`, with `doc` as its --config file when given, plus `extra`
        arguments (e.g. --socket, --state-dir)."""
        argv = [
            sys.executable,
            "-m",
            "speaker.cli.kubgp_speaker",
            "run",
            "--log-level",
            "debug",
            *extra,
        ]
        if doc is not None:
            self.write(doc)
            argv += ["--config", str(self.config)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def reload(self, doc: dict[str, object]) -> None:
        self.write(doc)
        self.signal(signal.SIGHUP)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_log(self, needle: str, *, timeout: float = 30.0, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()[after:]
            if needle in text:
                return text
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"speaker log has no {needle!r}:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def speaker_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., SpeakerProcess]]:
    made: list[SpeakerProcess] = []

    def make(netns: str | None = None) -> SpeakerProcess:
        workdir = tmp_path / f"speaker{len(made)}"
        workdir.mkdir()
        proc = SpeakerProcess(workdir, netns)
        made.append(proc)
        return proc

    try:
        yield make
    finally:
        for proc in made:
            proc.close()
        for proc in made:  # pytest shows this only when the test failed
            print(f"\n=== speaker log ({proc.workdir})\n{proc.log()[-6000:]}")
