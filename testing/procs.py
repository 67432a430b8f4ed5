"""The product's processes as tests run them: the real `kubgp-speaker run` (with a --config file,
a control socket, or both) and the real `kubgp-controller node`, each a subprocess with its own
log file, always ended by PID.

pytest fixtures (tests/conftest.py loads this module as a plugin):
- `speaker_factory(netns=None)`: a SpeakerProcess in its own work dir, started by the test
  (`sp.start(doc, *args)`), killed at teardown;
- `procs(kubeconfig)`: a Procs that makes speakers (control socket and state dir) and node
  agents pointed at an emulated API server; stops them all at teardown, agents first.
Either prints the logs of its processes at teardown (pytest shows them when the test failed).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Self

import pytest

from testing.wait import WaitTimeout, wait_for, wait_for_text


class Proc:
    """One process: its argv, its log file (stdout and stderr, appended across restarts), its
    environment; started, signalled, waited on and ended by PID."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        logfile: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.logfile = logfile
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_log(self, needle: str, *, after: int = 0, timeout: float = 30.0) -> str:
        """Until `needle` is in the log past offset `after`; returns the log from there. Fails
        at once if the process has ended without writing it."""
        return wait_for_text(
            lambda: self.log()[after:], needle, f"{self.name}'s log", timeout, running=self.running
        )

    def wait_file(self, path: Path, *, timeout: float = 30.0) -> None:
        """Until `path` exists (a socket or a file the process makes). Fails at once if the
        process has ended without making it."""

        def there() -> bool:
            if path.exists():
                return True
            assert self.running(), f"{self.name} ended before making {path}:\n{self.log()[-3000:]}"
            return False

        try:
            wait_for(there, f"{path} from {self.name}", timeout)
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}:\n{self.log()[-3000:]}") from None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None, f"{self.name} was never started"
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, and its exit code. If it has not exited within `timeout`, it is killed and
        that is a test failure."""
        assert self.proc is not None, f"{self.name} was never started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s of SIGTERM"
            ) from None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to say goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def close(self, grace: float = 0.0) -> None:
        """Ends it whatever its state: SIGTERM and up to `grace` seconds first when given,
        then SIGKILL. Safe to call twice."""
        if grace > 0 and self.running():
            with contextlib.suppress(AssertionError):
                self.stop(timeout=grace)
        self.kill()


class SpeakerProcess(Proc):
    """`kubgp-speaker run --log-level debug` in its work dir: with `doc` written to its
    --config file when `start` is given one, `args` on every start (e.g. --socket,
    --state-dir), and in network namespace `netns` when given."""

    def __init__(
        self,
        workdir: Path,
        netns: str | None = None,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        name: str = "speaker",
    ) -> None:
        super().__init__(name, [], workdir / "speaker.log", env)
        self.workdir = workdir
        self.netns = netns
        self.args = list(args)
        self.config = workdir / "speaker.json"

    def write(self, doc: Mapping[str, object]) -> None:
        """Replaces the config file at once (write and rename)."""
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.rename(self.config)

    def start(self, doc: Mapping[str, object] | None = None, *extra: str) -> Self:
        """Runs it with `doc` as its --config file when given, plus `extra` arguments."""
        argv = [sys.executable, "-m", "speaker.cli.kubgp_speaker", "run", "--log-level", "debug",
                *self.args, *extra]  # fmt: skip
        if doc is not None:
            self.write(doc)
            argv += ["--config", str(self.config)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self.argv = argv
        return super().start()

    def reload(self, doc: Mapping[str, object]) -> None:
        """A new config file, then SIGHUP."""
        self.write(doc)
        self.signal(signal.SIGHUP)


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
    """Makes speakers and node agents in one work dir, pointed at one API server (the
    kubeconfig); ends every one of them at teardown."""

    def __init__(self, workdir: Path, kubeconfig: Path) -> None:
        self.workdir = workdir
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.made: list[Proc] = []

    def speaker(self, name: str = "speaker") -> tuple[SpeakerProcess, Path]:
        """A speaker with a control socket (returned) and a state dir; not started yet."""
        d = self.workdir / name
        d.mkdir(exist_ok=True)
        sock = Path(f"/tmp/kubgp-e2e-{os.getpid()}-{len(self.made)}.sock")
        args = ("--socket", str(sock), "--state-dir", str(d / "state"))
        proc = SpeakerProcess(d, args=args, env=self.env, name=name)
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
            proc.close(grace=5)


def _print_logs(made: Sequence[Proc], tail: int) -> None:
    for proc in made:  # pytest shows this only when the test failed
        print(f"\n=== {proc.name} ({proc.logfile})\n{proc.log()[-tail:]}")


@pytest.fixture
def speaker_factory(tmp_path: Path) -> Iterator[Callable[..., SpeakerProcess]]:
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
        _print_logs(made, 6000)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[[Path], Procs]]:
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
        for p in made:
            _print_logs(p.made, 8000)
