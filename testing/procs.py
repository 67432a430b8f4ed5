"""The product's processes for end-to-end tests: the real `kubgp-speaker run --socket` and the
real `kubgp-controller node`, each a subprocess with its own log file, always ended by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest


class Proc:
    def __init__(self, name: str, argv: Sequence[str], logfile: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = list(argv)
        self.logfile = logfile
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env)  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_log(self, needle: str, *, after: int = 0, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log()[after:]:
                return
            if not self.running():
                break
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: no {needle!r} in its log:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to say goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def speaker_argv(socket_path: Path, state_dir: Path) -> list[str]:
    return [sys.executable, "-m", "speaker.cli.kubgp_speaker", "run", "--socket", str(socket_path),
            "--state-dir", str(state_dir), "--log-level", "debug"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, float]:
    """The agent's /metrics as {sample name with labels: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as rsp:
        text = rsp.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def probe(port: int, path: str) -> tuple[int, str] | None:
    """(status, body) of GET http://127.0.0.1:port/path; None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as rsp:
            return int(rsp.status), rsp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return None


class Procs:
    """Makes processes in one work dir; ends every one of them at teardown."""

    def __init__(self, workdir: Path, kubeconfig: Path) -> None:
        self.workdir = workdir
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.made: list[Proc] = []

    def speaker(self, name: str = "speaker") -> tuple[Proc, Path]:
        d = self.workdir / name
        d.mkdir(exist_ok=True)
        sock = Path(f"/tmp/kubgp-e2e-{os.getpid()}-{len(self.made)}.sock")
        proc = Proc(name, speaker_argv(sock, d / "state"), d / "speaker.log", self.env)
        self.made.append(proc)
        return proc, sock

    def again(self, proc: Proc, name: str) -> Proc:
        """The same command again (e.g. after a kill), logging to its own file."""
        again = Proc(name, proc.argv, proc.logfile.with_name(f"{name}.log"), self.env)
        self.made.append(again)
        return again

    def agent(
        self,
        node: str,
        sock: Path,
        *,
        metrics_port: int,
        health_port: int | None = None,
        name: str = "agent",
    ) -> Proc:
        argv = [sys.executable, "-m", "controller.cli.kubgp_controller", "node",
                "--node-name", node,
                "--speaker-socket", str(sock), "--metrics-address", f"127.0.0.1:{metrics_port}",
                "--status-interval", "0.2", "--status-min-interval", "0.5",
                "--log-level", "info"]  # fmt: skip
        if health_port is not None:
            argv += ["--health-address", f"127.0.0.1:{health_port}"]
        proc = Proc(name, argv, self.workdir / f"{name}-{len(self.made)}.log", self.env)
        self.made.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.made):  # agents before the speaker they talk to
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)
        for proc in self.made:
            proc.kill()


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[Path], Procs]]:
    made: list[Procs] = []

    def make(kubeconfig: Path) -> Procs:
        p = Procs(tmp_path, kubeconfig)
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.close()
        for p in made:  # pytest shows this only when the test failed
            for proc in p.made:
                print(f"\n=== {proc.name} ({proc.logfile})\n{proc.log()[-8000:]}")
