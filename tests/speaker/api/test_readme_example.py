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
