"""Waiting on a condition, for tests, the lab and benchmarks: poll until it holds, or fail
naming what was awaited and the last value seen.

    wait_for(lambda: ingress(api, "web"), "web's address")          # returns the address
    wait_for(lambda: tor.received_routes("node"), "3 routes", done=lambda rs: len(rs) == 3)
    await wait_for_async(lambda: agent.plans == 2, "the second plan")
    wait_for_text(proc.log, "Established", "the speaker's log", running=proc.running)

The condition is polled until its value is truthy (or, with `done`, until `done(value)` holds)
and that value is returned. Exceptions of the types in `ignore` count as "not yet" (a CLI that
is not up yet); any other exception ends the wait at once. A timeout raises `WaitTimeout`,
which is both an AssertionError (a test failure) and a TimeoutError (for callers that recover).

Timeouts are for a loaded 2-core machine (another CPU hog beside us): the default is generous,
since it only bounds how long a real failure takes to show; a wait that holds returns as soon
as the condition does.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0


class WaitTimeout(AssertionError, TimeoutError):
    """The condition did not hold in time."""


class _Poll:
    """One wait's bookkeeping: the last value or ignored error, and the failure message."""

    def __init__(
        self,
        condition: Callable[[], Any],
        what: str | None,
        timeout: float,
        done: Callable[[Any], object] | None,
        ignore: tuple[type[BaseException], ...],
    ) -> None:
        self.condition = condition
        self.what = what or describe(condition)
        self.timeout = timeout
        self.done = done
        self.ignore = ignore
        self.polls = 0
        self.last: Any = None
        self.error: BaseException | None = None

    def poll(self) -> bool:
        self.polls += 1
        try:
            self.last = self.condition()
        except self.ignore as exc:
            self.error = exc
            return False
        self.error = None
        return bool(self.done(self.last) if self.done is not None else self.last)

    def failure(self) -> WaitTimeout:
        seen = f"last error: {self.error!r}" if self.error is not None else _shown(self.last)
        return WaitTimeout(
            f"timed out after {self.timeout:g} s waiting for {self.what} "
            f"({self.polls} polls; {seen})"
        )


def wait_for(
    condition: Callable[[], T | None],
    what: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    done: Callable[[T], object] | None = None,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Polls `condition` every `interval` s until its value is truthy (or `done(value)`);
    returns that value. `what` names the wait in the error (default: the condition's source).
    Raises WaitTimeout after `timeout` s; the condition is always polled at least once more
    after the deadline passes, so a slow poll cannot make it fail without a last look."""
    poll = _Poll(condition, what, timeout, done, ignore)
    deadline = time.monotonic() + timeout
    while True:
        late = time.monotonic() >= deadline
        if poll.poll():
            return poll.last  # type: ignore[no-any-return]
        if late:
            raise poll.failure()
        time.sleep(interval)


async def wait_for_async(
    condition: Callable[[], T | None],
    what: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    done: Callable[[T], object] | None = None,
    interval: float = 0.01,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """`wait_for` on the running event loop: the condition is polled between the loop's other
    work (it must not block)."""
    poll = _Poll(condition, what, timeout, done, ignore)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        late = loop.time() >= deadline
        if poll.poll():
            return poll.last  # type: ignore[no-any-return]
        if late:
            raise poll.failure()
        await asyncio.sleep(interval)


def wait_for_text(
    read: Callable[[], str],
    needle: str,
    where: str,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    running: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> str:
    """Until `needle` is in the text `read()` returns (a log, a process's output); returns
    that text. With `running`, fails at once when the writer has ended without writing it.
    The error names `where` and shows the text's last lines."""

    def seen() -> str | None:
        ended = running is not None and not running()  # first: an ended writer's text is whole
        text = read()
        if needle in text:
            return text
        if ended:
            raise AssertionError(f"{where} ended with no {needle!r}:\n{text[-4000:]}")
        return None

    try:
        found = wait_for(seen, f"{needle!r} in {where}", timeout, interval=interval)
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}:\n{read()[-4000:]}") from None
    assert found is not None
    return found


def describe(condition: Callable[..., Any]) -> str:
    """The condition's source (a lambda's expression), or its name."""
    try:
        source = inspect.getsource(condition)
    except (OSError, TypeError):
        return getattr(condition, "__qualname__", repr(condition))
    text = " ".join(source.split())
    if match := re.search(r"lambda[^:]*:\s*(.*)", text):
        text = _expression(match.group(1))
    return _clip(text, 160)


def _expression(text: str) -> str:
    """The expression at the start of `text`: up to a comma or closing bracket outside it."""
    depth = 0
    for i, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                return text[:i].strip()
        elif char == "," and depth == 0:
            return text[:i].strip()
    return text.strip()


def _shown(value: object) -> str:
    return f"last value: {_clip(repr(value), 600)}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
