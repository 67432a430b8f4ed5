"""pyroute2 (~22 MB of RSS to import) is loaded by the speaker only once a state asks for
received routes (import rules or `fib`): a speaker that only announces never pays for it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import asyncio, sys
from speaker.api.schema import parse_desired_state
from speaker.daemon import Speaker

BASE = {"routerId": "192.0.2.1", "asn": 64512,
        "advertisements": [{"prefix": "198.51.100.0/24"}]}
PEER = {"name": "tor", "address": "127.0.0.2", "asn": 65000, "passive": True}

async def main() -> None:
    speaker = Speaker()
    try:
        await speaker.apply(parse_desired_state({**BASE, "peers": [PEER]}))
        print("announce only:", "pyroute2" in sys.modules)
        rules = [{"prefix": "0.0.0.0/0", "action": "accept"}]
        await speaker.apply(parse_desired_state({**BASE, "peers": [{**PEER, "import": rules}]}))
        print("with import rules:", "pyroute2" in sys.modules)
    finally:
        await speaker.close()

asyncio.run(main())
"""


def test_pyroute2_is_imported_only_when_a_state_asks_for_received_routes() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["announce only: False", "with import rules: True"]
