"""testing.wait: what a wait returns, when it gives up, and what its failure says."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from testing.wait import WaitTimeout, wait_for, wait_for_async, wait_for_text


def test_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, [], "", [1, 2]])
    assert wait_for(lambda: next(values), "a list", interval=0) == [1, 2]


def test_done_decides_and_the_value_is_returned_as_is() -> None:
    counts = itertools.count()
    assert wait_for(lambda: next(counts), "three", done=lambda n: n == 3, interval=0) == 3
    # A falsy value that `done` accepts is returned too.
    assert wait_for(list, "an empty list", done=lambda v: v == [], interval=0) == []


def test_a_timeout_names_what_was_awaited_and_the_last_value() -> None:
    counts = itertools.count()
    with pytest.raises(WaitTimeout) as failure:
        wait_for(lambda: {"seen": next(counts)}, "seen to reach -1", 0.2,
                 done=lambda v: v["seen"] == -1, interval=0.01)  # fmt: skip
    text = str(failure.value)
    assert text.startswith("timed out after 0.2 s waiting for seen to reach -1")
    polls = int(text.split("(")[1].split(" polls", maxsplit=1)[0])
    assert polls >= 2 and f"last value: {{'seen': {polls - 1}}}" in text, text
    # Both a test failure and a timeout, for callers that recover from one.
    assert isinstance(failure.value, AssertionError) and isinstance(failure.value, TimeoutError)


def test_without_a_name_the_condition_is_described_by_its_source() -> None:
    box = {"n": 1}
    with pytest.raises(WaitTimeout, match=r'waiting for box\["n"\] == 2 \(.*last value: False'):
        wait_for(lambda: box["n"] == 2, timeout=0.05, interval=0.01)


def test_the_condition_gets_a_last_look_after_a_slow_poll() -> None:
    # One poll outlasting the whole timeout does not fail the wait without another look.
    polls = []

    def slow() -> bool:
        polls.append(time.monotonic())
        if len(polls) == 1:
            time.sleep(0.3)
            return False
        return True

    assert wait_for(slow, "the second poll", 0.1) is True
    assert len(polls) == 2


def test_ignored_errors_are_retried_and_shown_others_end_the_wait() -> None:
    attempts = itertools.count()

    def flaky() -> str:
        if next(attempts) < 3:
            raise ConnectionRefusedError("not up yet")
        return "up"

    assert wait_for(flaky, "up", interval=0, ignore=(ConnectionError,)) == "up"

    def never() -> str:
        raise ConnectionRefusedError("not up yet")

    with pytest.raises(WaitTimeout, match=r"last error: ConnectionRefusedError\('not up yet'\)"):
        wait_for(never, "up", 0.05, interval=0.01, ignore=(ConnectionError,))
    calls = itertools.count()

    def broken() -> str:
        next(calls)
        raise KeyError("missing")

    with pytest.raises(KeyError):
        wait_for(broken, "a key", 30, ignore=(ConnectionError,))
    assert next(calls) == 1  # at once, after one poll


def test_the_async_variant_lets_the_loop_run_and_fails_the_same_way() -> None:
    async def main() -> None:
        box = {"done": False}

        async def later() -> None:
            await asyncio.sleep(0.05)
            box["done"] = True

        task = asyncio.create_task(later())
        assert await wait_for_async(lambda: box["done"], "the task") is True
        await task
        with pytest.raises(WaitTimeout, match=r"waiting for never \(\d+ polls; last value: 0\)"):
            await wait_for_async(lambda: 0, "never", 0.05)

    asyncio.run(main())


def test_wait_for_text_returns_the_text_and_fails_at_once_when_the_writer_ended(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log"
    log.write_text("starting\nlistening on 127.0.0.1\n")
    assert wait_for_text(log.read_text, "listening", "the log").endswith("127.0.0.1\n")
    reads = itertools.count()

    def read() -> str:
        next(reads)
        return log.read_text()

    with pytest.raises(AssertionError, match=r"the log ended with no 'ready':\nstarting"):
        wait_for_text(read, "ready", "the log", 30, running=lambda: False)
    assert next(reads) == 1  # at once, after one read
    with pytest.raises(WaitTimeout, match=r"(?s)waiting for 'ready' in the log .*\nlistening"):
        wait_for_text(log.read_text, "ready", "the log", 0.05, running=lambda: True)
