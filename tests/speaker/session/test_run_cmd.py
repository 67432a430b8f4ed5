"""`kubgp-speaker run`: a bad config file at start is a clear error and exit code 2, and so is
an option that would have no effect; standalone (`--config`), SIGHUP reloads the file whatever
was wrong with an earlier one, and `--socket` beside it answers status and refuses states."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from testing.procs import SpeakerProcess
from testing.routers.lab import loopback_address


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "speaker.cli.kubgp_speaker", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def run(path: Path) -> subprocess.CompletedProcess[str]:
    return _cli("run", "--config", str(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routerId: 192.0.2.1\nasn: 64512\nbogus: 1\n", "bogus"),
        ('{"routerId": "192.0.2.1", "asn": 64512, "peers": [{"name": "a", "address": "x"}]}',
         "peers[0]"),
        ("routerId: [unclosed\n", "not YAML or JSON"),
        ("- a list\n", "must be a mapping"),
    ],
)  # fmt: skip
def test_bad_config_exits_2_with_the_key_path(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "speaker.yaml"
    path.write_text(text)
    result = run(path)
    assert result.returncode == 2
    assert message in result.stderr and str(path) in result.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path / "nope.yaml")
    assert result.returncode == 2 and "nope.yaml" in result.stderr


DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_YAML = "\n".join("  " * i + "a:" for i in range(3000))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xferouterId: 192.0.2.1\n", "not UTF-8 (invalid start byte at byte 0)"),
        (b"routerId: caf\xe9\n", "not UTF-8"),
        (DEEP_JSON.encode(), "nested too deeply"),
        (DEEP_YAML.encode(), "nest"),  # libyaml: "exceeded maximum nesting depth"
    ],
)
def test_unreadable_config_exits_2_with_a_message(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "speaker.yaml"
    path.write_bytes(data)
    result = run(path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_deep_yaml_without_libyaml_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pure-Python loader (PyYAML built without libyaml) recurses: still a ConfigError."""
    import yaml

    from speaker.cli import config_file

    monkeypatch.setattr(config_file, "_YAML_LOADER", yaml.SafeLoader)
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(config_file.ConfigError, match="nested too deeply"):
        config_file.load_config(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "F", "--state-dir", "D"], "--state-dir has no effect with --config"),
        (["--config", "F", "--socket", "S", "--state-dir", "D"],
         "--state-dir has no effect with --config"),
        (["--config", "F", "--socket-group", "kubgp"], "--socket-group has no effect without"),
        (["--config", "F", "--allowed-uid", "7"], "--allowed-uid has no effect without --socket"),
    ],
)  # fmt: skip
def test_options_without_effect_are_refused_at_start(
    tmp_path: Path, args: list[str], message: str
) -> None:
    config = tmp_path / "speaker.yaml"
    config.write_text("routerId: 192.0.2.1\nasn: 64512\n")
    args = [{"F": str(config), "S": str(tmp_path / "s.sock"), "D": str(tmp_path / "d")}.get(a, a)
            for a in args]  # fmt: skip
    result = _cli("run", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "s.sock").exists()


@pytest.mark.slow  # the speaker as a process
def test_standalone_sighup_survives_bad_files_and_the_socket_serves_status(
    speaker_factory: Callable[..., SpeakerProcess], tmp_path: Path
) -> None:
    me, nobody = loopback_address(), loopback_address()
    # Passive peers: nothing connects anywhere; the status is what this test reads.
    tor_a = {"name": "tor-a", "address": nobody, "asn": 65000, "passive": True}
    tor_b = {"name": "tor-b", "address": me, "asn": 65000, "passive": True}
    doc: dict[str, object] = {
        "routerId": "192.0.2.11",
        "asn": 64512,
        "peers": [tor_a],
        "advertisements": [{"prefix": "10.244.1.0/24"}],
    }
    sock = tmp_path / "speaker.sock"
    sp = speaker_factory()
    sp.start(doc, "--socket", str(sock))
    sp.wait_log("control socket")

    status = _cli("status", "--socket", str(sock))
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1].split()[:3] == ["tor-a", nobody, "Active"]
    refused = _cli("apply", str(sp.config), "--socket", str(sock))
    assert refused.returncode == 1
    assert f"the state comes from --config {sp.config}; edit it and send SIGHUP" in refused.stderr

    for content, message in [
        (b"routerId: caf\xe9\n", "not UTF-8"),
        (DEEP_JSON.encode(), "nested too deeply"),
        (b"routerId: 192.0.2.11\n", "asn: required"),
    ]:
        at = len(sp.log())
        sp.config.write_bytes(content)
        sp.signal(signal.SIGHUP)
        text = sp.wait_log("keeping the running state", after=at)
        assert message in text
    at = len(sp.log())
    sp.reload({**doc, "peers": [tor_a, tor_b]})
    sp.wait_log("SIGHUP: applied", after=at)
    status = _cli("status", "--socket", str(sock), "-o", "json")
    assert [p["name"] for p in json.loads(status.stdout)["peers"]] == ["tor-a", "tor-b"]
    assert "Traceback" not in sp.log()
    assert sp.stop() == 0
