"""TEMPORARY: `kubgp-speaker run --socket --state-dir` until run_cmd has them (the lead is
wiring them); the e2e harness uses the real command as soon as `--help` lists `--socket`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from speaker.control import serve_control
from speaker.daemon import Speaker
from speaker.state_store import StateStore


async def main(socket: str, state_dir: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    speaker = Speaker()
    server = await serve_control(speaker, socket, state_store=StateStore(state_dir))
    await stop.wait()
    await server.close()
    await speaker.close("shutting down")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--log-level", default="debug")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")  # fmt: skip
    asyncio.run(main(args.socket, args.state_dir))
