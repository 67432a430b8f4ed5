"""Coalescing of work kicked by a burst of events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class Coalescer:
    """Run `work` after a kick; kicks that arrive while it runs make it run once more."""

    def __init__(self, work: Callable[[], Awaitable[None]]) -> None:
        self.work = work
        self._running = False
        self._again = False

    async def kick(self) -> None:
        if self._running:
            self._again = True
            return
        self._running = True
        try:
            self._again = True
            while self._again:
                self._again = False
                await self.work()
        finally:
            self._running = False
