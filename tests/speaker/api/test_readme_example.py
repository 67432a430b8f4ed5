"""The README's speaker.yaml example is a valid desired state (the README must stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from speaker.api.schema import parse_desired_state

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_speaker_example_parses() -> None:
    blocks = re.findall(r"```yaml\n(# speaker\.yaml.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1
    state = parse_desired_state(yaml.safe_load(blocks[0]))
    assert [p.name for p in state.peers] == ["tor-a"]
    assert len(state.advertisements) == 2
    assert state.fib is not None and (state.fib.max_paths, state.fib.protocol) == (8, 179)
    assert len(state.peers[0].import_rules) == 1
