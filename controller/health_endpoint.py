"""`/readyz` and `/livez` over HTTP for a kubgp process (`--health-address`), served on the
process's own event loop: a wedged loop fails the probe by timing out. The checks are the
caller's (controller.agent.health for the node agent, controller.cluster.probes for the
cluster controller); this module only answers. Deliberately not the Prometheus server, which
answers from its own thread whatever the event loop does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

REQUEST_TIMEOUT: Final = 5.0
MAX_REQUEST_BYTES: Final = 8192


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    reason: str
    detail: str = ""

    def text(self) -> str:
        return f"{self.reason}: {self.detail}\n" if self.detail else f"{self.reason}\n"


class HealthServer:
    """HTTP/1.1 GET or HEAD of /readyz and /livez: 200 or 503 with the reason as text/plain;
    anything else 404. One request per connection."""

    def __init__(self, *, ready: Callable[[], Health], live: Callable[[], Health]) -> None:
        self._checks = {"/readyz": ready, "/livez": live}
        self._server: asyncio.Server | None = None

    async def start(self, address: str) -> tuple[str, int]:
        """Listen on "HOST:PORT" (":PORT" = every address, port 0 = any free one); returns
        the bound address. Raises OSError or ValueError."""
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"expected HOST:PORT or :PORT, got {address!r}")
        self._server = await asyncio.start_server(
            self._serve, host=host.strip("[]") or None, port=int(port), limit=MAX_REQUEST_BYTES
        )
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, head_only = self._answer(head)
            payload = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if head_only else payload)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that sent no request or went away: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, str, bool]:
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "", False
        check = self._checks.get(path)
        if check is None:
            return "404 Not Found", "not found\n", method == "HEAD"
        health = check()
        status = "200 OK" if health.ok else "503 Service Unavailable"
        return status, health.text(), method == "HEAD"
