"""`kubgp-controller plan -f` on input nested too deeply for the parser: exit 2 with a message
naming the file, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the CLI as a process, parsing input 100,000 levels deep

DEPTH = 100_000


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.json", "[" * DEPTH + "]" * DEPTH),
        ("deep.yaml", "items: " + "[" * DEPTH + "]" * DEPTH),
        ("block.yaml", "\n".join("  " * i + "a:" for i in range(3000))),
    ],
)
def test_deeply_nested_manifest_exits_2_with_a_message(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    for args in (["-f", str(path)], ["-f", str(tmp_path)], ["-f", "-"]):
        result = subprocess.run(
            [sys.executable, "-m", "controller.cli.kubgp_controller", "plan", "--node", "n1",
             *args],
            input=text if args[-1] == "-" else "",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr[-2000:]
        assert "nested too deeply" in result.stderr and "Traceback" not in result.stderr
        where = "<stdin>" if args[-1] == "-" else str(path)
        assert where in result.stderr
