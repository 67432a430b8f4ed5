"""pytest fixtures of the lab: `lab` (real BGP daemons) and `netns_pair` (two hosts)."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from testing.routers.lab import Lab
from testing.routers.netns import NetnsPair

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """Real BGP daemons on loopback addresses; all ended and their files removed afterwards.
    When the test failed, every daemon's log tail is printed first (pytest shows it)."""
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        if request.node.stash.get(_FAILED, False):
            for daemon in the_lab.daemons:
                print(f"\n=== {daemon!r}\n{daemon.log_tail(60)}")
        the_lab.close()


@pytest.fixture
def netns_pair() -> Iterator[NetnsPair]:
    """Two network namespaces joined by a veth link (192.0.2.1/2, 2001:db8::1/2)."""
    pair = NetnsPair().create()
    try:
        yield pair
    finally:
        pair.delete()
