"""`kubgp-speaker run`: a bad config file at start is a clear error and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "speaker.cli.kubgp_speaker", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


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
