"""How the node agent keeps CPython's cyclic garbage collector off its cluster view.

The agent's heap is mostly long-lived: the snapshot (views and per-Service facts of every
watched object) lives until the next change replaces a small part of it. CPython's collector
does not know that: a bulk load (the first snapshot, ~100k tracked objects for 10,000 Services)
triggers young collections that copy survivors up and full collections that walk everything,
and afterwards every full collection (due once the garbage of a few plans adds up to a quarter
of the long-lived heap) walks the whole snapshot again — a plan that happens to pay for it
takes several times as long (benchmarks/bench_plan.py counts them).

So, in the agent and never in the pure domain (which allocates as it pleases):
- `collector_paused()` around the bulk build and the first plan: nothing they allocate is
  garbage until the old snapshot is dropped, so collecting during them is wasted work;
- `settle()` after it: one full collection, then `gc.freeze()` moves everything that is alive
  into the permanent generation, which no collection walks. Later full collections only walk
  what was allocated since (the changes), so they stay short. Objects frozen here are still
  freed by reference counting when released; only cyclic garbage among them would wait for
  the next `settle()` (the agent has none to speak of: views and facts are acyclic).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection inside the block (restored after, even on error)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def settle() -> None:
    """Collect once, then keep everything alive now out of future collections."""
    gc.collect()
    gc.freeze()
