"""Bad input to `kubgp-speaker apply` and `kubgp-speaker decode`: a message on stderr and exit
code 2, never a traceback; nothing reaches the speaker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEPTH = 100_000


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "speaker.cli.kubgp_speaker", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * DEPTH + b"]" * DEPTH, "nested too deeply"),
        (b"routerId: " + b"[" * DEPTH + b"]" * DEPTH, "nest"),  # libyaml: "maximum nesting depth"
        (b"\xff\xfe\x00r", "not UTF-8"),
        (b"", "the document must be a mapping"),
    ],
)
def test_apply_of_an_unusable_file_exits_2_and_sends_nothing(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(data)
    # No speaker at this socket: had the file been accepted, the error would be exit 1.
    result = cli("apply", str(path), "--socket", str(tmp_path / "none.sock"), "--timeout", "1")
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_decode_of_a_missing_file_or_a_directory_exits_2(tmp_path: Path) -> None:
    missing = cli("decode", str(tmp_path / "nope.hex"))
    assert missing.returncode == 2
    assert (
        missing.stderr
        == f"kubgp-speaker decode: {tmp_path / 'nope.hex'}: No such file or directory\n"
    )
    directory = cli("decode", str(tmp_path))
    assert directory.returncode == 2
    assert directory.stderr == f"kubgp-speaker decode: {tmp_path}: Is a directory\n"
    assert missing.stdout == directory.stdout == ""


@pytest.mark.parametrize("data", [b"", b" \n\t\n"])
def test_decode_of_empty_input_says_so_and_exits_2(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "capture.hex"
    path.write_bytes(data)
    from_file = cli("decode", str(path))
    assert (from_file.returncode, from_file.stdout) == (2, "")
    assert from_file.stderr == f"kubgp-speaker decode: {path} is empty: no message to decode\n"
    from_stdin = cli("decode", "-", stdin=data)
    assert (from_stdin.returncode, from_stdin.stdout) == (2, "")
    assert "standard input is empty" in from_stdin.stderr
